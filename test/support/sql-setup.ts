/**
 * A mysql-database or postgresql-database component for one test, on the real servers
 * (servers.ts): a unique database name, a component folder with its initial scripts, a container
 * file and a temporary state dir; the databases (and helpers a test left) are dropped when the
 * test finishes. Call inside a test.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { expect, onTestFinished } from 'vitest';
import { type CliResult, programPath, runCli } from './cli.js';
import { findMysql, findPostgres, type PostgresServer } from './servers.js';
import { uniqueName, useTempDir } from './temp.js';

export type SqlType = 'mysql-database' | 'postgresql-database';

export interface SqlSetup {
  type: SqlType;
  /** The component name, which is the database name. */
  name: string;
  /** The test's temporary folder. */
  dir: string;
  component: string;
  stateDir: string;
  containerFile: string;
  properties: Record<string, string>;
  /** Runs `dysnomia --operation <operation>` on the component and container. */
  run(operation: string, options?: { env?: Record<string, string>; properties?: Record<string, string> }): Promise<CliResult>;
  /** Like run, and expects exit 0. */
  ok(operation: string): Promise<CliResult>;
  /** Starts a restore (or another operation) in its own process group, for SIGKILL tests. */
  spawn(operation: string): ReturnType<typeof execa>;
  /** The generation numbers, oldest first. */
  generations(): Promise<string[]>;
  /** Paths of the snapshot folders. */
  snapshots(): Promise<string[]>;
  exists(): Promise<boolean>;
  /** Every database whose name starts with the component name: the live one and helpers. */
  databases(): Promise<string[]>;
  /** Runs SQL in the live database. */
  query(sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
}

/** What a setup starts from. */
export interface SqlSetupOptions {
  /** The component's initial scripts, file name to SQL (in mysql-databases/ or postgresql-databases/). */
  scripts?: Record<string, string>;
  /** Container properties to add or override. */
  properties?: Record<string, string>;
  /** The component name; default a unique one. */
  name?: string;
  /** A PostgreSQL server other than the default one (the peer cluster). */
  postgres?: PostgresServer;
}

function containerText(properties: Record<string, string>): string {
  return `${Object.entries(properties)
    .map(([key, value]) => `${key}='${value.replaceAll("'", "'\\''")}'`)
    .join('\n')}\n`;
}

/** Writes a container file. */
export async function writeContainer(file: string, properties: Record<string, string>): Promise<void> {
  await writeFile(file, containerText(properties));
}

interface Backend {
  properties: Record<string, string>;
  scriptsDir: string;
  query(database: string, sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  list(prefix: string): Promise<string[]>;
  drop(database: string): Promise<void>;
}

async function mysqlBackend(): Promise<Backend> {
  const server = await findMysql();
  return {
    properties: server.properties,
    scriptsDir: 'mysql-databases',
    query: async (database, sql, values) => (await server.queryIn(database, sql, values)) as Record<string, unknown>[],
    list: async (prefix) =>
      ((await server.query('SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?', [
        `${prefix.replaceAll('_', '\\_')}%`,
      ])) as Array<{ name: string }>).map((row) => row.name).sort(),
    drop: async (database) => {
      await server.query(`DROP DATABASE IF EXISTS \`${database}\``);
    },
  };
}

async function postgresBackend(server?: PostgresServer): Promise<Backend> {
  const pg = server ?? (await findPostgres());
  return {
    properties: pg.properties,
    scriptsDir: 'postgresql-databases',
    query: (database, sql, values) => pg.queryIn(database, sql, values),
    list: async (prefix) =>
      (await pg.query("SELECT datname AS name FROM pg_database WHERE datname LIKE $1 || '%' ORDER BY 1", [prefix.replaceAll('_', '\\_')])).map(
        (row) => String(row.name),
      ),
    drop: async (database) => {
      await pg.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    },
  };
}

async function setup(type: SqlType, backend: Backend, options: SqlSetupOptions): Promise<SqlSetup> {
  const dir = await useTempDir('dysnomia-sql-');
  const name = options.name ?? uniqueName(type === 'mysql-database' ? 'my' : 'pg');
  const component = path.join(dir, name);
  await mkdir(path.join(component, backend.scriptsDir), { recursive: true });
  for (const [file, sql] of Object.entries(options.scripts ?? {})) {
    await writeFile(path.join(component, backend.scriptsDir, file), sql);
  }
  const stateDir = path.join(dir, 'state');
  const containerFile = path.join(dir, `${type}-container`);
  const properties = { ...backend.properties, ...options.properties };
  await writeContainer(containerFile, properties);
  onTestFinished(async () => {
    for (const database of await backend.list(name)) {
      if (database === name || database.startsWith(`${name}__dys_`)) await backend.drop(database);
    }
  });
  const args = (operation: string) => ['--operation', operation, '--component', component, '--container', containerFile];
  const run: SqlSetup['run'] = async (operation, extra = {}) => {
    if (extra.properties !== undefined) {
      const file = path.join(dir, `${type}-container-${uniqueName('c')}`);
      await writeContainer(file, { ...properties, ...extra.properties });
      return runCli('dysnomia', ['--operation', operation, '--component', component, '--container', file], {
        env: { DYSNOMIA_STATEDIR: stateDir, ...extra.env },
      });
    }
    return runCli('dysnomia', args(operation), { env: { DYSNOMIA_STATEDIR: stateDir, ...extra.env } });
  };
  const containerName = path.basename(containerFile);
  const result: SqlSetup = {
    type,
    name,
    dir,
    component,
    stateDir,
    containerFile,
    properties,
    run,
    ok: async (operation) => {
      const outcome = await run(operation);
      expect(outcome.exitCode, `${operation} failed:\n${outcome.stderr}`).toBe(0);
      return outcome;
    },
    spawn: (operation) =>
      execa(process.execPath, [programPath('dysnomia'), ...args(operation)], {
        env: { DYSNOMIA_STATEDIR: stateDir },
        detached: true,
        reject: false,
      }),
    generations: async () => {
      try {
        return (await readdir(path.join(stateDir, 'generations', containerName, name))).sort((a, b) => Number(a) - Number(b));
      } catch {
        return [];
      }
    },
    snapshots: async () => {
      const base = path.join(stateDir, 'snapshots', containerName, name);
      try {
        return (await readdir(base)).map((id) => path.join(base, id));
      } catch {
        return [];
      }
    },
    exists: async () => (await backend.list(name)).includes(name),
    databases: async () => (await backend.list(name)).filter((d) => d === name || d.startsWith(`${name}__`)),
    query: (sql, values) => backend.query(name, sql, values),
  };
  return result;
}

/** A mysql-database component on the test MariaDB/MySQL server. */
export async function mysqlSetup(options: SqlSetupOptions = {}): Promise<SqlSetup> {
  return setup('mysql-database', await mysqlBackend(), options);
}

/** A postgresql-database component on the test PostgreSQL server (or `options.postgres`). */
export async function postgresSetup(options: SqlSetupOptions = {}): Promise<SqlSetup> {
  return setup('postgresql-database', await postgresBackend(options.postgres), options);
}

/** Dysnomia's own test table (tests/services/mysql-database/testdb.sql). */
export const DYSNOMIA_TESTDB = "create table test\n( Test\tVARCHAR(255)\tNOT NULL,\n  PRIMARY KEY(Test));\n\ninsert into test values ('Hello world');\n";
