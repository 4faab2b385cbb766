/**
 * Ctrl-C or a SIGTERM during one `dysnomia --operation`: the operation is cancelled cleanly, as in
 * dysnomia-containers. Without it the first signal killed the run with no word on the state of
 * the component, a staging database and stale locks left behind.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { lockHolders } from '../support/core.js';
import { makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';
import { findMysql, findPostgres } from '../support/servers.js';
import { uniqueName } from '../support/temp.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('dysnomia interrupted', () => {
  it('SIGINT during a git snapshot cancels it: exit 1, a message, no temporary folder, no generation, no lock left', async () => {
    const machine = await useMachine();
    const repos = path.join(machine.root, 'repos');
    const container = await machine.addContainer('git', { type: 'git-repository', gitBaseDir: repos });
    const work = await makeWorkRepo(path.join(machine.root, 'work'), { files: { 'blob.bin': randomBytes(24 * 1024 * 1024).toString('base64') } });
    await execa('git', ['clone', '-q', '--bare', work, path.join(repos, 'big')]);
    const component = await machine.addComponent('git', 'big', {});
    const child = execa(process.execPath, [programPath('dysnomia'), '-o', 'snapshot', '-c', component, '-C', container], {
      env: machine.env,
      reject: false,
    });
    // The snapshot is being written once its temporary folder exists.
    const folder = path.join(machine.stateDir, 'snapshots', 'git', 'big');
    for (let i = 0; i < 400 && (await readdir(folder).catch(() => [])).length === 0; i += 1) await sleep(25);
    expect(await readdir(folder)).not.toEqual([]);
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode, String(result.stderr)).toBe(1);
    expect(String(result.stderr)).toContain('interrupted: cancelling the current operation');
    expect(String(result.stderr)).toContain('No snapshot of git/big was stored');
    expect(await readdir(folder)).toEqual([]);
    expect(await readdir(path.join(machine.stateDir, 'generations', 'git', 'big')).catch(() => [])).toEqual([]);
    expect(await lockHolders(machine.stateDir)).toEqual([]);
  });

  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    it(`${signal} during a slow PostgreSQL activate: exit 1, a message, no database and no lock left`, async () => {
      const server = await findPostgres();
      const machine = await useMachine();
      const container = await machine.addContainer('pg', { type: 'postgresql-database', ...server.properties });
      const name = uniqueName('intr');
      const component = await machine.addComponent('pg', name, { 'postgresql-databases/1.sql': 'SELECT pg_sleep(30);\n' });
      const databases = async () =>
        (await server.query('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [name])).map((row) => row.datname as string);
      const child = execa(process.execPath, [programPath('dysnomia'), '-o', 'activate', '-c', component, '-C', container], {
        env: machine.env,
        reject: false,
      });
      // The load is running when its staging database exists.
      for (let i = 0; i < 200 && (await databases()).length === 0; i += 1) await sleep(50);
      expect(await databases()).not.toEqual([]);
      child.kill(signal);
      const result = await child;
      expect(result.exitCode, String(result.stderr)).toBe(1);
      expect(String(result.stderr)).toContain('interrupted: cancelling the current operation');
      // Cancelled, not failed: the script is fine.
      expect(String(result.stderr)).toContain('Nothing was created; activate again to create it.');
      expect(String(result.stderr)).not.toContain('fix the script');
      expect(await databases()).toEqual([]);
      expect(await lockHolders(machine.stateDir)).toEqual([]);
    });
  }

  it('SIGINT during a slow MariaDB activate: exit 1, says nothing was created without blaming the script, no database left', async () => {
    const server = await findMysql();
    const machine = await useMachine();
    const container = await machine.addContainer('my', { type: 'mysql-database', ...server.properties });
    const name = uniqueName('intr');
    const component = await machine.addComponent('my', name, { 'mysql-databases/1.sql': 'SELECT SLEEP(30);\n' });
    const databases = async () =>
      ((await server.query('SELECT schema_name AS name FROM information_schema.schemata WHERE schema_name LIKE ?', [`${name}%`])) as { name: string }[]).map(
        (row) => row.name,
      );
    const child = execa(process.execPath, [programPath('dysnomia'), '-o', 'activate', '-c', component, '-C', container], {
      env: machine.env,
      reject: false,
    });
    for (let i = 0; i < 200 && (await databases()).length === 0; i += 1) await sleep(50);
    expect(await databases()).not.toEqual([]);
    // The script is running once the database exists; give the client a moment to start it.
    await sleep(300);
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode, String(result.stderr)).toBe(1);
    expect(String(result.stderr)).toContain('Nothing was created; activate again to create it.');
    expect(String(result.stderr)).not.toContain('fix the script');
    expect(await databases()).toEqual([]);
  });
});
