/** The container properties of `mysql-database`, validated. */
import os from 'node:os';
import type { ContainerProperties } from '../../core/container-file.js';
import { ConfigError } from '../../core/errors.js';
import { PropertyReader } from '../sql/properties.js';

export const PLUGIN = 'mysql-database';

/** The socket the Debian, Ubuntu and NixOS packages use. */
export const DEFAULT_SOCKET = '/run/mysqld/mysqld.sock';

/** How to reach the MariaDB/MySQL server. */
export interface MysqlOptions {
  user: string;
  password?: string;
  /** Unix socket path (when no host is given). */
  socket?: string;
  /** TCP host and port (when a host is given). */
  host?: string;
  port?: number;
  /** How long to wait for the server, in milliseconds. */
  timeoutMs: number;
}

/** The properties parseMysqlOptions reads that start with `mysql` (see Plugin.properties). */
export const PROPERTIES = ['mysqlUsername', 'mysqlPassword', 'mysqlSocket', 'mysqlHost', 'mysqlPort', 'mysqlPasswordFile'] as const;

/**
 * Validates the properties: Dysnomia's `mysqlUsername`, `mysqlPassword`, `mysqlSocket`, and the
 * new `mysqlHost`, `mysqlPort`, `mysqlPasswordFile`, `timeout` (seconds, default 10).
 */
export function parseMysqlOptions(properties: ContainerProperties, file?: string): MysqlOptions {
  const read = new PropertyReader(properties, file, PLUGIN);
  const socket = read.string('mysqlSocket');
  const host = read.string('mysqlHost');
  const port = read.port('mysqlPort');
  if (socket !== undefined && host !== undefined) {
    throw new ConfigError(
      'both mysqlSocket and mysqlHost are set; give mysqlSocket for a local socket or mysqlHost (and mysqlPort) for TCP',
      { file, key: 'mysqlHost', plugin: PLUGIN },
    );
  }
  // As with the mysql client, a port alone means TCP on this machine; with a socket, the socket.
  const tcp = host !== undefined || (port !== undefined && socket === undefined);
  return {
    // The mysql client's own default is the login name.
    user: read.string('mysqlUsername') ?? os.userInfo().username,
    password: read.password('mysqlPassword', 'mysqlPasswordFile'),
    socket: tcp ? undefined : (socket ?? DEFAULT_SOCKET),
    host: tcp ? (host ?? '127.0.0.1') : undefined,
    port: tcp ? (port ?? 3306) : undefined,
    timeoutMs: read.seconds('timeout', 10),
  };
}

/** Where the server is, for messages: the socket path or host:port. */
export function describeServer(options: MysqlOptions): string {
  return options.socket ?? `${options.host}:${options.port}`;
}
