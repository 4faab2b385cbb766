/**
 * Replaying the previous snapshot's cuts (replay.ts) must give exactly the gear's cuts: the same
 * chunks as a store without that snapshot would cut, for unchanged data, for data with changes
 * anywhere, and for data that repeats itself. And it must actually replay, or it saves nothing.
 */
import { appendFile, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { type Batch, Batcher, Chunker, chunkingFor, DEFAULT_CHUNKING } from '../../src/snapshot-store/chunker.js';
import { CHUNK_RECORD_SIZE } from '../../src/snapshot-store/manifest.js';
import { ChunkReplay, chunkHash } from '../../src/snapshot-store/replay.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';

/** Deterministic noise with stretches of repeated SQL-like rows (some chunks repeat). */
function sample(size: number, seed: number): Uint8Array {
  const data = new Uint8Array(size);
  const row = new TextEncoder().encode("INSERT INTO orders VALUES (1, 'alice@example.org', '{\"total\": 12.50}');\n");
  let state = seed | 1;
  for (let i = 0; i < size; ) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    if ((state & 15) === 0) {
      for (let n = 0; n < 3 && i < size; n += 1) for (let j = 0; j < row.length && i < size; j += 1, i += 1) data[i] = row[j]!;
    } else {
      for (let j = 0; j < 64 && i < size; j += 1, i += 1) data[i] = (state >>> (j % 24)) & 0xff;
    }
  }
  return data;
}

/** Runs `data` through a batcher in pieces of `piece` bytes; the cut offsets and chunk hashes. */
function cut(data: Uint8Array, replay?: ChunkReplay, piece = 64 * 1024, chunker = new Chunker(DEFAULT_CHUNKING)) {
  const batcher = new Batcher(chunker, 1024 * 1024, () => undefined, replay);
  const batches: Batch[] = [];
  for (let at = 0; at < data.length; at += piece) batches.push(...batcher.push(data.slice(at, at + piece)));
  const last = batcher.end();
  if (last !== undefined) batches.push(last);
  const cuts: number[] = [];
  const hashes: string[] = [];
  let base = 0;
  for (const batch of batches) {
    let start = 0;
    for (const [i, end] of batch.cuts.entries()) {
      const chunk = batch.data.subarray(start, end);
      const hash = chunkHash(chunk).toString('hex');
      if (batch.hashes !== undefined) expect(Buffer.from(batch.hashes.subarray(i * 32, i * 32 + 32)).toString('hex')).toBe(hash);
      cuts.push(base + end);
      hashes.push(hash);
      start = end;
    }
    base += batch.data.length;
  }
  return { cuts, hashes };
}

/** A chunk index (as the store writes it: hash, pack, offset, length, rawLength) of these chunks. */
function indexOf(data: Uint8Array, cuts: number[]): Uint8Array {
  const index = Buffer.alloc(cuts.length * CHUNK_RECORD_SIZE);
  let start = 0;
  for (const [i, end] of cuts.entries()) {
    chunkHash(data.subarray(start, end)).copy(index, i * CHUNK_RECORD_SIZE);
    index.writeUInt32LE(end - start, i * CHUNK_RECORD_SIZE + 44);
    start = end;
  }
  return index;
}

function edited(data: Uint8Array, edits: { at: number; remove: number; insert: Uint8Array }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  let from = 0;
  for (const { at, remove, insert } of [...edits].sort((a, b) => a.at - b.at)) {
    parts.push(data.subarray(from, at), insert);
    from = at + remove;
  }
  parts.push(data.subarray(from));
  return new Uint8Array(Buffer.concat(parts));
}

describe('ChunkReplay', () => {
  const before = sample(6 * 1024 * 1024, 0x2545f491);
  const plain = cut(before);

  it('replays every chunk but the last of unchanged data, with the gear cuts and hashes', () => {
    const replay = new ChunkReplay(indexOf(before, plain.cuts), DEFAULT_CHUNKING);
    const replayed = cut(before, replay);
    expect(replayed).toEqual(plain);
    expect(replay.replayed).toBe(plain.cuts.length - 1);
    expect(replay.cut).toBe(1);
  });

  it('gives the gear cuts for data changed, shortened, lengthened and appended to, and picks replay up after each change', () => {
    const noise = sample(300 * 1024, 7);
    const after = edited(before, [
      { at: 17, remove: 0, insert: noise.subarray(0, 5) },
      { at: 1_000_003, remove: 40_000, insert: new Uint8Array(0) },
      { at: 2_500_000, remove: 3, insert: noise.subarray(100, 50_000) },
      { at: 4_000_000, remove: 200_000, insert: noise.subarray(0, 200_000) },
      { at: 5_000_000, remove: 0, insert: before.subarray(100_000, 400_000) },
      { at: before.length, remove: 0, insert: noise.subarray(200_000) },
    ]);
    const replay = new ChunkReplay(indexOf(before, plain.cuts), DEFAULT_CHUNKING);
    const replayed = cut(after, replay, 100_003);
    expect(replayed).toEqual(cut(after));
    // Most chunks lie away from the five edits.
    expect(replay.replayed).toBeGreaterThan(plain.cuts.length * 0.8);
    expect(replay.cut).toBeGreaterThan(5);
  });

  it('gives the gear cuts for entirely different data, and for data that is a prefix of the previous', () => {
    const other = sample(3 * 1024 * 1024, 99);
    expect(cut(other, new ChunkReplay(indexOf(before, plain.cuts), DEFAULT_CHUNKING))).toEqual(cut(other));
    const prefix = before.slice(0, 2 * 1024 * 1024 + 12_345);
    expect(cut(prefix, new ChunkReplay(indexOf(before, plain.cuts), DEFAULT_CHUNKING))).toEqual(cut(prefix));
    const empty = new Uint8Array(0);
    expect(cut(empty, new ChunkReplay(indexOf(before, plain.cuts), DEFAULT_CHUNKING))).toEqual(cut(empty));
  });

  it('never replays a chunk of a length the gear does not cut (more than max, at most min), whatever the index says', () => {
    // A damaged or foreign index whose first chunk the data repeats byte for byte.
    for (const length of [DEFAULT_CHUNKING.max + 1000, DEFAULT_CHUNKING.min, 1]) {
      const cuts = [length, ...plain.cuts.filter((end) => end > length)];
      const replay = new ChunkReplay(indexOf(before, cuts), DEFAULT_CHUNKING);
      expect(cut(before, replay), `a first chunk of ${length} bytes`).toEqual(plain);
      expect(replay.cut).toBeGreaterThan(0);
    }
  });

  it('is not used with an index cut with other chunking, or one that is not whole records', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-replay-'));
    try {
      const file = path.join(dir, 'stream-0.chunks');
      await writeFile(file, indexOf(before, plain.cuts));
      const algorithm = 'fastcdc-gear32';
      expect(await ChunkReplay.load({ indexFile: file, chunking: { ...DEFAULT_CHUNKING, algorithm } }, DEFAULT_CHUNKING)).toBeInstanceOf(ChunkReplay);
      expect(await ChunkReplay.load({ indexFile: file, chunking: { ...chunkingFor(8192), algorithm } }, DEFAULT_CHUNKING)).toBeUndefined();
      expect(await ChunkReplay.load({ indexFile: file, chunking: { ...DEFAULT_CHUNKING, algorithm: 'other' } }, DEFAULT_CHUNKING)).toBeUndefined();
      await appendFile(file, 'x');
      expect(await ChunkReplay.load({ indexFile: file, chunking: { ...DEFAULT_CHUNKING, algorithm } }, DEFAULT_CHUNKING)).toBeUndefined();
      expect(await ChunkReplay.load({ indexFile: path.join(dir, 'missing'), chunking: { ...DEFAULT_CHUNKING, algorithm } }, DEFAULT_CHUNKING)).toBeUndefined();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('a store writing a snapshot after an earlier one', () => {
  let dirs: string[] = [];
  afterEach(async () => {
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
    dirs = [];
  });

  async function write(stateDir: string, data: Uint8Array) {
    const store = new SnapshotStore(stateDir);
    const key = { container: 'c', component: 'db' };
    const written = await store.write(key, { type: 'test' }, (sink) =>
      sink.addStream('dump.sql', Readable.from((function* () {
        for (let at = 0; at < data.length; at += 65_536) yield data.subarray(at, at + 65_536);
      })())),
    );
    expect(written).toBeDefined();
    const outcome = written!;
    const folder = path.join(stateDir, 'snapshots', 'c', 'db', outcome.identity);
    const index = await readFile(path.join(folder, 'stream-0.chunks'));
    const hashes: string[] = [];
    for (let at = 0; at < index.length; at += CHUNK_RECORD_SIZE) hashes.push(index.toString('hex', at, at + 32) + index.readUInt32LE(at + 44));
    return { outcome, hashes };
  }

  it('cuts the changed data as a store without the earlier snapshot does, and stores only the changed chunks', async () => {
    const [withEarlier, fresh] = await Promise.all([1, 2].map(() => mkdtemp(path.join(os.tmpdir(), 'dysnomia-replay-store-'))));
    dirs.push(withEarlier!, fresh!);
    const before = sample(5 * 1024 * 1024, 0x1234567);
    const after = edited(before, [{ at: 3_000_000, remove: 10, insert: new TextEncoder().encode('UPDATE happened here') }]);
    const first = await write(withEarlier!, before);
    const second = await write(withEarlier!, after);
    const alone = await write(fresh!, after);
    expect(second.outcome.identity).toBe(alone.outcome.identity);
    expect(second.hashes).toEqual(alone.hashes);
    expect(second.outcome.bytesStored).toBeGreaterThan(0);
    expect(second.outcome.bytesStored).toBeLessThan(first.outcome.bytesStored / 10);
    expect(await readdir(path.join(withEarlier!, 'generations', 'c', 'db'))).toEqual(['1', '2']);
  });
});
