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
import { programPath, runCli } from '../support/cli.js';
import { makeBundle, makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';

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
    let stderr = '';
    await new Promise<void>((resolve) => {
      child.stderr!.on('data', (data: Buffer) => {
        stderr += data.toString();
        if (stderr.includes('snapshotting git/big')) resolve();
      });
    });
    child.kill('SIGINT');
    const result = await child;
    expect(result.exitCode).toBe(1);
    expect(String(result.stderr)).toContain('interrupted: cancelling the current operation');
    const json = JSON.parse(String(result.stdout)) as { failed: number; outcomes: { component: string; status: string }[] };
    expect(json.outcomes).toEqual([expect.objectContaining({ component: 'big', status: 'cancelled' })]);
    expect(await readdir(path.join(machine.stateDir, 'snapshots', 'git', 'big')).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(machine.stateDir, 'generations', 'git', 'big')).catch(() => [])).toEqual([]);
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
