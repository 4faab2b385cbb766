/**
 * Reaching PostgreSQL: the pg driver for control statements, the vendor tools (pg_dump, psql) for
 * data.
 *
 * Peer authentication: on a stock Debian/Ubuntu server the local socket admits a role only to
 * the OS user of the same name, and Dysnomia, running as root, reaches it as `postgres` by
 * switching users. A driver cannot change its process's uid, so when running as root over the
 * socket and the server refuses us with "Peer authentication failed", the driver runs in a small
 * helper process started as that OS user (peer-helper.ts, spoken to over IPC), and the tools are
 * started as that user too. Nothing changes for TCP or for trust and password authentication.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import pg from 'pg';
import { OperationError, PluginError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import { type FileOwner, withPrivateDir, writePrivateFile } from '../sql/secret-file.js';
import { findTool, type ToolOptions } from '../sql/tool.js';
import { waitForServer } from '../sql/wait.js';
import { describeServer, PLUGIN, type PostgresOptions } from './options.js';

export type Row = Record<string, unknown>;

/** An OS account, for running the tools and the driver as the role's namesake. */
export interface OsUser extends FileOwner {
  name: string;
  home: string;
}

/** A control connection, direct or through the peer helper. */
export interface PgSession {
  query<T = Row>(sql: string, params?: unknown[]): Promise<T[]>;
  end(): Promise<void>;
  /** Set when the server needs us to be this OS user (peer authentication). */
  runAs?: OsUser;
  /** server_version_num, e.g. 150020. */
  serverVersion: number;
  /** The server process serving the session (pg_backend_pid). */
  pid: number;
  /**
   * Why the connection was lost, if it was and the server said why (such as `terminating
   * connection due to idle-in-transaction timeout`). Known for direct sessions only.
   */
  lost?: () => string | undefined;
}

/** The first statement of every session: what PgSession records about it. */
const SESSION_FACTS = "SELECT current_setting('server_version_num') AS version, pg_backend_pid() AS pid";

/** Quotes an identifier for PostgreSQL. */
export function quoteName(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Quotes a string literal for PostgreSQL. One with a backslash is an E'' literal (as the server's
 * quote_literal makes it), so it reads the same whatever standard_conforming_strings is.
 */
export function quoteLiteral(value: string): string {
  const quoted = value.replaceAll("'", "''");
  return value.includes('\\') ? `E'${quoted.replaceAll('\\', '\\\\')}'` : `'${quoted}'`;
}

/** The driver configuration for the maintenance database. */
function clientConfig(options: PostgresOptions, database: string, timeoutMs: number): pg.ClientConfig {
  return {
    host: options.socketDir ?? options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database,
    connectionTimeoutMillis: Math.max(1000, Math.round(timeoutMs)),
    application_name: 'dysnomia',
  };
}

function codeOf(error: unknown): string {
  return String((error as { code?: unknown }).code ?? '');
}

function isTransient(error: unknown): boolean {
  const code = codeOf(error);
  return (
    /^E[A-Z]+$/.test(code) ||
    code === '57P03' || // the database system is starting up
    code === '53300' || // too many connections
    /connection timeout|Connection terminated unexpectedly/i.test((error as Error).message ?? '')
  );
}

function isPeerFailure(error: unknown): boolean {
  return codeOf(error) === '28000' && /peer authentication failed/i.test((error as Error).message ?? '');
}

async function directSession(options: PostgresOptions, database: string, timeoutMs: number): Promise<PgSession> {
  const client = new pg.Client(clientConfig(options, database, timeoutMs));
  // A dropped connection fails the pending query instead; the server's last words are kept.
  let lost: string | undefined;
  client.on('error', (error) => {
    lost ??= error.message;
  });
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
  let facts: { version: string; pid: number } | undefined;
  try {
    facts = (await client.query<{ version: string; pid: number }>(SESSION_FACTS)).rows[0];
  } catch (error) {
    await client.end().catch(() => {});
    throw error;
  }
  return {
    query: async <T>(sql: string, params?: unknown[]) => (await client.query(sql, params)).rows as T[],
    end: () => client.end(),
    serverVersion: Number(facts?.version ?? 0),
    pid: Number(facts?.pid ?? 0),
    lost: () => lost,
  };
}

/** The OS account named `name`, from the system's user database. */
async function osUser(name: string): Promise<OsUser | undefined> {
  const result = await execa('getent', ['passwd', name], { reject: false });
  const fields = String(result.stdout ?? '').trim().split(':');
  if (result.exitCode !== 0 || fields.length < 7 || fields[0] !== name) return undefined;
  return { name, uid: Number(fields[2]), gid: Number(fields[3]), home: fields[5] ?? '/' };
}

type HelperReply = { id: number; rows?: Row[]; error?: { message: string; code?: string } };

/** A session whose driver runs in a helper process started as `user` (peer authentication). */
async function helperSession(options: PostgresOptions, database: string, user: OsUser): Promise<PgSession> {
  const helper: ChildProcess = fork(fileURLToPath(new URL('./peer-helper.js', import.meta.url)), [], {
    uid: user.uid,
    gid: user.gid,
    cwd: '/',
    env: { HOME: user.home, PATH: process.env.PATH ?? '/usr/bin:/bin' },
    serialization: 'advanced',
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  helper.stderr?.on('data', (data: Buffer) => (stderr += data.toString()));
  const pending = new Map<number, { resolve: (rows: Row[]) => void; reject: (error: Error) => void }>();
  let exited: Error | undefined;
  helper.on('message', (reply: HelperReply) => {
    const waiter = pending.get(reply.id);
    if (waiter === undefined) return;
    pending.delete(reply.id);
    if (reply.error !== undefined) {
      waiter.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code }));
    } else {
      waiter.resolve(reply.rows ?? []);
    }
  });
  helper.on('exit', (code, signal) => {
    exited = new OperationError(`the helper process running as OS user ${user.name} ended (${signal ?? `exit status ${code}`}) ${stderr.trim()}`, {
      plugin: PLUGIN,
    });
    for (const waiter of pending.values()) waiter.reject(exited);
    pending.clear();
  });
  let next = 0;
  const call = (message: Record<string, unknown>) =>
    new Promise<Row[]>((resolve, reject) => {
      if (exited !== undefined) return reject(exited);
      const id = ++next;
      pending.set(id, { resolve, reject });
      helper.send({ ...message, id });
    });
  let facts: Row | undefined;
  try {
    // No password goes to the helper: peer authentication needs none.
    await call({ op: 'connect', config: { ...clientConfig(options, database, options.timeoutMs), password: undefined } });
    [facts] = await call({ op: 'query', sql: SESSION_FACTS });
  } catch (error) {
    // Its IPC channel would keep this process alive.
    helper.kill();
    throw error;
  }
  return {
    query: async <T>(sql: string, params?: unknown[]) => (await call({ op: 'query', sql, params })) as T[],
    end: async () => {
      if (exited === undefined) await call({ op: 'end' }).catch(() => {});
      helper.kill();
    },
    runAs: user,
    serverVersion: Number(facts?.version ?? 0),
    pid: Number(facts?.pid ?? 0),
  };
}

/**
 * Opens a control session on the maintenance database (or on `database`), waiting up to the
 * timeout for the server. Switches to the peer helper when needed (see the top of this file).
 */
export async function openSession(options: PostgresOptions, log: Logger, signal?: AbortSignal, database?: string): Promise<PgSession> {
  const where = describeServer(options);
  const attempt = (name: string) =>
    waitForServer((remainingMs) => directSession(options, name, remainingMs), {
      timeoutMs: options.timeoutMs,
      isTransient,
      what: `the PostgreSQL server at ${where}`,
      hint: 'start the server, or check postgresqlRuntimeDir, postgresqlHost and postgresqlPort (and raise timeout if it starts slowly)',
      plugin: PLUGIN,
      signal,
    });
  try {
    try {
      return await attempt(database ?? 'postgres');
    } catch (error) {
      // a server without the `postgres` database
      if (codeOf(error) !== '3D000' || database !== undefined) throw error;
      return await attempt('template1');
    }
  } catch (error) {
    if (error instanceof OperationError) throw error;
    const root = process.getuid?.() === 0;
    if (isPeerFailure(error) && root && options.socketDir !== undefined) {
      const user = await osUser(options.user);
      if (user !== undefined && user.uid !== 0) {
        log.debug(`peer authentication: reaching ${where} as OS user ${user.name}`);
        try {
          return await helperSession(options, database ?? 'postgres', user);
        } catch (helperError) {
          throw loginError(options, helperError);
        }
      }
    }
    throw loginError(options, error);
  }
}

function loginError(options: PostgresOptions, error: unknown): OperationError {
  const where = describeServer(options);
  const message = (error as Error).message ?? String(error);
  let hint = '';
  if (isPeerFailure(error)) {
    hint =
      options.socketDir !== undefined
        ? `; over the local socket the server admits role ${options.user} only to the OS user of that name: run as root (dysnomia then runs as OS user ${options.user}, which must exist) or as that user, or set postgresqlHost and a password`
        : '';
  } else if (codeOf(error) === '28P01' || codeOf(error) === '28000') {
    hint = '; check postgresqlUsername and postgresqlPassword (or postgresqlPasswordFile)';
  }
  return new OperationError(`cannot log in to the PostgreSQL server at ${where} as ${JSON.stringify(options.user)}: ${message}${hint}`, {
    plugin: PLUGIN,
    cause: error,
  });
}

/** A second session, on `database`, reached the way `control` reaches the server. */
export async function sessionOn(control: PgSession, options: PostgresOptions, database: string): Promise<PgSession> {
  try {
    if (control.runAs !== undefined) return await helperSession(options, database, control.runAs);
    return await directSession(options, database, options.timeoutMs);
  } catch (error) {
    throw loginError(options, error);
  }
}

/** Runs `work` with a session that is always closed afterwards. */
export async function withSession<T>(
  options: PostgresOptions,
  log: Logger,
  signal: AbortSignal | undefined,
  work: (session: PgSession) => Promise<T>,
): Promise<T> {
  const session = await openSession(options, log, signal);
  try {
    return await work(session);
  } finally {
    await session.end().catch(() => {});
  }
}

/** True when the database exists. */
export async function databaseExists(session: PgSession, name: string): Promise<boolean> {
  return (await session.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).length > 0;
}

/** The client tools, found once. */
export interface PgTools {
  dump: string;
  psql: string;
}

let tools: Promise<PgTools> | undefined;

/** Finds pg_dump and psql on PATH. */
export function findPgTools(): Promise<PgTools> {
  tools ??= (async () => {
    const dump = await findTool(['pg_dump']);
    const psql = await findTool(['psql']);
    if (dump === undefined || psql === undefined) {
      tools = undefined;
      throw new PluginError(
        `cannot find ${dump === undefined ? 'pg_dump' : 'psql'} on PATH (${process.env.PATH ?? ''}); install the PostgreSQL client (Debian: apt install postgresql-client)`,
        { plugin: PLUGIN },
      );
    }
    return { dump, psql };
  })();
  return tools;
}

/** Connection arguments for pg_dump and psql (no secret among them). */
export function connectionArguments(options: PostgresOptions, database: string): string[] {
  return [
    `--host=${options.socketDir ?? options.host}`,
    `--port=${options.port}`,
    `--username=${options.user}`,
    '--no-password',
    `--dbname=${database}`,
  ];
}

/** A line of a password file: `*:*:*:*:password`, with `\` and `:` escaped. */
function passFile(password: string): string {
  return `*:*:*:*:${password.replaceAll('\\', '\\\\').replaceAll(':', '\\:')}\n`;
}

/**
 * Runs `work` with the options for a tool: the OS user to run as (peer authentication), and the
 * password in a private 0600 PGPASSFILE that is removed afterwards.
 */
export async function withToolAccess<T>(
  options: PostgresOptions,
  session: PgSession,
  signal: AbortSignal | undefined,
  work: (tool: ToolOptions) => Promise<T>,
): Promise<T> {
  const runAs = session.runAs;
  const base: ToolOptions = {
    plugin: PLUGIN,
    signal,
    uid: runAs?.uid,
    gid: runAs?.gid,
    env: {
      PGOPTIONS: '-c client_min_messages=warning',
      PGAPPNAME: 'dysnomia',
      ...(runAs !== undefined ? { HOME: runAs.home, USER: runAs.name, LOGNAME: runAs.name } : {}),
    },
  };
  if (options.password === undefined) return work(base);
  return withPrivateDir(async (dir) => {
    const file = await writePrivateFile(dir, 'pgpass', passFile(options.password!), runAs);
    return work({ ...base, env: { ...base.env, PGPASSFILE: file } });
  }, runAs);
}
