/**
 * migrate() of real databases between two servers and two state dirs on this machine: MariaDB
 * (the local server to a second mariadbd of its own) and PostgreSQL (the local cluster to a second
 * cluster). Each moves by the library call, then again after a small change through a real
 * `sh -c` transport running the built programs (sending only the new packs); an import the target
 * refuses leaves the source database activated and unchanged.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { programWords, type ScratchMariadb, startScratchMariadb } from '../support/migrate.js';
import { findMysql, findPostgres } from '../support/servers.js';
import { createPeerCluster, type PeerCluster } from '../support/sql-cluster.js';
import { uniqueName, useTempDir } from '../support/temp.js';

interface Server {
  properties: Record<string, string>;
  queryIn(database: string, sql: string): Promise<unknown[]>;
  query(sql: string): Promise<unknown[]>;
}

interface Backend {
  type: 'mysql-database' | 'postgresql-database';
  scriptsDir: string;
  source(): Promise<Server>;
  target(): Server;
  dropStatement(database: string): string;
  /** Names of the databases on a server that start with `prefix`. */
  databases(server: Server, prefix: string): Promise<string[]>;
}

let scratch: ScratchMariadb;
let cluster: PeerCluster;

beforeAll(async () => {
  [scratch, cluster] = await Promise.all([startScratchMariadb(), createPeerCluster()]);
}, 120_000);

afterAll(async () => {
  await Promise.all([scratch?.stop(), cluster?.drop()]);
});

const backends: Backend[] = [
  {
    type: 'mysql-database',
    scriptsDir: 'mysql-databases',
    source: () => findMysql() as Promise<Server>,
    target: () => scratch,
    dropStatement: (db) => `DROP DATABASE IF EXISTS \`${db}\``,
    databases: async (server, prefix) =>
      ((await server.query('SHOW DATABASES')) as { Database: string }[]).map((row) => row.Database).filter((name) => name.startsWith(prefix)),
  },
  {
    type: 'postgresql-database',
    scriptsDir: 'postgresql-databases',
    source: () => findPostgres() as Promise<Server>,
    // Over TCP with a password: the cluster's socket uses peer authentication, whose helper
    // process the plugin starts from its built file (dist), which a test run from src has not.
    target: () => ({
      ...cluster.server,
      properties: {
        type: 'postgresql-database',
        postgresqlUsername: 'postgres',
        postgresqlHost: '127.0.0.1',
        postgresqlPort: String(cluster.port),
        postgresqlPassword: cluster.password,
      },
    }),
    dropStatement: (db) => `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`,
    databases: async (server, prefix) =>
      ((await server.query('SELECT datname FROM pg_database')) as { datname: string }[]).map((row) => row.datname).filter((name) => name.startsWith(prefix)),
  },
];

/** The initial state: a table of 3000 rows, enough for many chunks. */
function schema(): string {
  const rows = Array.from({ length: 3000 }, (_, i) => `(${i + 1}, 'item number ${i + 1} with a label long enough to matter')`);
  return `CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(100) NOT NULL);\nINSERT INTO items (id, label) VALUES\n${rows.join(',\n')};\n`;
}

async function rows(server: Server, database: string): Promise<string> {
  return JSON.stringify(await server.queryIn(database, 'SELECT id, label FROM items ORDER BY id'));
}

describe.each(backends)('migrate ($type)', (backend) => {
  async function setup() {
    const source = await backend.source();
    const target = backend.target();
    const name = uniqueName('mig');
    onTestFinished(async () => {
      for (const server of [source, target]) {
        for (const db of await backend.databases(server, name)) await server.query(backend.dropStatement(db));
      }
    });
    const dir = await useTempDir('dysnomia-migrate-sql-');
    const component = path.join(dir, 'components', name);
    await mkdir(path.join(component, backend.scriptsDir), { recursive: true });
    await writeFile(path.join(component, backend.scriptsDir, 'schema.sql'), schema());
    const from = { container: { properties: source.properties, name: `${backend.type}-a` }, stateDir: path.join(dir, 'a-state') };
    const to = { container: { properties: target.properties, name: `${backend.type}-b` }, stateDir: path.join(dir, 'b-state') };
    await dysnomia.activate({ ...from, component });
    return { source, target, name, dir, component, from, to };
  }

  it('moves the database by the library call, then again through sh -c sending only new packs', async () => {
    const s = await setup();
    await s.source.queryIn(s.name, "UPDATE items SET label = 'changed before the first move' WHERE id = 1500");

    const first = await dysnomia.migrate({ component: s.component, from: s.from, to: s.to });
    expect(await rows(s.target, s.name)).toBe(await rows(s.source, s.name));
    expect(await rows(s.target, s.name)).toContain('changed before the first move');
    expect(first.activated?.status).toBe('done');
    expect(first.restore?.status).toBe('done');
    expect(first.transfer.packsOmitted).toBe(0);
    expect(existsSync(path.join(s.to.stateDir, 'activated', `${backend.type}-b`, s.name))).toBe(true);
    expect(existsSync(path.join(s.from.stateDir, 'activated', `${backend.type}-a`, s.name))).toBe(true);

    // A small change, moved through a shell transport: the packs the target has stay home.
    await s.source.queryIn(s.name, "UPDATE items SET label = 'changed before the second move' WHERE id = 10");
    const containerB = path.join(s.dir, `${backend.type}-b`);
    await writeFile(
      containerB,
      Object.entries(s.target.properties)
        .map(([key, value]) => `${key}=${dysnomia.shellQuote(value)}\n`)
        .join(''),
    );
    const transport = dysnomia.commandTransport(
      dysnomia.dysnomiaCommands({
        container: containerB,
        component: s.component,
        env: { DYSNOMIA_STATEDIR: s.to.stateDir },
        programs: { dysnomia: programWords('dysnomia'), dysnomiaSnapshots: programWords('dysnomia-snapshots') },
      }),
    );
    const second = await dysnomia.migrate({ component: s.component, from: s.from, to: transport });
    expect(await rows(s.target, s.name)).toBe(await rows(s.source, s.name));
    expect(await rows(s.target, s.name)).toContain('changed before the second move');
    expect(second.identity).not.toBe(first.identity);
    expect(second.transfer.packsOmitted).toBeGreaterThan(0);
    expect(second.transfer.bytesSent).toBeLessThan(first.transfer.bytesSent);
    // No staging database is left on either server.
    expect(await backend.databases(s.source, s.name)).toEqual([s.name]);
    expect(await backend.databases(s.target, s.name)).toEqual([s.name]);
  });

  it('a refused import leaves the source database activated and unchanged, and names the target', async () => {
    const s = await setup();
    await s.source.queryIn(s.name, "UPDATE items SET label = 'must survive' WHERE id = 7");
    const before = await rows(s.source, s.name);
    const blocker = path.join(s.dir, 'blocker');
    await writeFile(blocker, 'a file where the target state dir should be\n');

    const error = await dysnomia
      .migrate({ component: s.component, from: s.from, to: { ...s.to, stateDir: path.join(blocker, 'state') } })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.MigrationError);
    expect((error as dysnomia.MigrationError).side).toBe('target');
    expect((error as Error).message).toContain('the source is unchanged and still activated');
    expect(await rows(s.source, s.name)).toBe(before);
    expect(existsSync(path.join(s.from.stateDir, 'activated', `${backend.type}-a`, s.name))).toBe(true);
    expect(await backend.databases(s.target, s.name)).toEqual([]);
  });

  it('refuses a target container that reaches the source database itself, however it reaches the server, and changes nothing', async () => {
    const s = await setup();
    await s.source.queryIn(s.name, "UPDATE items SET label = 'written after the snapshot' WHERE id = 9");
    const before = await rows(s.source, s.name);
    const properties = s.from.container.properties;
    // The same server reached another way: over TCP instead of the socket, or the other way round.
    const otherWay: Record<string, string> =
      backend.type === 'mysql-database'
        ? properties.mysqlSocket !== undefined
          ? { type: backend.type, mysqlUsername: properties.mysqlUsername!, mysqlHost: '127.0.0.1' }
          : { type: backend.type, mysqlUsername: properties.mysqlUsername!, mysqlSocket: '/run/mysqld/mysqld.sock' }
        : properties.postgresqlHost !== undefined
          ? { type: backend.type, postgresqlUsername: properties.postgresqlUsername!, postgresqlRuntimeDir: '/var/run/postgresql' }
          : { type: backend.type, postgresqlUsername: properties.postgresqlUsername!, postgresqlHost: '127.0.0.1' };
    for (const target of [properties, otherWay]) {
      const stateDir = path.join(s.dir, `same-${target === properties ? 'file' : 'server'}`);
      const error = await dysnomia
        .migrate({ component: s.component, from: s.from, to: { container: { properties: target, name: `${backend.type}-c` }, stateDir } })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(dysnomia.MigrationError);
      expect((error as dysnomia.MigrationError).side).toBe('target');
      expect((error as dysnomia.MigrationError).step).toBe('prepare');
      expect((error as dysnomia.MigrationError).exitCode).toBe(2);
      expect((error as Error).message).toContain("reaches the source's own data");
      expect((error as Error).message).toContain('the source is unchanged and still activated');
      expect(existsSync(stateDir)).toBe(false);
    }
    expect(await rows(s.source, s.name)).toBe(before);
    expect(existsSync(path.join(s.from.stateDir, 'generations'))).toBe(false);
    expect(await backend.databases(s.source, s.name)).toEqual([s.name]);
  });
});
