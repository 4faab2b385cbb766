/**
 * Content-defined chunking, FastCDC style: a gear rolling hash with normalized chunking (a harder
 * mask before the average size, an easier one after it), and the first `min` bytes of each chunk
 * skipped. Cut points depend only on content, so an insertion early in a dump moves the cuts
 * around it and the rest of the chunks stay identical.
 *
 * Written here: no widely used, maintained FastCDC package exists on npm, and the core is one
 * small loop (about 2 GB/s in V8 with a 32-bit gear hash, unrolled; see Chunker.cut).
 */
import { type ChunkReplay, chunkHash } from './replay.js';

/** Chunk size parameters, in bytes. */
export interface ChunkingOptions {
  /** Smallest chunk (except the last one of a stream). */
  min: number;
  /** Target average. */
  avg: number;
  /** Largest chunk. */
  max: number;
}

/** The store's chunk sizes (see docs/snapshot-store.md for the measurements behind them). */
export const DEFAULT_CHUNKING: ChunkingOptions = chunkingFor(16 * 1024);

/** FastCDC's usual proportions for a target average: min = avg/4, max = avg*8. */
export function chunkingFor(avg: number): ChunkingOptions {
  return { min: avg / 4, avg, max: avg * 8 };
}

/** The gear table: 256 fixed pseudo-random 32-bit words (xorshift32 from a fixed seed). */
const GEAR = (() => {
  const table = new Int32Array(256);
  let state = 0x9e3779b9 | 0;
  for (let i = 0; i < 256; i += 1) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    table[i] = state;
  }
  return table;
})();

/** A mask of the top `bits` bits: those carry the most history in a left-shifting gear hash. */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : (((1 << bits) - 1) << (32 - bits)) | 0;
}

/** A chunker with precomputed masks. */
export class Chunker {
  readonly min: number;
  readonly avg: number;
  readonly max: number;
  private readonly maskSmall: number;
  private readonly maskLarge: number;

  constructor(options: ChunkingOptions = DEFAULT_CHUNKING) {
    this.min = options.min;
    this.avg = options.avg;
    this.max = options.max;
    const bits = Math.round(Math.log2(options.avg));
    this.maskSmall = topMask(bits + 2);
    this.maskLarge = topMask(bits - 2);
  }

  /**
   * The end of the chunk starting at `start` in `data[start, end)`. When fewer than `max` bytes
   * are available the answer is final only if `end` is the end of the stream.
   */
  cut(data: Uint8Array, start: number, end: number): number {
    const length = end - start;
    if (length <= this.min) return end;
    const limit = length < this.max ? end : start + this.max;
    const middle = Math.min(start + this.avg, limit);
    const gear = GEAR;
    let hash = 0;
    let i = start + this.min;
    // Four bytes per turn (the same cut points as one at a time): V8 then runs the loop about a
    // third faster, measured on the benchmark dump. This loop is most of the snapshot's main
    // thread, and test/store/chunker.test.ts pins its cut points down. Two phases: the harder
    // mask up to the average size, the easier one after it.
    let mask = this.maskSmall;
    let stop = middle;
    for (let phase = 0; phase < 2; phase += 1) {
      for (const stop4 = stop - 3; i < stop4; i += 4) {
        hash = ((hash << 1) + gear[data[i]!]!) | 0;
        if ((hash & mask) === 0) return i + 1;
        hash = ((hash << 1) + gear[data[i + 1]!]!) | 0;
        if ((hash & mask) === 0) return i + 2;
        hash = ((hash << 1) + gear[data[i + 2]!]!) | 0;
        if ((hash & mask) === 0) return i + 3;
        hash = ((hash << 1) + gear[data[i + 3]!]!) | 0;
        if ((hash & mask) === 0) return i + 4;
      }
      for (; i < stop; i += 1) {
        hash = ((hash << 1) + gear[data[i]!]!) | 0;
        if ((hash & mask) === 0) return i + 1;
      }
      mask = this.maskLarge;
      stop = limit;
    }
    return limit;
  }
}

/**
 * Copies `source` into `target` at `offset`. The worker's batch slots are shared memory, and V8
 * copies into a SharedArrayBuffer element by element: `TypedArray#set` moved 289 MB into one in
 * 86 ms, into plain memory in 6 ms. `Buffer#fill` with the source as its pattern is a plain memory
 * copy into either (7 ms), and exact when the range is as long as the pattern. It is bounded by
 * the whole buffer, not by `target`, and a memory copy of overlapping ranges is undefined: so the
 * range is checked here as `set` would check it, and overlapping ranges are left to `set`.
 */
export function copyInto(target: Uint8Array, source: Uint8Array, offset = 0): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + source.length > target.length) {
    throw new RangeError(`cannot copy ${source.length} bytes to offset ${offset} of ${target.length}`);
  }
  if (source.length === 0) return;
  const at = target.byteOffset + offset;
  const overlaps = source.buffer === target.buffer && source.byteOffset < at + source.length && at < source.byteOffset + source.length;
  if (target.buffer instanceof SharedArrayBuffer && !overlaps) {
    Buffer.from(target.buffer, at, source.length).fill(source);
  } else {
    target.set(source, offset);
  }
}

/** A batch of whole chunks: contiguous bytes and the end offset of each chunk. */
export interface Batch {
  data: Uint8Array;
  /** End offsets of the chunks in `data`, ascending; the last equals data.length. */
  cuts: Uint32Array;
  /** The SHA-256 of each chunk (32 bytes each), when the batcher hashed them (it replays cuts). */
  hashes?: Uint8Array;
}

/** Lends full-size batch buffers (the chunk worker's shared slots); see processor-handle.ts. */
export interface BatchBuffers {
  take(): Uint8Array | undefined;
  giveBack(buffer: Uint8Array): void;
}

/**
 * Turns a byte stream into batches of whole chunks of about `batchSize` bytes. Each batch owns its
 * buffer until it is processed. Holds at most one batch plus one max chunk.
 */
export class Batcher {
  private buffer: Uint8Array;
  private length = 0;
  /** Buffers of processed batches, reused instead of allocating (see {@link recycle}). */
  private readonly spare: ArrayBuffer[] = [];

  /** The hashes of the chunks cut since the last batch, when replaying (see {@link cutAt}). */
  private digests: Buffer[] = [];

  /**
   * `batchSize` is the writer's (DEFAULT_BATCH_SIZE in writer.ts); `lender()` says where full-size
   * buffers come from first, when anywhere; `replay`, the previous snapshot's cuts (replay.ts).
   */
  constructor(
    private readonly chunker: Chunker,
    private readonly batchSize: number,
    private readonly lender: () => BatchBuffers | undefined = () => undefined,
    private readonly replay?: ChunkReplay,
  ) {
    // Small at first: most streams of small components never fill a batch.
    this.buffer = new Uint8Array(Math.min(64 * 1024, this.capacity()));
  }

  /** Bytes a full batch buffer holds. */
  capacity(): number {
    return this.batchSize + this.chunker.max;
  }

  /** Hands back the buffer of a batch that is no longer needed. */
  recycle(buffer: ArrayBuffer): void {
    if (buffer.byteLength === this.capacity() && this.spare.length < 4) this.spare.push(buffer);
  }

  private freshBuffer(): Uint8Array {
    const lent = this.lender()?.take();
    if (lent !== undefined) return lent;
    const spare = this.spare.pop();
    return spare === undefined ? new Uint8Array(this.capacity()) : new Uint8Array(spare);
  }

  /** Adds bytes; returns the batches that became complete. */
  push(data: Uint8Array): Batch[] {
    const batches: Batch[] = [];
    let offset = 0;
    while (offset < data.length) {
      if (this.length === this.buffer.length && this.buffer.length < this.capacity()) this.grow(data.length - offset);
      const take = Math.min(data.length - offset, this.buffer.length - this.length);
      copyInto(this.buffer, data.subarray(offset, offset + take), this.length);
      this.length += take;
      offset += take;
      if (this.length === this.capacity()) batches.push(this.cutFull());
    }
    return batches;
  }

  private grow(wanted: number): void {
    const size = Math.min(this.capacity(), Math.max(this.buffer.length * 2, this.length + wanted));
    const grown = new Uint8Array(size);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  /** Cuts everything left (the stream has ended); undefined when nothing is left. */
  end(): Batch | undefined {
    if (this.length === 0) {
      this.lender()?.giveBack(this.buffer);
      this.buffer = new Uint8Array(0);
      return undefined;
    }
    const cuts: number[] = [];
    let position = 0;
    while (position < this.length) {
      position = this.cutAt(position);
      cuts.push(position);
    }
    const batch = { data: this.buffer.subarray(0, this.length), cuts: Uint32Array.from(cuts), hashes: this.takeHashes() };
    this.buffer = new Uint8Array(0);
    this.length = 0;
    return batch;
  }

  /** Cuts a full buffer where cuts are final, and carries the tail into a new buffer. */
  private cutFull(): Batch {
    const cuts: number[] = [];
    let position = 0;
    while (this.length - position >= this.chunker.max) {
      position = this.cutAt(position);
      cuts.push(position);
    }
    const full = this.buffer;
    this.buffer = this.freshBuffer();
    copyInto(this.buffer, full.subarray(position, this.length));
    this.length -= position;
    return { data: full.subarray(0, position), cuts: Uint32Array.from(cuts), hashes: this.takeHashes() };
  }

  /**
   * The end of the chunk starting at `position` of the buffer. With a replay, the previous
   * snapshot's cut when the chunk repeats it, else the gear's, and the chunk's SHA-256 is kept
   * for the batch either way (the replay needs it, so the worker need not compute it again).
   * Callers leave at least `max` bytes after `position`, or the stream has ended.
   */
  private cutAt(position: number): number {
    const replay = this.replay;
    if (replay === undefined) return this.chunker.cut(this.buffer, position, this.length);
    const repeated = replay.repeat(this.buffer, position, this.length);
    if (repeated !== undefined) {
      this.digests.push(repeated.hash);
      return repeated.end;
    }
    const end = this.chunker.cut(this.buffer, position, this.length);
    const hash = chunkHash(this.buffer.subarray(position, end));
    this.digests.push(hash);
    replay.follow(hash);
    return end;
  }

  private takeHashes(): Uint8Array | undefined {
    if (this.replay === undefined) return undefined;
    const hashes = new Uint8Array(Buffer.concat(this.digests));
    this.digests = [];
    return hashes;
  }
}
