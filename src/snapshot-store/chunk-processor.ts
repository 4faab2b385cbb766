/**
 * Hashes and compresses batches of chunks, and decides which chunks the store already has. Runs in
 * a worker thread for large streams (see processor-handle.ts) and inline for small ones.
 *
 * The class must stay self-contained: the worker runs its source text (Function#toString), so it
 * may use only what its constructor receives and plain literals, never an imported name.
 */

/** What the processor needs from Node and zstd-napi. */
export interface ProcessorDeps {
  createHash: typeof import('node:crypto').createHash;
  readFileSync: typeof import('node:fs').readFileSync;
  zstd: {
    CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
    compressBound(size: number): number;
  };
}

/** A stored snapshot whose chunks a new snapshot may reuse. */
export interface KnownSnapshot {
  /** The snapshot folder (its packs are linked from the pool, or from here as a fallback). */
  folder: string;
  /** Its manifest's pack list. */
  packs: string[];
  /** Paths of its chunk index files. */
  indexFiles: string[];
  /** The names of its streams, in the order of `indexFiles`. */
  streamNames: string[];
  /** The chunking it was cut with (its cuts are replayed only with the same, see replay.ts). */
  chunking: { min: number; avg: number; max: number; algorithm: string };
}

/**
 * The chunks first stored by this write so far (hex SHA-256 and new id, in id order), and the
 * next new id: what a processor hands to the one that takes its place (see processor-handle.ts).
 */
export interface NewChunks {
  keys: string[];
  next: number;
}

/** A pack the known snapshots use. */
export interface KnownPack {
  name: string;
  folder: string;
}

/**
 * The result for one batch. Per chunk i: `hashes[32i..]`, `kinds[i]` and four words `refs[4i..]`:
 * - NEW (0): first occurrence; compressed bytes follow in `compressed`; refs = [newId, length, rawLength, 0]
 * - KNOWN (1): stored before; refs = [knownPack, offset, length, rawLength]
 * - REPEAT (2): repeats new chunk newId of this write; refs = [newId, 0, 0, 0]
 */
export interface BatchResult {
  hashes: Uint8Array;
  kinds: Uint8Array;
  refs: Uint32Array;
  compressed: Uint8Array;
}

export const CHUNK_NEW = 0;
export const CHUNK_KNOWN = 1;
export const CHUNK_REPEAT = 2;

/** See the module comment; `deps` carries every outside function it uses. */
export class ChunkProcessor {
  private readonly seen = new Map<string, number>();
  private knownLocations = new Uint32Array(4 * 1024);
  private knownCount = 0;
  private nextNewId = 0;
  private scratch = new Uint8Array(0);
  /** The stream being hashed as a whole (its position in the snapshot), and its running hash. */
  private stream = -1;
  private streamHash: ReturnType<ProcessorDeps['createHash']> | undefined;
  private readonly cctx: { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  /** Packs of the known snapshots, by the ids used in KNOWN results. */
  readonly knownPacks: KnownPack[] = [];

  constructor(
    private readonly deps: ProcessorDeps,
    private readonly level: number,
    known: KnownSnapshot[],
    carried?: NewChunks,
  ) {
    this.cctx = new deps.zstd.CCtx();
    const packIds = new Map<string, number>();
    for (const snapshot of known) {
      const ids = snapshot.packs.map((name) => {
        let id = packIds.get(name);
        if (id === undefined) {
          id = this.knownPacks.length;
          packIds.set(name, id);
          this.knownPacks.push({ name, folder: snapshot.folder });
        }
        return id;
      });
      for (const file of snapshot.indexFiles) this.loadIndex(file, ids);
    }
    if (carried !== undefined) {
      carried.keys.forEach((key, id) => this.seen.set(key, -1 - id));
      this.nextNewId = carried.next;
    }
  }

  /** The chunks this write stored first, for a processor that takes over from this one. */
  newChunks(): NewChunks {
    const keys: string[] = new Array(this.nextNewId);
    for (const [key, value] of this.seen) if (value < 0) keys[-1 - value] = key;
    return { keys, next: this.nextNewId };
  }

  /** Records every chunk of a chunk index file (48-byte records) as known. */
  private loadIndex(file: string, packIds: number[]): void {
    const data = this.deps.readFileSync(file);
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    for (let at = 0; at + 48 <= data.length; at += 48) {
      const key = data.toString('hex', at, at + 32);
      if (this.seen.has(key)) continue;
      const pack = packIds[view.getUint32(at + 32, true)];
      if (pack === undefined) continue;
      if ((this.knownCount + 1) * 4 > this.knownLocations.length) {
        const grown = new Uint32Array(this.knownLocations.length * 2);
        grown.set(this.knownLocations);
        this.knownLocations = grown;
      }
      const base = this.knownCount * 4;
      this.knownLocations[base] = pack;
      this.knownLocations[base + 1] = view.getUint32(at + 36, true);
      this.knownLocations[base + 2] = view.getUint32(at + 40, true);
      this.knownLocations[base + 3] = view.getUint32(at + 44, true);
      this.seen.set(key, this.knownCount);
      this.knownCount += 1;
    }
  }

  /**
   * Hashes every chunk, and compresses those not seen before: into `output` when it is given and
   * large enough (the result's `compressed` is then a view on it), else into a fresh copy. Also
   * adds the batch to the SHA-256 of its whole stream (`stream`: the stream's position; batches
   * of one stream come in order). `given`: the chunks' SHA-256s when the batcher computed them
   * (it does when it replays a previous snapshot's cuts), 32 bytes each.
   */
  process(data: Uint8Array, cuts: Uint32Array, stream: number, output?: Uint8Array, given?: Uint8Array): BatchResult {
    if (stream !== this.stream) {
      this.stream = stream;
      this.streamHash = this.deps.createHash('sha256');
    }
    this.streamHash!.update(data);
    const count = cuts.length;
    const hashes = new Uint8Array(count * 32);
    const kinds = new Uint8Array(count);
    const refs = new Uint32Array(count * 4);
    let bound = 0;
    let start = 0;
    for (let i = 0; i < count; i += 1) {
      bound += this.deps.zstd.compressBound(cuts[i]! - start);
      start = cuts[i]!;
    }
    const direct = output !== undefined && output.length >= bound;
    if (!direct && this.scratch.length < bound) this.scratch = new Uint8Array(bound);
    const target = direct ? output : this.scratch;
    let written = 0;
    start = 0;
    for (let i = 0; i < count; i += 1) {
      const end = cuts[i]!;
      const chunk = data.subarray(start, end);
      const digest =
        given === undefined
          ? this.deps.createHash('sha256').update(chunk).digest()
          : Buffer.from(given.buffer, given.byteOffset + i * 32, 32);
      hashes.set(digest, i * 32);
      const key = digest.toString('hex');
      const seen = this.seen.get(key);
      if (seen === undefined) {
        const length = this.cctx.compress(target.subarray(written), chunk, this.level);
        written += length;
        const id = this.nextNewId;
        this.nextNewId += 1;
        this.seen.set(key, -1 - id);
        kinds[i] = 0;
        refs[i * 4] = id;
        refs[i * 4 + 1] = length;
        refs[i * 4 + 2] = end - start;
      } else if (seen >= 0) {
        kinds[i] = 1;
        refs.set(this.knownLocations.subarray(seen * 4, seen * 4 + 4), i * 4);
      } else {
        kinds[i] = 2;
        refs[i * 4] = -1 - seen;
      }
      start = end;
    }
    // From scratch, a copy of exactly the compressed bytes: scratch stays for the next batch.
    return { hashes, kinds, refs, compressed: direct ? target.subarray(0, written) : target.slice(0, written) };
  }

  /** The SHA-256 (hex) of stream `stream`, all of whose batches were processed. */
  endStream(stream: number): string {
    const hash = stream === this.stream ? this.streamHash! : this.deps.createHash('sha256');
    this.stream = -1;
    this.streamHash = undefined;
    return hash.digest('hex');
  }
}
