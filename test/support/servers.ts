/**
 * Finds a real MariaDB/MySQL or PostgreSQL server for the tests, in this order:
 *   1. a URL from the environment (DYSNOMIA_TEST_MYSQL_URL, DYSNOMIA_TEST_POSTGRES_URL);
 *   2. a server already listening on the standard local socket or port;
 *   3. a container started with testcontainers, when a container engine is reachable.
 * If none works, the test fails with a message saying how to provide one. Never a mock.
 */
import { existsSync } from 'node:fs';
import mysql from 'mysql2/promise';
import pg from 'pg';

export interface MysqlServer {
  source: string;
  user: string;
  password: string;
  socket?: string;
  host?: string;
  port?: number;
  /** Container-file properties of the mysql-database plugin reaching this server. */
  properties: Record<string, string>;
  /** Runs one statement as the admin user. */
  query(sql: string, values?: unknown[]): Promise<unknown[]>;
  /** Runs a statement in a given database. */
  queryIn(database: string, sql: string, values?: unknown[]): Promise<unknown[]>;
}

export interface PostgresServer {
  source: string;
  user: string;
  password?: string;
  /** Socket directory, when reached over the local socket. */
  socketDir?: string;
  host?: string;
  port: number;
  properties: Record<string, string>;
  query(sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  queryIn(database: string, sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
}

const HOW_TO =
  'Provide a server: set DYSNOMIA_TEST_MYSQL_URL=mysql://root:PASSWORD@HOST:PORT and ' +
  'DYSNOMIA_TEST_POSTGRES_URL=postgres://postgres:PASSWORD@HOST:PORT, or start local servers ' +
  '(MariaDB on /run/mysqld/mysqld.sock or 127.0.0.1:3306 as root with an empty password; ' +
  'PostgreSQL on /var/run/postgresql or 127.0.0.1:5432 with trust auth; `bash .ci/run` starts both), ' +
  'or run a Docker engine so testcontainers can start them.';

/** The host of a URL as clients take it: `[::1]` becomes `::1`. */
function urlHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1');
}

// ---------------------------------------------------------------------------------------------
// MariaDB / MySQL

interface MysqlAccess {
  source: string;
  user: string;
  password: string;
  socket?: string;
  host?: string;
  port?: number;
}

async function mysqlWorks(access: MysqlAccess): Promise<boolean> {
  try {
    const connection = await mysql.createConnection({
      user: access.user,
      password: access.password,
      socketPath: access.socket,
      host: access.host,
      port: access.port,
      connectTimeout: 3000,
    });
    await connection.query('select 1');
    await connection.end();
    return true;
  } catch {
    return false;
  }
}

function mysqlServer(access: MysqlAccess): MysqlServer {
  const properties: Record<string, string> = { type: 'mysql-database', mysqlUsername: access.user };
  if (access.password !== '') properties.mysqlPassword = access.password;
  if (access.socket) properties.mysqlSocket = access.socket;
  if (access.host) properties.mysqlHost = access.host;
  if (access.port) properties.mysqlPort = String(access.port);
  const connect = (database?: string) =>
    mysql.createConnection({
      user: access.user,
      password: access.password,
      socketPath: access.socket,
      host: access.host,
      port: access.port,
      database,
      multipleStatements: true,
    });
  const run = async (database: string | undefined, sql: string, values?: unknown[]) => {
    const connection = await connect(database);
    try {
      const [rows] = await connection.query(sql, values);
      return rows as unknown[];
    } finally {
      await connection.end();
    }
  };
  return {
    ...access,
    properties,
    query: (sql, values) => run(undefined, sql, values),
    queryIn: (database, sql, values) => run(database, sql, values),
  };
}

let mysqlFound: Promise<MysqlServer> | undefined;

/** The MariaDB/MySQL server for this test run (found once per test file). */
export function findMysql(): Promise<MysqlServer> {
  mysqlFound ??= (async () => {
    const url = process.env.DYSNOMIA_TEST_MYSQL_URL;
    if (url) {
      const parsed = new URL(url);
      const access: MysqlAccess = {
        source: 'DYSNOMIA_TEST_MYSQL_URL',
        user: decodeURIComponent(parsed.username || 'root'),
        password: decodeURIComponent(parsed.password),
        host: urlHost(parsed),
        port: Number(parsed.port || 3306),
      };
      if (await mysqlWorks(access)) return mysqlServer(access);
      throw new Error(`DYSNOMIA_TEST_MYSQL_URL=${url}: cannot connect. ${HOW_TO}`);
    }
    for (const socket of ['/run/mysqld/mysqld.sock', '/var/run/mysqld/mysqld.sock', '/tmp/mysql.sock']) {
      if (!existsSync(socket)) continue;
      const access: MysqlAccess = { source: `local socket ${socket}`, user: 'root', password: '', socket };
      if (await mysqlWorks(access)) return mysqlServer(access);
    }
    const tcp: MysqlAccess = { source: 'local port 3306', user: 'root', password: '', host: '127.0.0.1', port: 3306 };
    if (await mysqlWorks(tcp)) return mysqlServer(tcp);
    const started = await startContainer('mysql');
    if (started) return mysqlServer(started as MysqlAccess);
    throw new Error(`No MariaDB/MySQL server found. ${HOW_TO}`);
  })();
  return mysqlFound;
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

interface PostgresAccess {
  source: string;
  user: string;
  password?: string;
  socketDir?: string;
  host?: string;
  port: number;
}

function pgConfig(access: PostgresAccess, database = 'postgres'): pg.ClientConfig {
  return {
    user: access.user,
    password: access.password,
    host: access.socketDir ?? access.host,
    port: access.port,
    database,
    connectionTimeoutMillis: 3000,
  };
}

async function postgresWorks(access: PostgresAccess): Promise<boolean> {
  const client = new pg.Client(pgConfig(access));
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

function postgresServer(access: PostgresAccess): PostgresServer {
  const properties: Record<string, string> = {
    type: 'postgresql-database',
    postgresqlUsername: access.user,
    postgresqlPort: String(access.port),
  };
  if (access.socketDir) properties.postgresqlRuntimeDir = access.socketDir;
  if (access.host) properties.postgresqlHost = access.host;
  if (access.password) properties.postgresqlPassword = access.password;
  const run = async (database: string, sql: string, values?: unknown[]) => {
    const client = new pg.Client(pgConfig(access, database));
    await client.connect();
    try {
      const result = await client.query(sql, values);
      return (Array.isArray(result) ? result.at(-1)?.rows : result.rows) ?? [];
    } finally {
      await client.end();
    }
  };
  return {
    ...access,
    properties,
    query: (sql, values) => run('postgres', sql, values),
    queryIn: run,
  };
}

let postgresFound: Promise<PostgresServer> | undefined;

/** The PostgreSQL server for this test run (found once per test file). */
export function findPostgres(): Promise<PostgresServer> {
  postgresFound ??= (async () => {
    const url = process.env.DYSNOMIA_TEST_POSTGRES_URL;
    if (url) {
      const parsed = new URL(url);
      const access: PostgresAccess = {
        source: 'DYSNOMIA_TEST_POSTGRES_URL',
        user: decodeURIComponent(parsed.username || 'postgres'),
        password: parsed.password ? decodeURIComponent(parsed.password) : undefined,
        host: urlHost(parsed),
        port: Number(parsed.port || 5432),
      };
      if (await postgresWorks(access)) return postgresServer(access);
      throw new Error(`DYSNOMIA_TEST_POSTGRES_URL=${url}: cannot connect. ${HOW_TO}`);
    }
    for (const socketDir of ['/var/run/postgresql', '/run/postgresql', '/tmp']) {
      if (!existsSync(`${socketDir}/.s.PGSQL.5432`)) continue;
      const access: PostgresAccess = { source: `local socket ${socketDir}`, user: 'postgres', socketDir, port: 5432 };
      if (await postgresWorks(access)) return postgresServer(access);
    }
    const tcp: PostgresAccess = { source: 'local port 5432', user: 'postgres', host: '127.0.0.1', port: 5432 };
    if (await postgresWorks(tcp)) return postgresServer(tcp);
    const started = await startContainer('postgres');
    if (started) return postgresServer(started as PostgresAccess);
    throw new Error(`No PostgreSQL server found. ${HOW_TO}`);
  })();
  return postgresFound;
}

// ---------------------------------------------------------------------------------------------
// testcontainers, only when an engine is reachable (imported lazily: it is heavy)

async function startContainer(kind: 'mysql' | 'postgres'): Promise<MysqlAccess | PostgresAccess | undefined> {
  const tc = await import('testcontainers');
  try {
    await tc.getContainerRuntimeClient();
  } catch {
    return undefined; // no engine: the caller explains how to provide a server
  }
  if (kind === 'mysql') {
    const container = await new tc.GenericContainer('mariadb:11')
      .withEnvironment({ MARIADB_ROOT_PASSWORD: 'test' })
      .withExposedPorts(3306)
      .withWaitStrategy(tc.Wait.forLogMessage(/ready for connections/, 2))
      .start();
    return {
      source: 'testcontainers mariadb:11',
      user: 'root',
      password: 'test',
      host: container.getHost(),
      port: container.getMappedPort(3306),
    };
  }
  const container = await new tc.GenericContainer('postgres:16')
    .withEnvironment({ POSTGRES_PASSWORD: 'test' })
    .withExposedPorts(5432)
    .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
    .start();
  return {
    source: 'testcontainers postgres:16',
    user: 'postgres',
    password: 'test',
    host: container.getHost(),
    port: container.getMappedPort(5432),
  };
}
