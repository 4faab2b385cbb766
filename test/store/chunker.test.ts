/**
 * The chunker's cut points are part of the store's format: a snapshot reuses the chunks of the
 * snapshots before it only if the same bytes are cut in the same places. These tests pin them
 * down, so that a faster chunker cannot silently stop new snapshots from deduplicating against
 * stores written by an earlier version.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { Batcher, Chunker, chunkingFor, copyInto, DEFAULT_CHUNKING } from '../../src/snapshot-store/chunker.js';

/** Deterministic test data: xorshift noise with stretches of repeated SQL-like text. */
function sample(size: number): Uint8Array {
  const data = new Uint8Array(size);
  const text = new TextEncoder().encode("INSERT INTO orders VALUES (1, 'alice@example.org', '{\"total\": 12.50}');\n");
  let state = 0x12345678;
  for (let i = 0; i < size; ) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    if ((state & 7) === 0) {
      for (let j = 0; j < text.length && i < size; j += 1, i += 1) data[i] = text[j]!;
    } else {
      for (let j = 0; j < 64 && i < size; j += 1, i += 1) data[i] = (state >>> (j % 24)) & 0xff;
    }
  }
  return data;
}

function cutsOf(chunker: Chunker, data: Uint8Array): number[] {
  const cuts: number[] = [];
  let position = 0;
  while (position < data.length) {
    position = chunker.cut(data, position, data.length);
    cuts.push(position);
  }
  return cuts;
}

const digest = (cuts: number[]) => createHash('sha256').update(Uint32Array.from(cuts)).digest('hex').slice(0, 16);

describe('Chunker', () => {
  const data = sample(8 * 1024 * 1024);

  it('cuts the same places as the chunker every existing store was written with', () => {
    const cuts = cutsOf(new Chunker(DEFAULT_CHUNKING), data);
    expect(cuts.length).toBe(GOLDEN.default.count);
    expect(digest(cuts)).toBe(GOLDEN.default.digest);
    const small = cutsOf(new Chunker(chunkingFor(4096)), data);
    expect(small.length).toBe(GOLDEN.small.count);
    expect(digest(small)).toBe(GOLDEN.small.digest);
  });

  it('keeps every chunk within its bounds', () => {
    const chunker = new Chunker(DEFAULT_CHUNKING);
    const cuts = cutsOf(chunker, data);
    let start = 0;
    for (const [i, end] of cuts.entries()) {
      const length = end - start;
      expect(length).toBeLessThanOrEqual(chunker.max);
      if (i < cuts.length - 1) expect(length).toBeGreaterThan(chunker.min);
      start = end;
    }
  });

  it('batches cut the same places whatever the sizes of the pieces fed in', () => {
    const whole = cutsOf(new Chunker(DEFAULT_CHUNKING), data);
    for (const pieceSize of [1000, 65536, 3 * 1024 * 1024]) {
      const batcher = new Batcher(new Chunker(DEFAULT_CHUNKING), 1024 * 1024);
      const cuts: number[] = [];
      let base = 0;
      const take = (batch: { data: Uint8Array; cuts: Uint32Array }) => {
        for (const cut of batch.cuts) cuts.push(base + cut);
        base += batch.data.length;
      };
      for (let at = 0; at < data.length; at += pieceSize) for (const batch of batcher.push(data.subarray(at, at + pieceSize))) take(batch);
      const last = batcher.end();
      if (last !== undefined) take(last);
      expect(cuts).toEqual(whole);
    }
  });
});

describe('Batcher with lent buffers', () => {
  /** A lender of buffers (the chunk worker's shared slots), recording what comes back. */
  function lender(count: number, capacity: number, shared = false) {
    const free: Uint8Array[] = Array.from({ length: count }, () =>
      shared ? new Uint8Array(new SharedArrayBuffer(capacity)) : new Uint8Array(capacity),
    );
    const given: Uint8Array[] = [];
    return {
      given,
      free,
      take: () => free.pop(),
      giveBack: (buffer: Uint8Array) => {
        given.push(buffer);
        free.push(buffer);
      },
    };
  }

  it('fills lent buffers, and gives back the one a stream ended on without a byte in it', () => {
    const chunker = new Chunker(DEFAULT_CHUNKING);
    const batchSize = 4 * chunker.max;
    const buffers = lender(2, batchSize + chunker.max);
    const batcher = new Batcher(chunker, batchSize, () => buffers);
    // Zeros are cut every `max` bytes, so this fills one batch buffer exactly and carries nothing.
    const batches = batcher.push(new Uint8Array(batchSize + chunker.max));
    expect(batches).toHaveLength(1);
    expect(batches[0]!.cuts).toHaveLength(5);
    expect(buffers.free).toHaveLength(1); // the next buffer was taken for the (empty) rest
    expect(batcher.end()).toBeUndefined();
    expect(buffers.given).toHaveLength(1);
    expect(buffers.free).toHaveLength(2);
  });

  it('fills shared buffers, as the worker lends them, with the same bytes and cuts as its own', () => {
    const chunker = new Chunker(DEFAULT_CHUNKING);
    const batchSize = 2 * chunker.max;
    const data = sample(5 * (batchSize + chunker.max) + 12345);
    const run = (buffers: ReturnType<typeof lender>) => {
      const batcher = new Batcher(chunker, batchSize, () => buffers);
      const batches = [];
      // Pieces of odd sizes, so that copies start and end anywhere in a buffer.
      for (let at = 0, size = 1; at < data.length; at += size, size = (size * 7 + 13) % 90_001) {
        batches.push(...batcher.push(data.subarray(at, at + size)));
      }
      const last = batcher.end();
      if (last !== undefined) batches.push(last);
      return batches;
    };
    const shared = run(lender(8, batchSize + chunker.max, true));
    const own = run(lender(0, batchSize + chunker.max));
    expect(shared.some((batch) => batch.data.buffer instanceof SharedArrayBuffer)).toBe(true);
    expect(Buffer.concat(shared.map((batch) => batch.data)).equals(data)).toBe(true);
    expect(shared.map((batch) => [...batch.cuts])).toEqual(own.map((batch) => [...batch.cuts]));
  });

  it('falls back to its own buffers when the lender has none free', () => {
    const chunker = new Chunker(DEFAULT_CHUNKING);
    const batchSize = 2 * chunker.max;
    const buffers = lender(0, batchSize + chunker.max);
    const batcher = new Batcher(chunker, batchSize, () => buffers);
    const data = sample(4 * (batchSize + chunker.max));
    const batches = [...batcher.push(data)];
    const last = batcher.end();
    if (last !== undefined) batches.push(last);
    expect(Buffer.concat(batches.map((batch) => batch.data)).equals(data)).toBe(true);
  });
});

describe('copyInto', () => {
  it('copies exactly the source to the offset, into shared and plain memory alike', () => {
    for (const memory of [new SharedArrayBuffer(64), new ArrayBuffer(64)]) {
      const target = new Uint8Array(memory, 8, 48).fill(0xee);
      copyInto(target, Uint8Array.from([1, 2, 3, 4, 5]), 10);
      copyInto(target, new Uint8Array(0), 47);
      const expected = new Uint8Array(48).fill(0xee);
      expected.set([1, 2, 3, 4, 5], 10);
      expect([...target]).toEqual([...expected]);
      expect(new Uint8Array(memory, 0, 8).every((byte) => byte === 0)).toBe(true);
      expect(new Uint8Array(memory, 56, 8).every((byte) => byte === 0)).toBe(true);
    }
  });

  it('refuses a range beyond the target, and leaves the memory after it alone', () => {
    for (const memory of [new SharedArrayBuffer(64), new ArrayBuffer(64)]) {
      const target = new Uint8Array(memory, 8, 48);
      expect(() => copyInto(target, new Uint8Array(10).fill(7), 40)).toThrow(RangeError);
      expect(() => copyInto(target, new Uint8Array(1), -1)).toThrow(RangeError);
      expect(new Uint8Array(memory).every((byte) => byte === 0)).toBe(true);
    }
  });

  it('copies within one shared buffer, overlapping ranges included', () => {
    const memory = new SharedArrayBuffer(16);
    const all = new Uint8Array(memory);
    all.set([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    copyInto(all, all.subarray(0, 8), 4);
    expect([...all]).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 14, 15]);
    copyInto(all.subarray(8), all.subarray(0, 4), 4);
    expect([...all]).toEqual([0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3]);
  });
});

/** Measured with the chunker of dysnomia 0.1.0 (the first one that wrote stores). */
const GOLDEN = {
  default: { count: 421, digest: '2c7e2eb68fae07ad' },
  small: { count: 1682, digest: '66cb59532108968b' },
};
