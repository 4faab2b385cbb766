/**
 * Cut points of the previous snapshot of a stream, replayed where the new stream repeats it.
 *
 * A content-defined cut depends only on the bytes of the chunk it ends, counted from the cut
 * before it (see Chunker.cut). So where a chunk of the new stream starts at a cut and has the
 * same bytes as a chunk of the previous snapshot, the gear hash would cut it at the same place:
 * instead of running the gear over it, the writer hashes the predicted span (the SHA-256 the
 * store needs for the chunk anyway) and, when that is the previous chunk's hash, takes the cut.
 * An unchanged database's dump is then cut without the gear, and a night's changes cost the gear
 * only around them: after a chunk the gear cut, the chunk that followed its earlier occurrence is
 * predicted next, so replay picks up again where the content repeats.
 *
 * Nothing here can make a snapshot wrong: every chunk's hash is computed from its own bytes, and
 * a prediction that does not hold only costs one SHA-256 of a chunk. What replay must keep is
 * that cuts stay the gear's cuts (the dedup of later snapshots and other components counts on
 * it), hence the rules in {@link ChunkReplay.repeat}: the previous snapshot was cut with the same
 * chunking, and its last chunk, cut where its stream ended, is never replayed.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ChunkingOptions } from './chunker.js';
import { CHUNK_RECORD_SIZE, CHUNKING_ALGORITHM } from './manifest.js';

/** A previous snapshot's stream to replay: its chunk index file and the chunking it was cut with. */
export interface ReplaySource {
  indexFile: string;
  chunking: ChunkingOptions & { algorithm: string };
}

/** SHA-256 of a chunk, as the store records it. */
export function chunkHash(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

export class ChunkReplay {
  /** The previous chunk predicted next (its position in the index), or -1 for none. */
  private next = 0;
  /** First position of each previous chunk, by the first four bytes of its hash. */
  private readonly firstAt = new Map<number, number>();
  private readonly view: DataView;
  /** Chunks replayed and chunks the gear cut (for tests and measurements). */
  replayed = 0;
  cut = 0;

  /**
   * `index`: the previous stream's chunk index records (CHUNK_RECORD_SIZE bytes each);
   * `chunking`: the chunker's sizes, which every chunk the gear cuts before a stream's end keeps.
   */
  constructor(
    private readonly index: Uint8Array,
    private readonly chunking: Pick<ChunkingOptions, 'min' | 'max'>,
  ) {
    this.view = new DataView(index.buffer, index.byteOffset, index.byteLength);
    const count = this.count();
    for (let i = count - 1; i >= 0; i -= 1) this.firstAt.set(this.view.getUint32(i * CHUNK_RECORD_SIZE, true), i);
    if (count === 0) this.next = -1;
  }

  /**
   * A replay of `source` when it was cut with `chunking`, undefined when it was not (its cuts would
   * not be this chunker's) or its index cannot be read (the write then only cuts with the gear).
   */
  static async load(source: ReplaySource, chunking: ChunkingOptions): Promise<ChunkReplay | undefined> {
    const { min, avg, max, algorithm } = source.chunking;
    if (algorithm !== CHUNKING_ALGORITHM || min !== chunking.min || avg !== chunking.avg || max !== chunking.max) return undefined;
    try {
      const index = await readFile(source.indexFile);
      return index.length % CHUNK_RECORD_SIZE === 0 ? new ChunkReplay(index, chunking) : undefined;
    } catch {
      return undefined;
    }
  }

  private count(): number {
    return Math.floor(this.index.length / CHUNK_RECORD_SIZE);
  }

  /**
   * The end of the chunk starting at `start` (a cut) when it repeats the predicted previous
   * chunk, with its hash; undefined when it does not, or nothing is predicted. Never the previous
   * stream's last chunk: the end of that stream cut it, not its content. Nor a chunk of a length
   * the gear never cuts (at most `min` bytes, or more than `max`): a damaged or foreign index
   * must not make a cut the gear would not make.
   */
  repeat(data: Uint8Array, start: number, end: number): { end: number; hash: Buffer } | undefined {
    const at = this.next;
    if (at < 0 || at >= this.count() - 1) return undefined;
    const record = at * CHUNK_RECORD_SIZE;
    const length = this.view.getUint32(record + 44, true);
    if (length <= this.chunking.min || length > this.chunking.max || start + length > end) return undefined;
    const hash = chunkHash(data.subarray(start, start + length));
    if (!hash.equals(this.index.subarray(record, record + 32))) {
      this.next = -1;
      return undefined;
    }
    this.next = at + 1;
    this.replayed += 1;
    return { end: start + length, hash };
  }

  /** After a chunk the gear cut (with this hash): predicts the chunk that followed it before. */
  follow(hash: Uint8Array): void {
    this.cut += 1;
    const at = this.firstAt.get(new DataView(hash.buffer, hash.byteOffset, 4).getUint32(0, true));
    const record = at === undefined ? -1 : at * CHUNK_RECORD_SIZE;
    this.next = record >= 0 && Buffer.from(hash.buffer, hash.byteOffset, 32).equals(this.index.subarray(record, record + 32)) ? at! + 1 : -1;
  }
}
