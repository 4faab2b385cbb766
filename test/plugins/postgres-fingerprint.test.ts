/**
 * postgresql-database's fingerprint (src/plugins/postgres/fingerprint.ts): a snapshot of a
 * database in which nothing has changed is not dumped again, and every kind of change is dumped:
 * a write, a nextval that takes no transaction id, a transaction that was still open while the
 * last snapshot was taken, a change in another database, and a restore.
 *
 * A throwaway cluster of its own (sql-cluster.ts), with autovacuum off: the fingerprint covers the
 * whole server, so the other test files' work on the shared server, or an automatic ANALYZE,
 * would make it dump at moments this file does not choose. The cluster reaches the database
 * through peer authentication, as stock Debian does, so the fingerprint's sessions go that way too.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createPeerCluster, type PeerCluster } from '../support/sql-cluster.js';
import { postgresSetup, type SqlSetup } from '../support/sql-setup.js';

let cluster: PeerCluster;

beforeAll(async () => {
  cluster = await createPeerCluster();
  // Nothing writes to the log unless the test does: no automatic VACUUM or ANALYZE, no standby
  // snapshots (wal_level minimal), no timed checkpoints.
  for (const setting of ['autovacuum = off', 'wal_level = minimal', 'max_wal_senders = 0', "checkpoint_timeout = '1d'"]) {
    await cluster.server.query(`ALTER SYSTEM SET ${setting}`);
  }
  await execa('pg_ctlcluster', ['--skip-systemctl-redirect', cluster.version, cluster.name, 'restart']);
}, 120_000);

afterAll(async () => {
  await cluster?.drop();
}, 120_000);

const SPARED = /unchanged: [0-9a-f]{64} is already generation \d+ \(the server reports no change since that snapshot was taken, so nothing was dumped\)/;

/** What a snapshot did: `spared` (no dump), `unchanged` (dumped, same identity) or `new` (a new generation). */
async function snapshot(setup: SqlSetup): Promise<'spared' | 'unchanged' | 'new'> {
  const { stderr } = await setup.ok('snapshot');
  if (SPARED.test(stderr)) return 'spared';
  if (/ unchanged: /.test(stderr)) return 'unchanged';
  expect(stderr).toMatch(/snapshot of \S+: [0-9a-f]{64} \(generation \d+\)/);
  return 'new';
}

const TABLE_T = "CREATE TABLE t (id serial PRIMARY KEY, v text);\nINSERT INTO t (v) VALUES ('a');\n";

async function fresh(more = '', properties: Record<string, string> = {}, base = TABLE_T): Promise<SqlSetup> {
  const setup = await postgresSetup({
    postgres: cluster.server,
    properties,
    scripts: { '01.sql': `${base}${more}` },
  });
  await setup.ok('activate');
  return setup;
}

/** The server's transaction snapshot and where its log ends, which the fingerprint holds. */
async function serverSnapshot(): Promise<string> {
  const [row] = await cluster.server.query('SELECT pg_current_snapshot()::text AS snapshot, pg_current_wal_insert_lsn()::text AS wal');
  return `${String(row?.snapshot)} ${String(row?.wal)}`;
}

/**
 * Runs `sql` between two snapshots; it changes the database but leaves the server's transaction
 * snapshot and log position as they were, so only the sequences' values can tell.
 */
async function expectNewAfterQuietChange(setup: SqlSetup, sql: string): Promise<void> {
  expect(await snapshot(setup)).toBe('new');
  // The fingerprint holds while nothing changes, so what follows is its doing.
  expect(await snapshot(setup)).toBe('spared');
  const before = await serverSnapshot();
  await setup.query(sql);
  expect(await serverSnapshot()).toBe(before);
  expect(await snapshot(setup)).toBe('new');
  expect(await setup.generations()).toEqual(['1', '2']);
}

/** A session of the test's own on the component's database, closed when the test ends. */
async function session(setup: SqlSetup): Promise<pg.Client> {
  const client = new pg.Client({ host: '127.0.0.1', port: cluster.port, user: 'postgres', password: cluster.password, database: setup.name });
  client.on('error', () => {});
  await client.connect();
  onTestFinished(() => client.end().catch(() => {}));
  return client;
}

describe('postgresql-database fingerprint', () => {
  it('spares the dump while nothing changed, and dumps after a write', async () => {
    const setup = await fresh();
    expect(await snapshot(setup)).toBe('new');
    expect(await snapshot(setup)).toBe('spared');
    expect(await snapshot(setup)).toBe('spared');
    expect(await setup.generations()).toEqual(['1']);
    await setup.query("INSERT INTO t (v) VALUES ('b')");
    expect(await snapshot(setup)).toBe('new');
    expect(await setup.generations()).toEqual(['1', '2']);
    expect(await snapshot(setup)).toBe('spared');
  });

  it('dumps after a nextval, which takes no transaction id', async () => {
    await expectNewAfterQuietChange(await fresh(), "SELECT nextval('t_id_seq')");
  });

  it('dumps after a setval of a sequence never called, which neither takes an id nor writes to the log', async () => {
    await expectNewAfterQuietChange(await fresh('CREATE UNLOGGED SEQUENCE u;\n'), "SELECT setval('u', 42, false)");
  });

  it('dumps after the first nextval of a sequence, which only sets is_called', async () => {
    // A fresh sequence's first nextval returns its start value: last_value stays 1 and only
    // is_called changes. UNLOGGED sequences (PostgreSQL 15 and later) write nothing to the log.
    await expectNewAfterQuietChange(await fresh('CREATE UNLOGGED SEQUENCE u;\n'), "SELECT nextval('u')");
  });

  it('reads a sequence whose name needs quoting', async () => {
    // A name read unquoted would fail the fingerprint's query, and every snapshot would dump.
    const setup = await fresh('CREATE UNLOGGED SEQUENCE "Odd ""Seq""";\n');
    await expectNewAfterQuietChange(setup, `SELECT nextval('"Odd ""Seq"""')`);
    expect(await snapshot(setup)).toBe('spared');
  });

  it('dumps after a crash emptied an unlogged table, though the server was not restarted', async () => {
    // No sequence: a crash moves a sequence that was used on by up to 32 values (they are logged
    // ahead), which would tell on its own.
    const setup = await fresh('', {}, "CREATE UNLOGGED TABLE u (v text);\nINSERT INTO u VALUES ('gone after a crash');\n");
    expect(await snapshot(setup)).toBe('new');
    expect(await snapshot(setup)).toBe('spared');
    const [{ started } = {}] = await cluster.server.query('SELECT pg_postmaster_start_time()::text AS started');
    const victim = await session(setup);
    const [{ pid } = {}] = (await victim.query('SELECT pg_backend_pid() AS pid')).rows as Array<{ pid?: number }>;
    process.kill(Number(pid), 'SIGKILL');
    // The server reinitializes after a backend's crash, and empties unlogged tables.
    await expect.poll(async () => (await setup.query('SELECT count(*)::int AS n FROM u').catch(() => undefined))?.[0]?.n, { timeout: 30_000, interval: 200 }).toBe(0);
    expect((await cluster.server.query('SELECT pg_postmaster_start_time()::text AS started'))[0]?.started).toBe(started);
    expect(await snapshot(setup)).toBe('new');
  });

  it('spares the dump in key row order too', async () => {
    const setup = await fresh('', { postgresqlRowOrder: 'key' });
    expect(await snapshot(setup)).toBe('new');
    expect(await snapshot(setup)).toBe('spared');
    await setup.query("UPDATE t SET v = 'changed'");
    expect(await snapshot(setup)).toBe('new');
  });

  it('dumps again once a transaction that was open during the snapshot has committed', async () => {
    const setup = await fresh();
    expect(await snapshot(setup)).toBe('new');
    const open = await session(setup);
    await open.query('BEGIN');
    // An id of its own: a nextval would change the dump at once.
    await open.query("INSERT INTO t (id, v) VALUES (100, 'late')");
    // Its row went to the log, so this snapshot dumps; the dump does not show the row.
    expect(await snapshot(setup)).toBe('unchanged');
    // The open transaction's id is past the last one that ended: the fingerprint is the same.
    expect(await snapshot(setup)).toBe('spared');
    // Once a later transaction has ended, the open one is listed in the server's snapshot.
    await cluster.server.query('CREATE TABLE IF NOT EXISTS elsewhere (x int)');
    expect(await serverSnapshot()).toMatch(/^\d+:\d+:\d+/);
    expect(await snapshot(setup)).toBe('unchanged');
    expect(await snapshot(setup)).toBe('spared');
    await open.query('COMMIT');
    expect(await snapshot(setup)).toBe('new');
    // The new generation holds the row: a restore after dropping it brings it back.
    await setup.query("DELETE FROM t WHERE v = 'late'");
    await setup.ok('restore');
    expect(await setup.query("SELECT v FROM t WHERE v = 'late'")).toEqual([{ v: 'late' }]);
  });

  it('dumps after a change elsewhere on the server and after a restore, and adds no generation for the same data', async () => {
    const setup = await fresh();
    expect(await snapshot(setup)).toBe('new');
    await cluster.server.query('CREATE TABLE IF NOT EXISTS elsewhere (x int)');
    await cluster.server.query('INSERT INTO elsewhere VALUES (1)');
    expect(await snapshot(setup)).toBe('unchanged');
    expect(await snapshot(setup)).toBe('spared');
    await setup.ok('restore');
    // The restored database is another database (a new OID) with the same data.
    expect(await snapshot(setup)).toBe('unchanged');
    expect(await snapshot(setup)).toBe('spared');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('leaves a missing database to the snapshot, which says to activate it, over peer authentication and over TCP', async () => {
    for (const server of [cluster.server, undefined]) {
      const setup = await postgresSetup({ postgres: server, scripts: { '01.sql': TABLE_T } });
      const { exitCode, stderr } = await setup.run('snapshot');
      expect(exitCode, stderr).toBe(1);
      expect(stderr).toContain(`database ${setup.name} does not exist on`);
      expect(stderr).toContain('activate the component first');
      expect(stderr).not.toContain('fingerprint');
      expect(await setup.generations()).toEqual([]);
    }
  });

  it('fails once, before it dumps, when its session is refused: a wrong password, or no CONNECT privilege', async () => {
    const setup = await fresh();
    const role = `fp_${setup.name}`.slice(0, 60);
    await cluster.server.query(`CREATE ROLE "${role}" LOGIN PASSWORD 'right'`);
    onTestFinished(() => cluster.server.query(`DROP ROLE IF EXISTS "${role}"`).then(() => {}));
    await setup.query(`REVOKE CONNECT ON DATABASE "${setup.name}" FROM PUBLIC`);
    const tcp = { postgresqlHost: '127.0.0.1', postgresqlUsername: role };
    for (const [password, reason] of [
      ['wrong', /password authentication failed/g],
      ['right', /permission denied for database/g],
    ] as const) {
      const { exitCode, stderr } = await setup.run('snapshot', { properties: { ...tcp, postgresqlPassword: password } });
      expect(exitCode, stderr).toBe(1);
      expect(stderr.match(reason), stderr).toHaveLength(1);
      expect(stderr).not.toContain('fingerprint');
      expect(await setup.generations()).toEqual([]);
    }
  });

  it('dumps when the recorded snapshot is incomplete, or the record is unreadable', async () => {
    const setup = await fresh();
    expect(await snapshot(setup)).toBe('new');
    const [folder] = await setup.snapshots();
    await rm(path.join(folder!, 'manifest.json'));
    const { stderr } = await setup.ok('snapshot');
    expect(stderr).not.toMatch(SPARED);
    expect(await readFile(path.join(folder!, 'manifest.json'), 'utf8')).toContain('"identity"');
    expect(await snapshot(setup)).toBe('spared');

    const record = path.join(setup.stateDir, 'fingerprints', path.basename(setup.containerFile), setup.name);
    await writeFile(record, 'not json');
    const garbled = await setup.ok('snapshot');
    expect(garbled.stderr).toContain(`${record} is not a fingerprint record (a JSON object with`);
    expect(garbled.stderr).not.toMatch(SPARED);
    expect(await snapshot(setup)).toBe('spared');
    expect(await setup.generations()).toEqual(['1']);
  });
});
