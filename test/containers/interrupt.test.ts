/**
 * dysnomia-containers under pressure: Ctrl-C during a nightly snapshot cancels it cleanly, and a
 * component whose lock is held past --lock-timeout fails alone while the others go on.
 */
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/core/lock.js';
import { componentLockFile } from '../../src/snapshot-store/layout.js';
import { programPath, runCli, stderrSays } from '../support/cli.js';
import { makeBundle, makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';
import { findPostgres } from '../support/servers.js';

async function gitMachine(names: string[], blobMiB = 0) {
  const machine = await useMachine();
  await machine.addContainer('git', { type: 'git-repository', gitBaseDir: path.join(machine.root, 'repos') });
  for (const name of names) {
    const files = blobMiB > 0 ? { 'blob.bin': randomBytes(blobMiB * 1024 * 1024).toString('base64') } : undefined;
    const work = await makeWorkRepo(path.join(machine.root, 'work', name), { files });
    const component = await machine.addComponent('git', name, {});
    await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  }
  const deployed = await runCli('dysnomia-containers', ['--deploy'], { env: machine.env });
  expect(deployed.exitCode, deployed.stderr).toBe(0);
  return machine;
}

describe('dysnomia-containers under pressure', () => {
  it('SIGINT during --snapshot cancels the running snapshot, leaves none half-written, exits 1', async () => {
    const machine = await gitMachine(['big'], 24);
    const child = execa(process.execPath, [programPath('dysnomia-containers'), '--snapshot', '--json'], {
      env: machine.env,
      reject: false,
    });
    await stderrSays(child, 'snapshotting git/big');
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode).toBe(1);
    expect(String(result.stderr)).toContain('interrupted: cancelling the current operation');
    const json = JSON.parse(String(result.stdout)) as { failed: number; outcomes: { component: string; status: string }[] };
    expect(json.outcomes).toEqual([expect.objectContaining({ component: 'big', status: 'cancelled' })]);
    expect(await readdir(path.join(machine.stateDir, 'snapshots', 'git', 'big')).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(machine.stateDir, 'generations', 'git', 'big')).catch(() => [])).toEqual([]);
  });

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} during --deploy cancels a slow PostgreSQL activate: a table, the rest cancelled, exit 1, no database left`, async () => {
      // Here execa's signal-exit registers its listener after ours (the first subprocess starts
      // after the run does): with a `once` listener the signal killed the run outright.
      const server = await findPostgres();
      const machine = await useMachine();
      await machine.addContainer('pg', { type: 'postgresql-database', ...server.properties });
      const run = randomBytes(4).toString('hex');
      const names = ['a', 'b'].map((letter) => `dys_int_${run}_${letter}`);
      await machine.addComponent('pg', names[0]!, { 'postgresql-databases/1.sql': 'SELECT pg_sleep(30);\n' });
      await machine.addComponent('pg', names[1]!, { 'postgresql-databases/1.sql': 'CREATE TABLE t (x int);\n' });
      const databases = async () =>
        (await server.query('SELECT datname FROM pg_database WHERE starts_with(datname, $1)', [names[0]!.slice(0, -2)])).map(
          (row) => row.datname as string,
        );
      const child = execa(process.execPath, [programPath('dysnomia-containers'), '--deploy', '--json'], {
        env: machine.env,
        reject: false,
      });
      await stderrSays(child, `activating pg/${names[0]}`);
      // The load is running when its database exists.
      for (let i = 0; i < 100 && (await databases()).length === 0; i += 1) await new Promise((r) => setTimeout(r, 50));
      expect(await databases()).not.toEqual([]);
      child.kill(signal);
      const result = await child;
      expect(result.exitCode, String(result.stderr)).toBe(1);
      expect(String(result.stderr)).toContain('interrupted: cancelling the current operation');
      const json = JSON.parse(String(result.stdout)) as { outcomes: { component: string; status: string }[] };
      expect(json.outcomes.map((o) => [o.component, o.status]).sort()).toEqual([
        [names[0], 'cancelled'],
        [names[1], 'cancelled'],
      ]);
      // Cancelled, and not started after the interruption: neither failed.
      expect(String(result.stderr)).toContain('2 of 2 components cancelled (the run was interrupted):');
      expect(String(result.stderr)).not.toContain('components failed');
      expect(await databases()).toEqual([]);
    });
  }

  it('a reader of stderr that goes away (2>&1 | head -1) does not stop the nightly snapshot: every component is saved, exit 0, no lock left', async () => {
    const machine = await gitMachine(['one', 'two', 'three']);
    const result = await execa('bash', ['-c', '"$NODE" "$CLI" --snapshot 2>&1 | head -c 1 > /dev/null; exit ${PIPESTATUS[0]}'], {
      env: { ...machine.env, NODE: process.execPath, CLI: programPath('dysnomia-containers') },
      reject: false,
    });
    expect(result.exitCode, result.stderr).toBe(0);
    for (const name of ['one', 'two', 'three']) {
      expect(await readdir(path.join(machine.stateDir, 'generations', 'git', name)), name).toHaveLength(1);
    }
    const next = await runCli('dysnomia-containers', ['--snapshot'], { env: machine.env });
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stderr).not.toContain('stale lock');
  });

  it('a component locked by another process past --lock-timeout fails alone; the rest are snapshotted', async () => {
    const machine = await gitMachine(['busy', 'free']);
    const held = await acquireLock(componentLockFile(machine.stateDir, { container: 'git', component: 'busy' }), 'exclusive', {
      what: 'component git/busy (held by the test)',
    });
    try {
      const result = await runCli('dysnomia-containers', ['--snapshot', '--lock-timeout', '0.5'], { env: machine.env });
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toMatch(/^git\/busy\s+FAILED/m);
      expect(result.stdout).toMatch(/^git\/free\s+done\s+[0-9a-f]{12}/m);
      expect(result.stderr).toMatch(/snapshot of git\/busy failed: .*lock/i);
    } finally {
      await held.release();
    }
  });
});
