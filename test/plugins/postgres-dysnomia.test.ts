/**
 * postgresql-database and snapshots that Dysnomia itself took (`dump.pgsql.xz`, a plain pg_dump
 * through xz): restored safely, refused when cut short or broken, and never allowed to run psql
 * meta-commands (a hostile dump's `\!` shell escape) during the restore.
 */
import { access, mkdir, readdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { findPostgres } from '../support/servers.js';
import { DYSNOMIA_TESTDB, postgresSetup, type SqlSetup } from '../support/sql-setup.js';

/** Puts `dump` (SQL text) in place as Dysnomia's newest snapshot of the component. */
async function dysnomiaSnapshot(setup: SqlSetup, dump: string | Buffer): Promise<string> {
  const container = path.basename(setup.containerFile);
  const { stdout: hash } = await execa('sh', ['-c', 'xz | sha256sum | cut -c1-64'], { input: dump });
  const folder = path.join(setup.stateDir, 'snapshots', container, setup.name, hash);
  await mkdir(folder, { recursive: true });
  await execa('sh', ['-c', 'xz > "$1"', 'sh', path.join(folder, 'dump.pgsql.xz')], { input: dump });
  const generations = path.join(setup.stateDir, 'generations', container, setup.name);
  await mkdir(generations, { recursive: true });
  const next = (await readdir(generations)).length + 1;
  await symlink(`../../../snapshots/${container}/${setup.name}/${hash}`, path.join(generations, String(next)));
  return folder;
}

/** A plain pg_dump of the component's database, as Dysnomia's `pg_dump $componentName` makes it. */
async function pgDump(setup: SqlSetup): Promise<string> {
  const server = await findPostgres();
  const { stdout } = await execa('pg_dump', [`--host=${server.socketDir ?? server.host}`, `--port=${server.port}`, `--username=${server.user}`, setup.name], {
    env: server.password ? { PGPASSWORD: server.password } : {},
    stripFinalNewline: false,
  });
  return stdout;
}

describe('postgresql-database and Dysnomia snapshots', () => {
  it('restores a snapshot Dysnomia took (dump.pgsql.xz)', async () => {
    const setup = await postgresSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    await setup.query("INSERT INTO test VALUES ('from Dysnomia')");
    await dysnomiaSnapshot(setup, await pgDump(setup));
    await setup.query('DELETE FROM test');
    await setup.query("INSERT INTO test VALUES ('later')");

    await setup.ok('restore');
    expect(await setup.query('SELECT test FROM test ORDER BY test')).toEqual([{ test: 'Hello world' }, { test: 'from Dysnomia' }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('refuses a Dysnomia dump that was cut short, and one that fails to load, leaving the live database as it was', async () => {
    const setup = await postgresSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    const full = await pgDump(setup);
    await setup.query("INSERT INTO test VALUES ('live')");

    // Cut before pg_dump's last line: every statement in it is fine, but it is not the whole dump.
    await dysnomiaSnapshot(setup, full.slice(0, full.indexOf('-- PostgreSQL database dump complete')));
    const cut = await setup.run('restore');
    expect(cut.exitCode, cut.stderr).toBe(1);
    expect(cut.stderr).toContain('cut short');
    expect(cut.stderr).toContain(`The live database ${setup.name} is unchanged`);

    await dysnomiaSnapshot(setup, full.replace('CREATE TABLE public.test (', 'CREATE TABLE public.test (,'));
    const broken = await setup.run('restore');
    expect(broken.exitCode, broken.stderr).toBe(1);
    expect(broken.stderr).toMatch(/ERROR: +syntax error/);

    expect(await setup.query('SELECT test FROM test ORDER BY test')).toEqual([{ test: 'Hello world' }, { test: 'live' }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('never runs a psql meta-command hidden in a dump, with or without its own \\restrict line', async () => {
    const setup = await postgresSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    const full = await pgDump(setup);
    const unguarded = full.replace(/^\\(un)?restrict \S+\n/gm, '');
    expect(unguarded).not.toContain('restrict');
    for (const [label, dump] of [
      ['an older pg_dump (no guard of its own)', unguarded],
      ['a recent pg_dump (its own guard)', full],
    ] as const) {
      const marker = path.join(setup.dir, `pwned-${label.length}`);
      await dysnomiaSnapshot(setup, dump.replace('SET statement_timeout = 0;', `SET statement_timeout = 0;\n\\! touch ${marker}\n`));
      const result = await setup.run('restore');
      expect(result.exitCode, `${label}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toMatch(/not allowed in restricted mode|restricted/);
      await expect(access(marker), label).rejects.toThrow();
      expect(await setup.query('SELECT test FROM test')).toEqual([{ test: 'Hello world' }]);
      // The same dumps without the meta-command restore fine.
      await dysnomiaSnapshot(setup, dump);
      await setup.ok('restore');
    }
  });
});
