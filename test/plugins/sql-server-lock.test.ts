/**
 * Two dysnomia runs on the same database that do not share a component lock (another state dir,
 * another container file, another host): the second waits for the first on the server, instead of
 * taking the first run's staging database for a leftover and dropping it mid-load (real MariaDB
 * and PostgreSQL).
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { acquireLock } from '../../src/core/lock.js';
import { silentLogger } from '../../src/core/log.js';
import { query, withConnection } from '../../src/plugins/mysql/client.js';
import { lockDatabase as lockMysql, tryLockDatabase as tryMysql } from '../../src/plugins/mysql/lock.js';
import { parseMysqlOptions } from '../../src/plugins/mysql/options.js';
import { withSession } from '../../src/plugins/postgres/client.js';
import { lockDatabase as lockPostgres, tryLockDatabase as tryPostgres } from '../../src/plugins/postgres/lock.js';
import { parsePostgresOptions } from '../../src/plugins/postgres/options.js';
import { storeLockFile } from '../../src/snapshot-store/layout.js';
import { runCli, stderrSays } from '../support/cli.js';
import { findMysql, findPostgres } from '../support/servers.js';
import { mysqlSetup, postgresSetup, type SqlSetup } from '../support/sql-setup.js';

interface Engine {
  name: string;
  setup(): Promise<SqlSetup>;
  drop(name: string): Promise<void>;
  /** Whether a snapshot waits for the server lock (MariaDB: a swap changes triggers and views beside a dump). */
  snapshotWaits: boolean;
}

/** Initial scripts that keep an activation busy in its staging database for 3 seconds. */
const engines: Engine[] = [
  {
    name: 'postgresql-database',
    setup: () => postgresSetup({ scripts: { '1-slow.sql': 'select pg_sleep(3);\ncreate table ours(id int);\ninsert into ours values (1);\n' } }),
    drop: async (name) => {
      await (await findPostgres()).query(`drop database "${name}" with (force)`);
    },
    snapshotWaits: false,
  },
  {
    name: 'mysql-database',
    setup: () => mysqlSetup({ scripts: { '1-slow.sql': 'select sleep(3);\ncreate table ours(id int);\ninsert into ours values (1);\n' } }),
    drop: async (name) => {
      await (await findMysql()).query(`drop database \`${name}\``);
    },
    snapshotWaits: true,
  },
];

async function otherStateDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-other-state-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Resolves once the run that `setup` started has made its staging database. */
async function stagingAppears(setup: SqlSetup): Promise<void> {
  const started = performance.now();
  while (!(await setup.databases()).some((name) => name.includes('__dys_'))) {
    if (performance.now() - started > 20_000) throw new Error('activate never started loading');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe.each(engines)('$name: runs from two state dirs on one database', (engine) => {
  it('a second activate waits for the first instead of dropping its staging database', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    const first = setup.spawn('activate');
    await stagingAppears(setup);
    const second = await setup.run('activate', { env: { DYSNOMIA_STATEDIR: await otherStateDir() } });
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stderr).toContain(`waiting for another dysnomia run on database ${setup.name}`);
    expect(second.stderr).toMatch(/to finish \(server (process|connection) \d+, /);
    expect(await setup.query('select id from ours')).toEqual([{ id: 1 }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('--lock-timeout bounds the wait: the second run gives up, naming the holder, and changes nothing', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    const first = setup.spawn('activate');
    await stagingAppears(setup);
    const args = ['--operation', 'activate', '--component', setup.component, '--container', setup.containerFile, '--lock-timeout', '1'];
    const second = await runCli('dysnomia', args, { env: { DYSNOMIA_STATEDIR: await otherStateDir() } });
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`gave up after 1 s waiting for another dysnomia run on database ${setup.name} on .* \\(server (process|connection) \\d+, `));
    expect(second.stderr).toContain('nothing was changed');
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(await setup.query('select id from ours')).toEqual([{ id: 1 }]);
  });

  it('collect-garbage from elsewhere waits, then drops the database the first run made', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    // The other state dir knows the component as deactivated (garbage) while its database is gone.
    const env = { DYSNOMIA_STATEDIR: await otherStateDir() };
    expect((await setup.run('activate', { env })).exitCode).toBe(0);
    expect((await setup.run('deactivate', { env })).exitCode).toBe(0);
    await engine.drop(setup.name);
    const first = setup.spawn('activate');
    await stagingAppears(setup);
    const collected = await setup.run('collect-garbage', { env });
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(collected.exitCode, collected.stderr).toBe(0);
    expect(collected.stderr).toContain(`waiting for another dysnomia run on database ${setup.name}`);
    expect(await setup.databases()).toEqual([]);
  });

  it('a snapshot from elsewhere leaves the staging database of a running activation alone', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    const first = setup.spawn('activate');
    await stagingAppears(setup);
    const snapshot = await setup.run('snapshot', { env: { DYSNOMIA_STATEDIR: await otherStateDir() } });
    if (engine.snapshotWaits) {
      // MariaDB: the snapshot waits, then dumps the finished database.
      expect(snapshot.exitCode, snapshot.stderr).toBe(0);
      expect(snapshot.stderr).toContain(`waiting for another dysnomia run on database ${setup.name}`);
    } else {
      // PostgreSQL: the snapshot neither waits nor touches the staging database.
      expect(snapshot.exitCode).toBe(1);
      expect(snapshot.stderr).toContain(`database ${setup.name} does not exist`);
    }
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(await setup.query('select id from ours')).toEqual([{ id: 1 }]);
  });
});

describe('mysql-database: a snapshot beside another run', () => {
  // The snapshot waits holding the store's shared lock; that is safe because a restore takes the
  // store lock before the server lock (the next describe), so the nightly snapshot need not give
  // up after the container's short timeout.
  it('waits for the server lock beyond the container\'s timeout, then dumps the finished database', { timeout: 60_000 }, async () => {
    const setup = await engines[1]!.setup();
    const first = setup.spawn('activate');
    await stagingAppears(setup);
    // The activation sleeps 3 s in its staging database: longer than this timeout of 1 s.
    const env = { DYSNOMIA_STATEDIR: await otherStateDir() };
    const snapshot = await setup.run('snapshot', { env, properties: { timeout: '1' } });
    expect(snapshot.exitCode, snapshot.stderr).toBe(0);
    expect(snapshot.stderr).toContain(`waiting for another dysnomia run on database ${setup.name}`);
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    // It dumped the finished database: a snapshot now has the same identity (no new generation).
    const again = await setup.run('snapshot', { env });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(await readdir(path.join(env.DYSNOMIA_STATEDIR, 'generations', path.basename(setup.containerFile), setup.name))).toEqual(['1']);
  });
});

/** Whether nobody holds the server lock of `setup`'s database (tried from a session of our own). */
async function serverLockFree(setup: SqlSetup): Promise<boolean> {
  if (setup.type === 'mysql-database') {
    return withConnection(parseMysqlOptions(setup.properties), undefined, (connection) => tryMysql(connection, setup.name));
  }
  return withSession(parsePostgresOptions(setup.properties), silentLogger, undefined, (session) => tryPostgres(session, setup.name));
}

describe.each(engines)('$name: a restore takes the store lock before the server lock', (engine) => {
  // Otherwise a restore holding the server lock could wait for the store behind a queued gc,
  // which waits for a snapshot that holds the store and waits for the server lock.
  it('a restore waiting for the store (a gc holds it) holds no server lock meanwhile', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    await setup.ok('activate');
    await setup.ok('snapshot');
    const gc = await acquireLock(storeLockFile(setup.stateDir), 'exclusive', { what: 'a gc of the test' });
    let restore: ReturnType<SqlSetup['spawn']> | undefined;
    onTestFinished(() => {
      if (restore?.exitCode === null) restore.kill('SIGKILL');
    });
    try {
      restore = setup.spawn('restore');
      await stderrSays(restore, 'waiting for the snapshot store');
      expect(await serverLockFree(setup)).toBe(true);
    } finally {
      await gc.release();
    }
    const result = await restore;
    expect(result.exitCode, String(result.stderr)).toBe(0);
    expect(await setup.query('select id from ours')).toEqual([{ id: 1 }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });
});

describe('the server lock outlives a long idle wait', () => {
  // The control session sits idle through a long load or dump; if the server closed it for being
  // idle, it would free the lock with it.
  it('MariaDB: the locked connection is exempt from wait_timeout', async () => {
    const setup = await mysqlSetup();
    const options = parseMysqlOptions(setup.properties);
    const seconds = await withConnection(options, undefined, async (connection) => {
      await query(connection, 'SET SESSION wait_timeout = 5');
      await lockMysql(connection, options, setup.name, silentLogger);
      const [row] = await query(connection, 'SELECT @@SESSION.wait_timeout AS seconds');
      return Number(row?.seconds);
    });
    expect(seconds).toBe(31536000);
  });

  it('PostgreSQL: the locked session is exempt from idle_session_timeout', async () => {
    const setup = await postgresSetup();
    const options = parsePostgresOptions(setup.properties);
    const setting = await withSession(options, silentLogger, undefined, async (session) => {
      await session.query("SET idle_session_timeout = '5s'");
      await lockPostgres(session, options, setup.name, silentLogger);
      const [row] = await session.query<{ idle_session_timeout: string }>('SHOW idle_session_timeout');
      return row?.idle_session_timeout;
    });
    expect(setting).toBe('0');
  });
});
