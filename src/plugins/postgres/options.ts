/** The container properties of `postgresql-database`, validated. */
import type { ContainerProperties } from '../../core/container-file.js';
import { PropertyReader } from '../sql/properties.js';

export const PLUGIN = 'postgresql-database';

/** Where Debian, Ubuntu and NixOS put the server's socket. */
export const DEFAULT_RUNTIME_DIR = '/var/run/postgresql';

/**
 * How rows are ordered in a snapshot: as pg_dump finds them (`physical`, the default), or by
 * primary key where there is one (`key`, see dump.ts). On the shared benchmark's nightly churn
 * both store the same (11.4 and 11.1 MB a night on a 99 MB first snapshot), and key order makes
 * the dump about 1.5 times slower (bench/sql-plugins.mjs); it pays off only for tables whose rows
 * move a lot on disk (heavy updates with VACUUM reusing the space).
 */
export type RowOrder = 'key' | 'physical';

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
  rowOrder: RowOrder;
}

/** The properties parsePostgresOptions reads that start with `postgresql` (see Plugin.properties). */
export const PROPERTIES = [
  'postgresqlUsername',
  'postgresqlPort',
  'postgresqlRuntimeDir',
  'postgresqlHost',
  'postgresqlPassword',
  'postgresqlPasswordFile',
  'postgresqlRowOrder',
] as const;

/**
 * Validates the properties: Dysnomia's `postgresqlUsername` (default postgres), `postgresqlPort`,
 * `postgresqlRuntimeDir` (the socket directory), and the new `postgresqlHost`,
 * `postgresqlPassword`, `postgresqlPasswordFile`, `timeout` (seconds, default 10),
 * `postgresqlRowOrder` (`physical` or `key`, default physical).
 */
export function parsePostgresOptions(properties: ContainerProperties, file?: string): PostgresOptions {
  const read = new PropertyReader(properties, file, PLUGIN);
  const host = read.string('postgresqlHost');
  return {
    user: read.string('postgresqlUsername') ?? 'postgres',
    password: read.password('postgresqlPassword', 'postgresqlPasswordFile'),
    socketDir: host === undefined ? (read.absolutePath('postgresqlRuntimeDir') ?? DEFAULT_RUNTIME_DIR) : undefined,
    host,
    port: read.port('postgresqlPort') ?? 5432,
    timeoutMs: read.seconds('timeout', 10),
    rowOrder: read.choice('postgresqlRowOrder', ['physical', 'key'] as const, 'physical'),
  };
}

/** Where the server is, for messages. */
export function describeServer(options: PostgresOptions): string {
  return options.host !== undefined
    ? `${options.host}:${options.port}`
    : `${options.socketDir}/.s.PGSQL.${options.port}`;
}
