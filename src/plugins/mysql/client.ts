/**
 * Reaching MariaDB/MySQL: the mysql2 driver for control statements, and the vendor tools
 * (mariadb-dump/mysqldump, mariadb/mysql) for data, with the credentials in a private option file.
 */
import mysql from 'mysql2/promise';
import { OperationError, PluginError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { withPrivateDir, writePrivateFile } from '../sql/secret-file.js';
import { findTool, toolOutput, type ToolOptions } from '../sql/tool.js';
import { waitForServer } from '../sql/wait.js';
import { describeServer, type MysqlOptions, PLUGIN } from './options.js';

/** A driver connection. */
export type MysqlConnection = mysql.Connection;

/** Quotes an identifier for MariaDB/MySQL (names are validated before they get here). */
export function quoteName(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

/** Errors that mean "not up (yet)": worth retrying until the timeout. */
function isTransient(error: unknown): boolean {
  const code = (error as { code?: string }).code ?? '';
  return (
    /^E[A-Z]+$/.test(code) ||
    code.startsWith('PROTOCOL_') ||
    code === 'ER_CON_COUNT_ERROR' ||
    code === 'ER_SERVER_SHUTDOWN' ||
    code === 'ER_SERVER_IS_IN_SECURE_AUTH_MODE'
  );
}

/** Opens a driver connection, waiting up to the timeout for the server to come up. */
export async function connectMysql(options: MysqlOptions, signal?: AbortSignal): Promise<MysqlConnection> {
  const where = describeServer(options);
  try {
    return await waitForServer(
      (remainingMs) =>
        mysql.createConnection({
          user: options.user,
          password: options.password,
          socketPath: options.socket,
          host: options.host,
          port: options.port,
          connectTimeout: Math.max(1000, Math.round(remainingMs)),
          multipleStatements: false,
          supportBigNumbers: true,
          bigNumberStrings: true,
          dateStrings: true,
        }),
      {
        timeoutMs: options.timeoutMs,
        isTransient,
        what: `the MariaDB/MySQL server at ${where}`,
        hint: 'start the server, or check mysqlSocket, mysqlHost and mysqlPort (and raise timeout if it starts slowly)',
        plugin: PLUGIN,
        signal,
      },
    );
  } catch (error) {
    if (error instanceof OperationError) throw error;
    const code = (error as { code?: string }).code;
    const denied = code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_ACCESS_DENIED_NO_PASSWORD_ERROR';
    throw new OperationError(
      denied
        ? `cannot log in to the MariaDB/MySQL server at ${where} as ${JSON.stringify(options.user)}: ${(error as Error).message}; check mysqlUsername and mysqlPassword (or mysqlPasswordFile)`
        : `cannot connect to the MariaDB/MySQL server at ${where} as ${JSON.stringify(options.user)}: ${(error as Error).message}`,
      { plugin: PLUGIN, cause: error },
    );
  }
}

/** Runs `work` with a connection that is always closed afterwards. */
export async function withConnection<T>(
  options: MysqlOptions,
  signal: AbortSignal | undefined,
  work: (connection: MysqlConnection) => Promise<T>,
): Promise<T> {
  const connection = await connectMysql(options, signal);
  try {
    return await work(connection);
  } finally {
    await connection.end().catch(() => connection.destroy());
  }
}

/** Runs one statement and returns its rows. */
export async function query<T = Record<string, unknown>>(
  connection: MysqlConnection,
  sql: string,
  values?: unknown[],
): Promise<T[]> {
  const [rows] = await connection.query(sql, values);
  return rows as T[];
}

/** True when the database exists. */
/**
 * Bounds how long the session's statements wait for other sessions' locks (lock_wait_timeout,
 * whole seconds, at least 1): the server's own bound is a day by default, waited in silence.
 */
export async function setLockWait(connection: MysqlConnection, seconds: number): Promise<void> {
  await query(connection, 'SET SESSION lock_wait_timeout = ?', [Math.max(1, Math.ceil(seconds))]);
}

/** ER_LOCK_WAIT_TIMEOUT: a lock was not granted within lock_wait_timeout. */
export function lockWaitTimedOut(error: unknown): boolean {
  return (error as { errno?: number }).errno === 1205;
}

export async function databaseExists(connection: MysqlConnection, name: string): Promise<boolean> {
  const rows = await query(connection, 'SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?', [name]);
  return rows.length > 0;
}

/** The client tools, found once. MariaDB 11 prefers the mariadb-* names. */
export interface MysqlTools {
  dump: string;
  client: string;
}

let tools: Promise<MysqlTools> | undefined;

/** Finds mariadb-dump/mysqldump and mariadb/mysql on PATH. */
export function findMysqlTools(): Promise<MysqlTools> {
  tools ??= (async () => {
    const dump = await findTool(['mariadb-dump', 'mysqldump']);
    const client = await findTool(['mariadb', 'mysql']);
    if (dump === undefined || client === undefined) {
      tools = undefined;
      throw new PluginError(
        `cannot find ${dump === undefined ? 'mariadb-dump or mysqldump' : 'the mariadb or mysql client'} on PATH (${process.env.PATH ?? ''}); install the MariaDB client (Debian: apt install mariadb-client)`,
        { plugin: PLUGIN },
      );
    }
    return { dump, client };
  })();
  return tools;
}

/**
 * True when `tool`'s --help lists `option` (such as `--dump-history`). Read from the help, not
 * the version: MariaDB's and MySQL's tools share names but not options, and MariaDB adds options
 * in minor releases of several series at once.
 */
export async function toolHasOption(tool: string, option: string, options: ToolOptions): Promise<boolean> {
  const text = await toolOutput(tool, ['--help'], `asking ${tool} for its options`, options);
  return new RegExp(`^\\s*(-[A-Za-z], )?${option.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\b`, 'm').test(text);
}

/** A value in an option file: double-quoted, with the escapes the client's option parser knows. */
function optionValue(value: string): string {
  const escaped = value
    .replaceAll('\\', '\\\\')
    .replaceAll('"', '\\"')
    .replaceAll('\n', '\\n')
    .replaceAll('\r', '\\r')
    .replaceAll('\t', '\\t');
  return `"${escaped}"`;
}

/** The [client] option file giving the tools the server, user and password. */
function optionFile(options: MysqlOptions): string {
  const lines = ['[client]', `user=${optionValue(options.user)}`];
  if (options.password !== undefined) lines.push(`password=${optionValue(options.password)}`);
  if (options.socket !== undefined) {
    lines.push('protocol=SOCKET', `socket=${optionValue(options.socket)}`);
  } else {
    lines.push('protocol=TCP', `host=${optionValue(options.host!)}`, `port=${options.port}`);
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Runs `work` with the `--defaults-extra-file=...` argument (which must come first on a tool's
 * command line) for a private 0600 option file holding the credentials; the file is removed
 * afterwards, so the password is never on a command line.
 */
export async function withToolAccess<T>(options: MysqlOptions, work: (defaultsArgument: string) => Promise<T>): Promise<T> {
  return withPrivateDir(async (dir) => {
    const file = await writePrivateFile(dir, 'client.cnf', optionFile(options));
    return work(`--defaults-extra-file=${file}`);
  });
}

/** Logs which server we talk to, once per operation. */
export function logServer(log: Logger, options: MysqlOptions): void {
  log.debug(`MariaDB/MySQL server ${describeServer(options)} as ${options.user}`);
}
