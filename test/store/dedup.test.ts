import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, readAll, streamOf } from './helpers.js';

const key = { container: 'c', component: 'db' };

async function poolBytes(stateDir: string): Promise<number> {
  let total = 0;
  const pool = path.join(stateDir, 'pool');
  for (const fanout of await readdir(pool)) {
    for (const name of await readdir(path.join(pool, fanout))) total += (await stat(path.join(pool, fanout, name))).size;
  }
  return total;
}

describe('deduplication', () => {
  it('stores the same content once', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const dump = fakeDump(8_000_000, 4);
    const first = await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(dump)));
    const pool = await poolBytes(stateDir);
    const again = await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(dump)));
    expect(again).toMatchObject({ newGeneration: false, newSnapshot: false, bytesStored: 0, bytesRead: dump.length });
    expect(await poolBytes(stateDir)).toBe(pool);
    // The same bytes in a snapshot with one more stream: only the new stream's chunk is stored.
    const second = await store.write(key, { type: 't' }, async (sink) => {
      await sink.addStream('dump.sql', streamOf(dump));
      await sink.addStream('extra.sql', streamOf(Buffer.from('select 1;\n')));
    });
    expect(second?.newSnapshot).toBe(true);
    expect(second?.bytesStored).toBeLessThan(1000);
    expect(await poolBytes(stateDir)).toBe(pool + second!.bytesStored);
    expect(first!.bytesStored).toBe(pool);
  });

  it('stores only a little for a change in the middle of a 50 MB stream', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const dump = fakeDump(50_000_000, 6);
    const changed = Buffer.concat([dump.subarray(0, 25_000_000), Buffer.from('INSERT INTO t VALUES (42);\n'), dump.subarray(25_000_100)]);
    const first = await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(dump, 1 << 20)));
    const second = await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(changed, 1 << 20)));
    expect(second?.generation).toBe(2);
    // A few chunks around the change (each at most 128 KiB before compression), not the stream.
    expect(second!.bytesStored).toBeLessThan(200_000);
    expect(second!.bytesStored).toBeGreaterThan(0);
    expect(second!.bytesStored / first!.bytesStored).toBeLessThan(0.01);
    expect((await readAll((await store.latest(key))!, 'dump.sql')).equals(changed)).toBe(true);
  });
});
