import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { checkSnapshots, collectGarbage, queryAll, SnapshotStore } from '../../src/snapshot-store/index.js';
import { runCli } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, readAll, streamOf } from './helpers.js';

const writer = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'store-writer.mjs');

/** Entries named `.tmp-*` anywhere under the snapshots and pool folders. */
async function leftovers(stateDir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number) => {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith('.tmp-')) found.push(path.join(dir, name));
      else if (depth > 0) await walk(path.join(dir, name), depth - 1);
    }
  };
  await walk(path.join(stateDir, 'snapshots'), 2);
  await walk(path.join(stateDir, 'pool'), 0);
  return found;
}

async function allIntact(stateDir: string): Promise<void> {
  const results = await checkSnapshots(stateDir, await queryAll(stateDir));
  expect(results.filter((result) => !result.ok)).toEqual([]);
}

describe('crash safety', () => {
  it('survives SIGKILL at random points of writes: check and gc pass, the next snapshot works', async () => {
    const stateDir = await useTempDir();
    let kills = 0;
    let sawLeftovers = false;
    for (let round = 0; round < 22; round += 1) {
      const child = spawn(process.execPath, [writer, stateDir, round % 3 === 0 ? 'other' : 'db', '0', String(round + 1), '6000000'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      // Kill somewhere between start-up, chunking, pack writing and committing.
      await new Promise((resolve) => setTimeout(resolve, 150 + Math.random() * 900));
      child.kill('SIGKILL');
      await exited;
      kills += 1;
      if ((await leftovers(stateDir)).length > 0) sawLeftovers = true;
      await allIntact(stateDir);
    }
    expect(kills).toBeGreaterThanOrEqual(20);
    expect(sawLeftovers).toBe(true);
    const gc = await runCli('dysnomia-snapshots', ['--gc', '--keep', '2'], { env: { DYSNOMIA_STATEDIR: stateDir } });
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(await leftovers(stateDir)).toEqual([]);
    expect((await runCli('dysnomia-snapshots', ['--query-all', '--check'], { env: { DYSNOMIA_STATEDIR: stateDir } })).exitCode).toBe(0);
    const store = new SnapshotStore(stateDir);
    const dump = fakeDump(5_000_000, 99);
    const outcome = await store.write({ container: 'c', component: 'db' }, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(dump)));
    expect(outcome?.newGeneration).toBe(true);
    expect((await readAll((await store.latest({ container: 'c', component: 'db' }))!, 'dump.sql')).equals(dump)).toBe(true);
    await allIntact(stateDir);
  }, 180_000);
});

describe('concurrency', () => {
  it('loses nothing when two processes snapshot while a third runs gc', async () => {
    const stateDir = await useTempDir();
    const run = (component: string, count: number, seed: number) =>
      execa(process.execPath, [writer, stateDir, component, String(count), String(seed), '2500000']);
    const [a, b, gc] = await Promise.all([run('alpha', 8, 1), run('beta', 8, 2), run('gc', 12, 0)]);
    await collectGarbage(stateDir, { policy: { last: 2 } });
    await allIntact(stateDir);
    const store = new SnapshotStore(stateDir);
    for (const [component, result] of [['alpha', a], ['beta', b]] as const) {
      const written = result.stdout.trim().split('\n').map((line) => line.replace('wrote ', ''));
      expect(written).toHaveLength(8);
      const latest = await store.latest({ container: 'c', component });
      expect(latest?.identity).toBe(written[written.length - 1]);
      await latest!.verify();
      const all = await queryAll(stateDir, { container: 'c', component });
      expect(all.map((entry) => entry.identity)).toEqual(written.slice(-2));
    }
    expect(gc.stdout.trim().split('\n')).toHaveLength(12);
  }, 120_000);
});
