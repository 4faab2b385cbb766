/**
 * Two dysnomia runs on the same database that do not share a component lock (another state dir,
 * another container file, another host): the second waits for the first on the server, instead of
 * taking the first run's staging database for a leftover and dropping it mid-load (real MariaDB
 * and PostgreSQL).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { findMysql, findPostgres } from '../support/servers.js';
import { mysqlSetup, postgresSetup, type SqlSetup } from '../support/sql-setup.js';

interface Engine {
  name: string;
  setup(): Promise<SqlSetup>;
  drop(name: string): Promise<void>;
}

/** Initial scripts that keep an activation busy in its staging database for 3 seconds. */
const engines: Engine[] = [
  {
    name: 'postgresql-database',
    setup: () => postgresSetup({ scripts: { '1-slow.sql': 'select pg_sleep(3);\ncreate table ours(id int);\ninsert into ours values (1);\n' } }),
    drop: async (name) => {
      await (await findPostgres()).query(`drop database "${name}" with (force)`);
    },
  },
  {
    name: 'mysql-database',
    setup: () => mysqlSetup({ scripts: { '1-slow.sql': 'select sleep(3);\ncreate table ours(id int);\ninsert into ours values (1);\n' } }),
    drop: async (name) => {
      await (await findMysql()).query(`drop database \`${name}\``);
    },
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
    expect(snapshot.exitCode).toBe(1);
    expect(snapshot.stderr).toContain(`database ${setup.name} does not exist`);
    const firstResult = await first;
    expect(firstResult.exitCode, String(firstResult.stderr)).toBe(0);
    expect(await setup.query('select id from ours')).toEqual([{ id: 1 }]);
  });
});
