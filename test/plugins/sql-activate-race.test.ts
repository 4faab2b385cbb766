/**
 * activate of both SQL plugins when someone else creates the component's database while the
 * initial scripts load: that database stays exactly as it is, and activate says so (real MariaDB
 * and PostgreSQL). Before, the swap took it for an old copy and replaced it.
 */
import { describe, expect, it } from 'vitest';
import { findMysql, findPostgres } from '../support/servers.js';
import { mysqlSetup, postgresSetup, type SqlSetup } from '../support/sql-setup.js';

interface Engine {
  name: string;
  setup(): Promise<SqlSetup>;
  /** Creates the database with a table `theirs` holding one row, as someone else would. */
  createTheirs(name: string): Promise<void>;
}

const engines: Engine[] = [
  {
    name: 'postgresql-database',
    setup: () => postgresSetup({ scripts: { '1-slow.sql': 'select pg_sleep(3);\ncreate table ours(id int);\n' } }),
    createTheirs: async (name) => {
      const pg = await findPostgres();
      await pg.query(`create database "${name}"`);
      await pg.queryIn(name, "create table theirs(note text); insert into theirs values ('keep me')");
    },
  },
  {
    name: 'mysql-database',
    setup: () => mysqlSetup({ scripts: { '1-slow.sql': 'select sleep(3);\ncreate table ours(id int);\n' } }),
    createTheirs: async (name) => {
      const my = await findMysql();
      await my.query(`create database \`${name}\``);
      await my.queryIn(name, "create table theirs(note text); insert into theirs values ('keep me')");
    },
  },
];

describe.each(engines)('$name activate', (engine) => {
  it('leaves a database that someone else created while the scripts loaded as it is', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    const activating = setup.spawn('activate');
    // Wait until the staging copy exists (the scripts are loading), then create the database.
    const started = performance.now();
    while (!(await setup.databases()).some((name) => name.includes('__dys_'))) {
      if (performance.now() - started > 20_000) throw new Error('activate never started loading');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await engine.createTheirs(setup.name);
    const result = await activating;
    expect(result.exitCode, String(result.stderr)).toBe(1);
    expect(String(result.stderr)).toContain(`database ${setup.name} appeared on the server while activate was loading the scripts`);
    expect(await setup.query('select note from theirs')).toEqual([{ note: 'keep me' }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });
});
