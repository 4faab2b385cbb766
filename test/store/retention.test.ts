/**
 * gc's retention by time: the time buckets go by the generations' times, not their numbers, which
 * disagree once an old snapshot is imported again or a history arrives newest first.
 */
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { generationsToKeep } from '../../src/snapshot-store/retention.js';
import { useTempDir } from '../support/temp.js';
import { snapshots, streamOf } from './helpers.js';

const key = { container: 'mysql-production', component: 'testdb' };
const at = (day: number, hour = 12) => new Date(2026, 10, day, hour);
const generation = (number: number, time: Date) => ({ number, identity: `id${number}`, file: `/g/${number}`, time });

describe('generationsToKeep', () => {
  it('keeps the newest of each day by time, and the latest generation, when an old snapshot was imported again as the latest', () => {
    // 5 is a snapshot of 10 Nov, imported again on 1 Dec to be restored; 4 is 1 Dec's own.
    const generations = [generation(1, at(27)), generation(2, at(28)), generation(3, at(29)), generation(4, at(31, 6)), generation(5, at(10))];
    expect([...generationsToKeep(generations, { last: 0, daily: 1 })].sort()).toEqual([4, 5]);
    expect([...generationsToKeep(generations, { last: 0, monthly: 1 })].sort()).toEqual([4, 5]);
    expect([...generationsToKeep(generations, { last: 0, daily: 3 })].sort()).toEqual([2, 3, 4, 5]);
    // --keep alone still counts numbers, as Dysnomia's does.
    expect([...generationsToKeep(generations, { last: 1 })]).toEqual([5]);
  });

  it('keeps the same dates whatever order the numbers came in', () => {
    const days = [at(2), at(9), at(16), at(23), at(30)];
    const oldestFirst = days.map((day, i) => generation(i + 1, day));
    const newestFirst = days.map((day, i) => generation(days.length - i, day));
    const keptDays = (generations: typeof oldestFirst) =>
      generations.filter((g) => generationsToKeep(generations, { last: 0, weekly: 2 }).has(g.number)).map((g) => g.time.getDate());
    expect(keptDays(oldestFirst).sort()).toEqual([23, 30]);
    // Imported newest first, the latest number is the oldest snapshot: kept as the latest, beside the weeks.
    expect(keptDays(newestFirst).sort()).toEqual([2, 23, 30]);
  });
});

describe('dysnomia-snapshots --gc --keep-daily', () => {
  it('keeps today\'s generation when the latest one is an older snapshot imported again', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    let clock = at(10);
    const store = new SnapshotStore(source, { now: () => clock });
    for (const [i, day] of [10, 27, 28, 29, 30].entries()) {
      clock = at(day);
      await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(Buffer.from(`night ${i}\n`))));
    }
    const ids = (await snapshots(source, ['--query-all'])).stdout.trim().split('\n');
    // The history moved newest first, as `--query-all | tac` gives it.
    const cli = path.resolve('dist/bin/dysnomia-snapshots.js');
    for (const id of [...ids].reverse()) {
      const moved = await execa('bash', ['-o', 'pipefail', '-c', `node ${cli} --export ${id} | DYSNOMIA_STATEDIR=${target} node ${cli} --import -`], {
        env: { DYSNOMIA_STATEDIR: source },
        reject: false,
      });
      expect(moved.exitCode, moved.stderr).toBe(0);
    }
    const generations = path.join(target, 'generations', key.container, key.component);
    expect((await lstat(path.join(generations, '1'))).mtime).toEqual(at(30));
    for (const stateDir of [source, target]) {
      const gc = await snapshots(stateDir, ['--gc', '--keep-daily', '2', '--json']);
      expect(gc.exitCode, gc.stderr).toBe(0);
      const kept = JSON.parse((await snapshots(stateDir, ['--query-all', '--json'])).stdout) as { path: string }[];
      // The newest two days (29 and 30 Nov) on both sides; the target also keeps its latest number, 10 Nov's.
      const keptIds = kept.map((entry) => entry.path);
      expect(keptIds, stateDir).toEqual(expect.arrayContaining([ids[3], ids[4]]));
      expect(keptIds).toHaveLength(stateDir === source ? 2 : 3);
    }
  });
});
