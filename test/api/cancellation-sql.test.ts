/**
 * Cancellation on real databases (MariaDB and PostgreSQL): a snapshot aborted while the dump
 * streams leaves no snapshot; a restore aborted while the data loads leaves the live database as
 * it was, with no staging database left behind.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { findMysql, findPostgres } from '../support/servers.js';
import { uniqueName, useTempDir } from '../support/temp.js';

interface Server {
  properties: Record<string, string>;
  queryIn(database: string, sql: string): Promise<unknown[]>;
  query(sql: string): Promise<unknown[]>;
}

const backends = [
  {
    type: 'mysql-database',
    scriptsDir: 'mysql-databases',
    server: () => findMysql() as Promise<Server>,
    databases: async (server: Server, prefix: string) =>
      ((await server.query('SHOW DATABASES')) as { Database: string }[]).map((r) => r.Database).filter((n) => n.startsWith(prefix)),
    drop: (db: string) => `DROP DATABASE IF EXISTS \`${db}\``,
  },
  {
    type: 'postgresql-database',
    scriptsDir: 'postgresql-databases',
    server: () => findPostgres() as Promise<Server>,
    databases: async (server: Server, prefix: string) =>
      ((await server.query('SELECT datname FROM pg_database')) as { datname: string }[]).map((r) => r.datname).filter((n) => n.startsWith(prefix)),
    drop: (db: string) => `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`,
  },
];

function schema(): string {
  const rows = Array.from({ length: 20000 }, (_, i) => `(${i + 1}, 'row ${i + 1} of the table that is dumped and loaded again')`);
  return `CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(100) NOT NULL);\nINSERT INTO items (id, label) VALUES\n${rows.join(',\n')};\n`;
}

const entries = (dir: string) => readdir(dir).catch(() => [] as string[]);

describe.each(backends)('cancellation ($type)', (backend) => {
  async function setup() {
    const server = await backend.server();
    const name = uniqueName('cancel');
    onTestFinished(async () => {
      for (const db of await backend.databases(server, name)) await server.query(backend.drop(db));
    });
    const dir = await useTempDir('dysnomia-cancel-sql-');
    const component = path.join(dir, name);
    await mkdir(path.join(component, backend.scriptsDir), { recursive: true });
    await writeFile(path.join(component, backend.scriptsDir, 'schema.sql'), schema());
    const options = { container: { properties: server.properties, name: backend.type }, component, stateDir: path.join(dir, 'state') };
    await dysnomia.activate(options);
    const rows = async () => JSON.stringify(await server.queryIn(name, 'SELECT id, label FROM items ORDER BY id'));
    return { server, name, options, rows, key: path.join(backend.type, name) };
  }

  const abortOnFirstProgress = () => {
    const controller = new AbortController();
    let events = 0;
    return {
      signal: controller.signal,
      events: () => events,
      onProgress: () => {
        events++;
        controller.abort(new Error('test cancels'));
      },
    };
  };

  it('an aborted snapshot leaves no snapshot and no generation', async () => {
    const s = await setup();
    const abort = abortOnFirstProgress();
    const error = await dysnomia.snapshot({ ...s.options, signal: abort.signal, onProgress: abort.onProgress }).catch((e: unknown) => e);
    expect(abort.events()).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(dysnomia.AbortedError);
    expect(await entries(path.join(s.options.stateDir, 'generations', s.key))).toEqual([]);
    expect(await entries(path.join(s.options.stateDir, 'snapshots', s.key))).toEqual([]);
    expect((await dysnomia.snapshot(s.options)).snapshot?.generation).toBe(1);
  });

  it('an aborted restore leaves the live database as it was, and no staging database', async () => {
    const s = await setup();
    await dysnomia.snapshot(s.options);
    await s.server.queryIn(s.name, "UPDATE items SET label = 'changed after the snapshot' WHERE id = 5");
    const live = await s.rows();

    // Abort the moment the restore's staging database exists, i.e. while the data loads.
    const controller = new AbortController();
    let restoring = true;
    const watcher = (async () => {
      while (restoring) {
        if ((await backend.databases(s.server, s.name)).some((db) => db !== s.name)) {
          controller.abort(new Error('test cancels'));
          return true;
        }
        await delay(5);
      }
      return false;
    })();
    const error = await dysnomia.restore({ ...s.options, signal: controller.signal }).catch((e: unknown) => e);
    restoring = false;
    expect(await watcher).toBe(true);
    expect(error).toBeInstanceOf(dysnomia.AbortedError);
    expect(await s.rows()).toBe(live);
    expect(await backend.databases(s.server, s.name)).toEqual([s.name]);

    // The cancellation must not poison the next restore in this process (no cached failure).
    const again = await dysnomia.restore(s.options).catch((e: unknown) => e);
    expect(again instanceof Error ? `the next restore failed: ${again.message}` : 'ok').toBe('ok');
    expect(await s.rows()).not.toContain('changed after the snapshot');
  });

  it('a restore reports its progress up to the snapshot\'s size; aborted on its first report, the live database stays as it was', async () => {
    const s = await setup();
    await dysnomia.snapshot(s.options);
    await s.server.queryIn(s.name, "UPDATE items SET label = 'changed after the snapshot' WHERE id = 5");
    const live = await s.rows();

    const abort = abortOnFirstProgress();
    const error = await dysnomia.restore({ ...s.options, signal: abort.signal, onProgress: abort.onProgress }).catch((e: unknown) => e);
    expect(abort.events()).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(dysnomia.AbortedError);
    expect(await s.rows()).toBe(live);
    expect(await backend.databases(s.server, s.name)).toEqual([s.name]);

    const events: dysnomia.ProgressEvent[] = [];
    const result = await dysnomia.restore({ ...s.options, onProgress: (event) => events.push(event) });
    expect(result.status).toBe('done');
    expect(events.length).toBeGreaterThan(1);
    expect(new Set(events.map((event) => `${event.operation} ${event.stage}`))).toEqual(new Set(['restore restore']));
    const bytes = events.map((event) => event.bytes);
    expect(bytes).toEqual([...bytes].sort((a, b) => a - b));
    expect(events.at(-1)!.totalBytes).toBe(result.bytesRead);
    expect(bytes.at(-1)).toBe(result.bytesRead);
    expect(await s.rows()).not.toContain('changed after the snapshot');
  });
});
