/**
 * dumpDatabase against the real PostgreSQL server, with a store that gives up: the user must read
 * the store's error (a full disk), not the echo it causes in the dump's pipes. And key-order
 * snapshots (`postgresqlRowOrder=key`) beside what can end or block their sessions: the database's
 * timeouts, an administrator, a concurrent ALTER TABLE. Locks held by the test set the timing.
 */
import path from 'node:path';
import { text } from 'node:stream/consumers';
import pg from 'pg';
import { describe, expect, it, onTestFinished } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { SnapshotSink } from '../../src/core/plugin.js';
import { withSession } from '../../src/plugins/postgres/client.js';
import { dumpDatabase } from '../../src/plugins/postgres/dump.js';
import { parsePostgresOptions } from '../../src/plugins/postgres/options.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { findPostgres } from '../support/servers.js';
import { postgresSetup, type SqlSetup } from '../support/sql-setup.js';
import { uniqueName } from '../support/temp.js';

/** A store whose disk is full: it refuses the stream at once, or after reading some of it. */
function fullDisk(readFirst: number): SnapshotSink {
  return {
    addStream: async (_name, data) => {
      let read = 0;
      if (readFirst > 0) {
        for await (const piece of data) {
          read += (piece as Buffer).length;
          if (read >= readFirst) break;
        }
      }
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    },
  };
}

describe('postgresql-database dump into a store that fails', () => {
  it('reports the store\'s error, whether the store fails at once or mid-stream, in both row orders', async () => {
    const setup = await postgresSetup({
      scripts: { '01.sql': "CREATE TABLE t (id int PRIMARY KEY, body text);\nINSERT INTO t SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i;\n" },
    });
    await setup.ok('activate');
    const options = parsePostgresOptions(setup.properties);
    for (const order of ['physical', 'key'] as const) {
      for (const readFirst of [0, 64 * 1024]) {
        const dumped = withSession(options, silentLogger, undefined, (session) =>
          dumpDatabase(options, session, setup.name, fullDisk(readFirst), { plugin: 'postgresql-database' }, silentLogger, order),
        );
        await expect(dumped, `${order} order, store fails after ${readFirst} bytes`).rejects.toMatchObject({ code: 'ENOSPC' });
      }
    }
  });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A session of the test's own on the component's database, closed when the test ends. */
async function testSession(setup: SqlSetup, application = 'qq-test'): Promise<pg.Client> {
  const server = await findPostgres();
  const client = new pg.Client({
    host: server.socketDir ?? server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database: setup.name,
    application_name: application,
  });
  client.on('error', () => {});
  await client.connect();
  onTestFinished(() => client.end().catch(() => {}));
  return client;
}

/** Table locks of dysnomia's sessions (the exporting session and the tools) on the database. */
async function dysnomiaLocks(setup: SqlSetup): Promise<Array<{ pid: number; table: string; granted: boolean }>> {
  return (await setup.query(
    `SELECT a.pid, l.relation::regclass::text AS table, l.granted FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
      WHERE a.datname = current_database() AND a.application_name = 'dysnomia' AND l.locktype = 'relation' AND l.relation >= 16384`,
  )) as Array<{ pid: number; table: string; granted: boolean }>;
}

/** Waits until `ready` holds, for up to `ms`; returns whether it did. */
async function waitFor(ready: () => Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await ready()) return true;
    await sleep(50);
  }
  return false;
}

/**
 * A snapshot taken while `holder` locks `table` exclusively: once dysnomia's session waits for the
 * table, the lock is held `holdMs` longer, then released. The snapshot's result.
 */
async function snapshotBehindLock(setup: SqlSetup, holder: pg.Client, table: string, holdMs: number) {
  await holder.query('BEGIN');
  await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
  const snapshot = setup.run('snapshot');
  expect(await waitFor(async () => (await dysnomiaLocks(setup)).some((l) => l.table === table && !l.granted))).toBe(true);
  await sleep(holdMs);
  await holder.query('COMMIT');
  return snapshot;
}

const keyedScripts = (extra = '', rows = 20_000) => ({
  '01.sql': `${extra}CREATE TABLE t (id int PRIMARY KEY, body text);\nINSERT INTO t SELECT i, repeat('x', 100) FROM generate_series(1, ${rows}) i;\n`,
});

describe('postgresql-database key-order snapshots beside timeouts and other sessions', () => {
  it("a statement_timeout of the database does not cancel the snapshot's sessions while they wait (they set it to 0, as pg_dump does)", async () => {
    const setup = await postgresSetup({
      name: uniqueName('qq_pg'),
      scripts: keyedScripts('CREATE TABLE nokey (v int);\nINSERT INTO nokey VALUES (1);\n', 50_000),
      properties: { postgresqlRowOrder: 'key' },
    });
    await setup.ok('activate');
    await setup.query(`ALTER DATABASE "${setup.name}" SET statement_timeout = '300ms'`);
    // A session that holds the keyed table for a second: the exporting session's lock waits.
    const holder = await testSession(setup);
    let result = await snapshotBehindLock(setup, holder, 't', 800);
    expect(result.exitCode, result.stderr).toBe(0);
    // Now pg_dump waits for the table without a key, and psql's copy of t (5 MB), which is written
    // after pg_dump's part, is held back by its full pipe for a second, in the middle of its COPY.
    await setup.query('UPDATE t SET body = upper(body) WHERE id = 1');
    result = await snapshotBehindLock(setup, holder, 'nokey', 1000);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await setup.generations()).toEqual(['1', '2']);
  });

  it('an idle_in_transaction_session_timeout of the database does not end the session holding the snapshot', async () => {
    const setup = await postgresSetup({
      name: uniqueName('qq_pg'),
      scripts: keyedScripts('CREATE TABLE nokey (v int);\nINSERT INTO nokey VALUES (1);\n'),
      properties: { postgresqlRowOrder: 'key' },
    });
    await setup.ok('activate');
    await setup.query(`ALTER DATABASE "${setup.name}" SET idle_in_transaction_session_timeout = '100ms'`);
    // pg_dump waits for the table without a key; the exporting session sits idle meanwhile.
    const holder = await testSession(setup);
    await holder.query('SET idle_in_transaction_session_timeout = 0');
    const result = await snapshotBehindLock(setup, holder, 'nokey', 600);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await setup.generations()).toEqual(['1']);
  });

  it('says so when the session holding the snapshot is ended anyway, and stores nothing', async () => {
    const setup = await postgresSetup({
      name: uniqueName('qq_pg'),
      scripts: keyedScripts('CREATE TABLE nokey (v int);\nINSERT INTO nokey VALUES (1);\n'),
      properties: { postgresqlRowOrder: 'key' },
    });
    await setup.ok('activate');
    const holder = await testSession(setup);
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE nokey IN ACCESS EXCLUSIVE MODE');
    const snapshot = setup.run('snapshot');
    expect(await waitFor(async () => (await dysnomiaLocks(setup)).some((l) => l.table === 'nokey' && !l.granted))).toBe(true);
    // The first of dysnomia's sessions on the database is the one that exported the snapshot.
    const [ended] = await setup.query(
      `SELECT pid, pg_terminate_backend(pid) AS done FROM (SELECT pid FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'dysnomia' ORDER BY backend_start LIMIT 1) s`,
    );
    expect(ended!.done).toBe(true);
    await holder.query('COMMIT');
    const result = await snapshot;
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(
      `the session holding the snapshot of ${setup.name} (server process ${ended!.pid}) ended before the dump was complete (terminating connection due to administrator command)`,
    );
    expect(await setup.generations()).toEqual([]);
  });
});

describe('postgresql-database key-order snapshots beside a session holding a table', () => {
  it('names the table and the session holding it when a lock wait times out, whether ours or pg_dump\'s', async () => {
    const setup = await postgresSetup({
      name: uniqueName('qq_pg'),
      scripts: keyedScripts('CREATE TABLE nokey (v int);\nINSERT INTO nokey VALUES (1);\n', 100),
      properties: { postgresqlRowOrder: 'key', timeout: '1' },
    });
    await setup.ok('activate');
    const holder = await testSession(setup);
    const [{ pid }] = (await holder.query('SELECT pg_backend_pid() AS pid')).rows as Array<{ pid: number }>;
    for (const table of ['t', 'nokey']) {
      await holder.query('BEGIN');
      await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      const result = await setup.run('snapshot');
      await holder.query('COMMIT');
      expect(result.exitCode, table).toBe(1);
      expect(result.stderr, table).toContain(
        `server process ${pid} (role ${setup.properties.postgresqlUsername}, application qq-test) holds table ${table} (ACCESS EXCLUSIVE) for: LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE. Take the snapshot again once that statement is done.`,
      );
      if (table === 't') {
        expect(result.stderr).toContain(`cannot lock the 1 table(s) of ${setup.name} to copy in key order within 1 s: canceling statement due to lock timeout`);
      } else {
        expect(result.stderr).toContain('LOCK TABLE public.nokey IN ACCESS SHARE MODE');
      }
    }
    expect(await setup.generations()).toEqual([]);
  });
});

/**
 * Starts `ALTER TABLE zzz ADD COLUMN` in its own session and waits until it waits for its lock;
 * `done` settles with 'done' or the ALTER's error once it has run.
 */
async function alterWaiting(setup: SqlSetup): Promise<{ done: Promise<string> }> {
  const watcher = await testSession(setup, 'qq-watch');
  const alter = await testSession(setup, 'qq-alter');
  const done = alter.query("SET statement_timeout = '20s'; ALTER TABLE zzz ADD COLUMN c int").then(
    () => 'done',
    (error: Error) => error.message,
  );
  const waiting = async () =>
    (await watcher.query(
      `SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE a.application_name = 'qq-alter' AND l.relation::regclass::text = 'zzz' AND NOT l.granted`,
    )).rows.length > 0;
  expect(await waitFor(waiting)).toBe(true);
  return { done };
}

describe('postgresql-database key-order snapshots beside an ALTER TABLE', () => {
  const scripts = (nokeyFirst: boolean) => {
    const nokey = 'CREATE TABLE nokey (v int);\nINSERT INTO nokey VALUES (1);\n';
    const keyed = "CREATE TABLE aaa (id int PRIMARY KEY, v text);\nINSERT INTO aaa SELECT i, 'a' FROM generate_series(1, 1000) i;\nCREATE TABLE zzz (id int PRIMARY KEY, v text);\nINSERT INTO zzz VALUES (1, 'z');\n";
    // pg_dump locks the tables in the order they were made (by oid).
    return { '01.sql': nokeyFirst ? nokey + keyed : keyed + nokey };
  };

  it('an ALTER TABLE that comes once the snapshot has begun waits for it, as for pg_dump, instead of a lock cycle nobody sees', async () => {
    const setup = await postgresSetup({ name: uniqueName('qq_pg'), scripts: scripts(false), properties: { postgresqlRowOrder: 'key' } });
    await setup.ok('activate');
    // The pg_dump runs lock aaa and zzz, then wait for nokey, held here.
    const holder = await testSession(setup);
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE nokey IN ACCESS EXCLUSIVE MODE');
    const started = Date.now();
    const snapshot = setup.run('snapshot');
    expect(await waitFor(async () => (await dysnomiaLocks(setup)).some((l) => l.table === 'nokey' && !l.granted))).toBe(true);
    // Every session of the snapshot that copies zzz has locked it by now (psql may be done).
    await waitFor(async () => new Set((await dysnomiaLocks(setup)).filter((l) => l.table === 'zzz' && l.granted).map((l) => l.pid)).size >= 4, 3000);
    const { done: altered } = await alterWaiting(setup);
    await holder.query('COMMIT');
    const result = await snapshot;
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await altered).toBe('done');
    expect(Date.now() - started).toBeLessThan(15_000);
    // The snapshot has zzz as it was before the ALTER.
    const key = { container: path.basename(setup.containerFile), component: setup.name };
    const dump = await text((await new SnapshotStore(setup.stateDir).latest(key))!.open('dump.pgsql'));
    expect(dump).toContain('COPY "public"."zzz" ("id", "v") FROM stdin;\n1\tz\n\\.\n');
  });

  it('fails within the timeout, naming the ALTER TABLE and its table, when a tool must lock a table after an ALTER queued for it', async () => {
    const setup = await postgresSetup({
      name: uniqueName('qq_pg'),
      scripts: scripts(true),
      properties: { postgresqlRowOrder: 'key', timeout: '2' },
    });
    await setup.ok('activate');
    // The pg_dump runs wait for nokey before they lock zzz; the ALTER queues for zzz meanwhile,
    // behind the session holding the snapshot.
    const holder = await testSession(setup);
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE nokey IN ACCESS EXCLUSIVE MODE');
    const started = Date.now();
    const snapshot = setup.run('snapshot');
    expect(await waitFor(async () => (await dysnomiaLocks(setup)).some((l) => l.table === 'nokey' && !l.granted))).toBe(true);
    const { done: altered } = await alterWaiting(setup);
    await holder.query('COMMIT');
    const result = await snapshot;
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(
      /server process \d+ \(role \w+, application qq-alter\) waits to lock zzz for: SET statement_timeout = '20s'; ALTER TABLE zzz ADD COLUMN c int\. It waits for the session holding the snapshot of qq_pg_\w+ \(server process \d+\)/,
    );
    expect(result.stderr).toContain('Take the snapshot again once that statement is done.');
    expect(Date.now() - started).toBeLessThan(10_000);
    // The ALTER went on once the snapshot gave up.
    expect(await altered).toBe('done');
    expect(await setup.generations()).toEqual([]);
  });
});
