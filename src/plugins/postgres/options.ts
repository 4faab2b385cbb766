/** The container properties of `postgresql-database`, validated. */
import type { ContainerProperties } from '../../core/container-file.js';
import { PropertyReader } from '../sql/properties.js';

export const PLUGIN = 'postgresql-database';

/** Where Debian, Ubuntu and NixOS put the server's socket. */
export const DEFAULT_RUNTIME_DIR = '/var/run/postgresql';

/** How to reach the PostgreSQL server. */
export interface PostgresOptions {
  user: string;
  password?: string;
  /** The socket directory, when no host is given. */
  socketDir?: string;
  /** The TCP host, when given. */
  host?: string;
  port: number;
  /** How long to wait for the server, in milliseconds. */
  timeoutMs: number;
}

/**
 * Validates the properties: Dysnomia's `postgresqlUsername` (default postgres), `postgresqlPort`,
 * `postgresqlRuntimeDir` (the socket directory), and the new `postgresqlHost`,
 * `postgresqlPassword`, `postgresqlPasswordFile`, `timeout` (seconds, default 10).
 */
export function parsePostgresOptions(properties: ContainerProperties, file?: string): PostgresOptions {
  const read = new PropertyReader(properties, file, PLUGIN);
  const host = read.string('postgresqlHost');
  return {
    user: read.string('postgresqlUsername') ?? 'postgres',
    password: read.password('postgresqlPassword', 'postgresqlPasswordFile'),
    socketDir: host === undefined ? (read.string('postgresqlRuntimeDir') ?? DEFAULT_RUNTIME_DIR) : undefined,
    host,
    port: read.port('postgresqlPort') ?? 5432,
    timeoutMs: read.seconds('timeout', 10),
  };
}

/** Where the server is, for messages. */
export function describeServer(options: PostgresOptions): string {
  return options.host !== undefined
    ? `${options.host}:${options.port}`
    : `${options.socketDir}/.s.PGSQL.${options.port}`;
}
