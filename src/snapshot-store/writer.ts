/**
 * The write path of one snapshot: streams are chunked, hashed and compressed (see
 * processor-handle.ts), new chunks are appended to pack files that move into the pool, and the
 * snapshot's folder is assembled under a temporary name: hard links to the packs it reads from,
 * one chunk index per stream, then manifest.json. Only then is the folder renamed to its identity.
 */
import { createHash, type Hash } from 'node:crypto';
import { link, mkdir, open, rename, rm } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AbortedError, OperationError, messageOf } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/log.js';
import type { PluginSnapshotResult, SnapshotSink } from '../core/plugin.js';
import type { ComponentKey } from '../core/state-dir.js';
import { stateLayout } from '../core/state-dir.js';
import { type BatchResult, CHUNK_KNOWN, CHUNK_NEW, type KnownSnapshot } from './chunk-processor.js';
import { Batcher, type Batch, Chunker, type ChunkingOptions, DEFAULT_CHUNKING } from './chunker.js';
import { damagedPacks, damageIn, healPack, replaceDamagedCopy } from './damage.js';
import { DATA_FILE_MODE, fsyncPath, tempName, writeFileAtomic } from './fs-util.js';
import { packFileName, poolPackPath, relativePath, snapshotDir } from './layout.js';
import {
  CHUNK_RECORD_SIZE,
  CHUNKING_ALGORITHM,
  contentHash,
  encodeChunkRecord,
  indexFileName,
  isValidStreamName,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  MANIFEST_VERSION,
  type Manifest,
  serializeManifest,
  type StreamEntry,
} from './manifest.js';
import { type ProcessedBatch, type ProcessorHandle, startProcessor } from './processor-handle.js';
import { ChunkReplay } from './replay.js';

/** Tuning of the write path; the defaults are what the benchmarks chose. */
export interface WriteTuning {
  chunking?: ChunkingOptions;
  /** zstd level per chunk. */
  level?: number;
  /** A pack is closed once it holds at least this many bytes. */
  packSize?: number;
  /** Bytes per batch handed to the hashing/compression worker. */
  batchSize?: number;
}

export const DEFAULT_LEVEL = 1;
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
/**
 * Bytes per batch. 1 MiB rather than 4: the worker's seven shared slots take 16 MB instead of 60
 * (on a VM where first touching memory is dear, that was a tenth of a git snapshot), and less
 * work is left in flight when a stream ends. Measured in docs/benchmarks.md: git snapshot about
 * 10% faster, peak RSS 25 MB lower, SQL snapshots unchanged, the store's file-to-store
 * throughput within 5%.
 */
export const DEFAULT_BATCH_SIZE = 1024 * 1024;
const MAX_IN_FLIGHT = 3;
const INDEX_BUFFER_RECORDS = 2048;

export interface SnapshotWriterOptions {
  stateDir: string;
  key: ComponentKey;
  /** Snapshots whose chunks may be reused. */
  known: KnownSnapshot[];
  tuning?: WriteTuning;
  signal?: AbortSignal;
  onProgress?: (bytes: number) => void;
  log?: Logger;
  /** Packs recorded as damaged when the write began (see damage.ts). */
  damaged?: Set<string>;
  /** Check every pack the pool has already (a damaged copy of this snapshot was put back). */
  suspect?: boolean;
}

/** What the folder is committed with. */
export interface CommitParams {
  identity: string;
  identityKind: Manifest['identityKind'];
  type: string;
  created: Date;
  /** Replace a folder of this identity that exists (a damaged copy put back from aside). */
  replaceExisting?: boolean;
}

interface OpenPack {
  slot: number;
  temp: string;
  handle: FileHandle;
  size: number;
  hash: Hash;
}

/** One snapshot being written. Create, let the plugin fill `sink`, then commit or discard. */
export class SnapshotWriter {
  /** Logical bytes consumed. */
  bytesRead = 0;
  /** Bytes newly added to the pool. */
  bytesStored = 0;
  readonly streams: StreamEntry[] = [];
  readonly folder: string;
  readonly sink: SnapshotSink;

  private readonly chunking: ChunkingOptions;
  private readonly level: number;
  private readonly packSize: number;
  private readonly batchSize: number;
  /** Pack names per slot of the manifest's pack list (undefined while a pack is being written). */
  private readonly slots: (string | undefined)[] = [];
  private readonly slotOfKnown = new Map<number, number>();
  private readonly slotOfName = new Map<string, number>();
  /** Locations of chunks new in this write: slot, offset, length, rawLength per new id. */
  private newLocations = new Uint32Array(4 * 1024);
  private processor: ProcessorHandle | undefined;
  /** The processor being started (it is started early, see addStream). */
  private processorStart: Promise<ProcessorHandle> | undefined;
  /** Whether the processor started last runs in a worker thread. */
  private threaded = false;
  /** The batcher of the stream being stored. */
  private batcher: Batcher | undefined;
  private pack: OpenPack | undefined;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private folderCreated = false;
  private readonly poolDirsToSync = new Set<string>();

  constructor(private readonly options: SnapshotWriterOptions) {
    this.chunking = options.tuning?.chunking ?? DEFAULT_CHUNKING;
    this.level = options.tuning?.level ?? DEFAULT_LEVEL;
    this.packSize = options.tuning?.packSize ?? DEFAULT_PACK_SIZE;
    this.batchSize = options.tuning?.batchSize ?? DEFAULT_BATCH_SIZE;
    this.folder = path.join(stateLayout.snapshots(options.stateDir, options.key), tempName());
    this.sink = {
      addStream: (name, data) => {
        const run = this.queue.then(() => this.addStream(name, data));
        this.queue = run.catch(() => {});
        return run;
      },
    };
  }

  /** Waits until every stream the plugin started has been stored. */
  async settle(): Promise<void> {
    await this.queue;
  }

  private async ensureFolder(): Promise<void> {
    if (this.folderCreated) return;
    await mkdir(this.folder, { recursive: true });
    this.folderCreated = true;
  }

  private checkOpen(): void {
    if (this.options.signal?.aborted) throw new AbortedError('snapshot cancelled');
    if (this.closed) throw new OperationError('the snapshot was already finished; a stream was added too late');
  }

  private async addStream(name: string, data: AsyncIterable<Uint8Array>): Promise<void> {
    this.checkOpen();
    if (!isValidStreamName(name)) {
      throw new OperationError(`cannot store a stream named ${JSON.stringify(name)}: use a plain file name`);
    }
    if (this.streams.some((stream) => stream.name === name)) {
      throw new OperationError(`the snapshot already has a stream named ${JSON.stringify(name)}`);
    }
    await this.ensureFolder();
    const position = this.streams.length;
    const index = new IndexWriter(path.join(this.folder, indexFileName(position)));
    await index.open();
    try {
      const batcher = new Batcher(new Chunker(this.chunking), this.batchSize, () => this.processor?.buffers, await this.replayOf(name));
      this.batcher = batcher;
      const inFlight: Promise<ProcessedBatch>[] = [];
      let size = 0;
      let chunks = 0;
      const drain = async (limit: number) => {
        while (inFlight.length > limit) {
          const result = await inFlight.shift()!;
          chunks += result.kinds.length;
          try {
            await this.store(result, index);
          } finally {
            result.release();
          }
        }
      };
      const submit = async (batch: Batch, full: boolean) => {
        const processor = await this.processorFor(full, batcher.capacity());
        const pending = processor.process(batch, position);
        pending.catch(() => {}); // awaited in drain; this only keeps an abandoned one quiet
        inFlight.push(pending);
        await drain(MAX_IN_FLIGHT);
      };
      // Each piece is copied into the batch (batcher.push) before the next is asked for: a source
      // may reuse a piece's memory once the loop comes back for the next (SnapshotSink.addStream).
      for await (const piece of data) {
        this.checkOpen();
        const bytes = piece instanceof Uint8Array ? piece : Buffer.from(piece as ArrayBuffer);
        size += bytes.length;
        this.bytesRead += bytes.length;
        // A stream that reaches a quarter batch will likely fill one: start the worker now, so
        // that its start (tens of milliseconds) overlaps reading instead of stalling it.
        if (!this.threaded && size >= this.batchSize / 4) {
          this.processorFor(true, batcher.capacity()).catch(() => {}); // awaited by the first submit
        }
        for (const batch of batcher.push(bytes)) await submit(batch, true);
        this.options.onProgress?.(this.bytesRead);
      }
      const last = batcher.end();
      if (last !== undefined) await submit(last, false);
      await drain(0);
      this.checkOpen();
      // The processor hashes each stream as a whole too, beside its chunks (off this thread).
      const sha256 = this.processor === undefined ? createHash('sha256').digest('hex') : await this.processor.endStream(position);
      const indexSha256 = await index.finish();
      this.streams.push({
        name,
        size,
        sha256,
        chunks,
        index: indexFileName(position),
        indexSha256,
      });
    } catch (error) {
      await index.abandon();
      throw error;
    }
  }

  /**
   * The cuts of the latest known snapshot's stream of this name, to replay where the new stream
   * repeats it (replay.ts), if that snapshot was cut with this write's chunking.
   */
  private async replayOf(name: string): Promise<ChunkReplay | undefined> {
    for (const known of this.options.known) {
      const position = known.streamNames.indexOf(name);
      if (position < 0) continue;
      return ChunkReplay.load({ indexFile: known.indexFiles[position]!, chunking: known.chunking }, this.chunking);
    }
    return undefined;
  }

  /**
   * The processor, started on first use: in a worker thread if `full` (a stream fills a batch).
   * Small streams first (git's HEAD and config) get an inline one; the first large stream after
   * them moves to a worker, which takes over the chunks the inline one stored so that a repeat of
   * them is still found. It happens between streams only: a stream's batches are all full but its
   * last, and every stream is drained before the next begins, so nothing is in flight then.
   */
  private async processorFor(full: boolean, capacity: number): Promise<ProcessorHandle> {
    if (this.processorStart === undefined || (full && !this.threaded)) {
      this.threaded = full;
      const before = this.processorStart;
      this.processorStart = (async () => {
        const inline = before === undefined ? undefined : await before;
        return startProcessor({
          level: this.level,
          known: this.options.known,
          worker: full,
          capacity,
          recycle: (buffer) => this.batcher?.recycle(buffer),
          carried: inline?.newChunks(),
        });
      })();
    }
    this.processor = await this.processorStart;
    return this.processor;
  }

  /** Appends a batch's new chunks to the open pack and its records to the stream's index. */
  private async store(result: BatchResult, index: IndexWriter): Promise<void> {
    const { hashes, kinds, refs, compressed } = result;
    let pack: OpenPack | undefined;
    let packOffset = 0;
    if (compressed.length > 0) {
      pack = await this.openPack();
      packOffset = pack.size;
    }
    // Once per chunk (tens of thousands per snapshot): no record object, and no await unless
    // the index buffer is full or a known pack is used for the first time.
    let cursor = 0;
    for (let i = 0; i < kinds.length; i += 1) {
      const base = i * 4;
      const hash = hashes.subarray(i * 32, i * 32 + 32);
      let full: boolean;
      if (kinds[i] === CHUNK_NEW) {
        const length = refs[base + 1]!;
        const rawLength = refs[base + 2]!;
        this.rememberNew(refs[base]!, pack!.slot, packOffset + cursor, length, rawLength);
        full = index.add(hash, pack!.slot, packOffset + cursor, length, rawLength);
        cursor += length;
      } else if (kinds[i] === CHUNK_KNOWN) {
        const knownId = refs[base]!;
        const slot = this.slotOfKnown.get(knownId) ?? (await this.slotForKnown(knownId));
        full = index.add(hash, slot, refs[base + 1]!, refs[base + 2]!, refs[base + 3]!);
      } else {
        const at = refs[base]! * 4;
        const locations = this.newLocations;
        full = index.add(hash, locations[at]!, locations[at + 1]!, locations[at + 2]!, locations[at + 3]!);
      }
      if (full) await index.flush();
    }
    if (pack !== undefined) {
      await pack.handle.write(compressed);
      pack.hash.update(compressed);
      pack.size += compressed.length;
      if (pack.size >= this.packSize) await this.closePack();
    }
  }

  private rememberNew(id: number, slot: number, offset: number, length: number, rawLength: number): void {
    if ((id + 1) * 4 > this.newLocations.length) {
      const grown = new Uint32Array(Math.max(this.newLocations.length * 2, (id + 1) * 4));
      grown.set(this.newLocations);
      this.newLocations = grown;
    }
    const at = id * 4;
    this.newLocations[at] = slot;
    this.newLocations[at + 1] = offset;
    this.newLocations[at + 2] = length;
    this.newLocations[at + 3] = rawLength;
  }

  private async openPack(): Promise<OpenPack> {
    if (this.pack !== undefined) return this.pack;
    const pool = stateLayout.pool(this.options.stateDir);
    await mkdir(pool, { recursive: true });
    const temp = path.join(pool, tempName('.pack'));
    const handle = await open(temp, 'wx', DATA_FILE_MODE);
    const slot = this.slots.length;
    this.slots.push(undefined);
    this.pack = { slot, temp, handle, size: 0, hash: createHash('sha256') };
    return this.pack;
  }

  /** Makes the open pack durable, moves it into the pool under its hash and links it here. */
  private async closePack(): Promise<void> {
    const pack = this.pack;
    if (pack === undefined) return;
    this.pack = undefined;
    await pack.handle.sync();
    await pack.handle.close();
    const name = pack.hash.digest('hex');
    const target = poolPackPath(this.options.stateDir, name);
    await mkdir(path.dirname(target), { recursive: true });
    try {
      await link(pack.temp, target);
      this.bytesStored += pack.size;
      this.poolDirsToSync.add(path.dirname(target));
      // A recorded pack that had left the pool (while folders still hold damaged copies of it).
      if (this.options.damaged?.has(name)) await healPack(this.options.stateDir, name, target, this.options.log ?? silentLogger);
    } catch (error) {
      // The same bytes are in the pool already (a pack is named by its content), unless the
      // pool's copy is damaged: then these, hashed as they were written, heal it everywhere.
      // Only a recorded pack (or any, after a damaged copy was put back) is read: identical data
      // in two components makes this branch common, and the normal path never reads pool data.
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      if (this.options.damaged?.has(name) || this.options.suspect) {
        await healPack(this.options.stateDir, name, pack.temp, this.options.log ?? silentLogger);
      }
    }
    await rm(pack.temp, { force: true });
    await this.linkIntoFolder(name, [target]);
    this.slots[pack.slot] = name;
    this.slotOfName.set(name, pack.slot);
  }

  /** The slot of a pack a known snapshot uses, linking it into this folder on first use. */
  private async slotForKnown(knownId: number): Promise<number> {
    const existing = this.slotOfKnown.get(knownId);
    if (existing !== undefined) return existing;
    const known = this.processor!.knownPacks[knownId]!;
    let slot = this.slotOfName.get(known.name);
    if (slot === undefined) {
      const pool = poolPackPath(this.options.stateDir, known.name);
      await this.linkIntoFolder(known.name, [pool, path.join(known.folder, packFileName(known.name))]);
      slot = this.slots.length;
      this.slots.push(known.name);
      this.slotOfName.set(known.name, slot);
    }
    this.slotOfKnown.set(knownId, slot);
    return slot;
  }

  /** Hard-links the first of `sources` that exists into the folder as `<name>.pack`. */
  private async linkIntoFolder(name: string, sources: string[]): Promise<void> {
    await this.ensureFolder();
    const target = path.join(this.folder, packFileName(name));
    let lastError: unknown;
    for (const source of sources) {
      try {
        await link(source, target);
        return;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return;
        lastError = error;
        if (code !== 'ENOENT') break;
      }
    }
    throw new OperationError(`cannot link pack ${name} into the new snapshot: ${messageOf(lastError)}`, {
      cause: lastError,
    });
  }

  /**
   * Writes the manifest and renames the folder to its identity. Returns false (and discards the
   * new folder) when a folder with that identity exists already.
   */
  async commit(params: CommitParams): Promise<boolean> {
    this.checkOpen();
    await this.closePack();
    await this.closeProcessor();
    this.closed = true;
    await this.ensureFolder();
    for (const dir of this.poolDirsToSync) await fsyncPath(dir);
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      version: MANIFEST_VERSION,
      type: params.type,
      container: this.options.key.container,
      component: this.options.key.component,
      identity: params.identity,
      identityKind: params.identityKind,
      created: params.created.toISOString(),
      contentSha256: contentHash(this.streams),
      chunking: { algorithm: CHUNKING_ALGORITHM, ...this.chunking },
      compression: 'zstd',
      packs: this.slots.map((slot) => slot!),
      streams: this.streams,
    };
    await writeFileAtomic(path.join(this.folder, MANIFEST_FILE), serializeManifest(manifest));
    await fsyncPath(this.folder);
    const target = snapshotDir(this.options.stateDir, this.options.key, params.identity);
    try {
      await rename(this.folder, target);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error;
      // The records as they are now: a pack this write healed in place is no reason to replace.
      const damaged = params.replaceExisting ? 'its data' : await damageIn(target, await damagedPacks(this.options.stateDir));
      if (damaged === undefined) {
        await this.discard();
        return false;
      }
      // In place of the damaged copy, as an import that brings an intact copy does.
      const log = this.options.log ?? silentLogger;
      await replaceDamagedCopy(this.options.stateDir, this.options.key, params.identity, async () => {
        await rename(this.folder, target);
        this.folderCreated = false;
        await fsyncPath(path.dirname(target));
      }, log);
      log.warn(`snapshot ${relativePath(this.options.key, params.identity)} in the store was damaged (${damaged}); the snapshot just taken, which is the same, replaced it`);
      return true;
    }
    this.folderCreated = false;
    await fsyncPath(path.dirname(target));
    return true;
  }

  /** The content hash of what was written so far (the default identity). */
  contentSha256(): string {
    return contentHash(this.streams);
  }

  /** Removes everything this write left outside the pool (packs in the pool wait for gc). */
  async discard(): Promise<void> {
    this.closed = true;
    await this.closeProcessor();
    const pack = this.pack;
    this.pack = undefined;
    if (pack !== undefined) {
      await pack.handle.close().catch(() => {});
      await rm(pack.temp, { force: true });
    }
    if (this.folderCreated) await rm(this.folder, { recursive: true, force: true });
    this.folderCreated = false;
  }

  private async closeProcessor(): Promise<void> {
    const starting = this.processorStart;
    this.processorStart = undefined;
    this.processor = undefined;
    // A processor still starting is closed once it has started: a worker must never outlive us.
    const processor = await starting?.catch(() => undefined);
    await processor?.close();
  }
}

/** Writes one stream's chunk index, buffered, and hashes it. */
class IndexWriter {
  private handle: FileHandle | undefined;
  private readonly buffer = new Uint8Array(INDEX_BUFFER_RECORDS * CHUNK_RECORD_SIZE);
  private readonly view = new DataView(this.buffer.buffer);
  private used = 0;
  private readonly hash = createHash('sha256');

  constructor(private readonly file: string) {}

  async open(): Promise<void> {
    this.handle = await open(this.file, 'wx', DATA_FILE_MODE);
  }

  /** Buffers one record; true when the buffer is full and must be flushed. */
  add(hash: Uint8Array, pack: number, offset: number, length: number, rawLength: number): boolean {
    encodeChunkRecord(this.buffer, this.view, this.used, hash, pack, offset, length, rawLength);
    this.used += CHUNK_RECORD_SIZE;
    return this.used === this.buffer.length;
  }

  async flush(): Promise<void> {
    const data = this.buffer.subarray(0, this.used);
    this.hash.update(data);
    await this.handle!.write(data);
    this.used = 0;
  }

  /** Flushes, fsyncs and closes; returns the file's SHA-256. */
  async finish(): Promise<string> {
    await this.flush();
    await this.handle!.sync();
    await this.handle!.close();
    this.handle = undefined;
    return this.hash.digest('hex');
  }

  async abandon(): Promise<void> {
    await this.handle?.close().catch(() => {});
    this.handle = undefined;
  }
}

/** What a fill function may return, re-exported for the store. */
export type FillResult = PluginSnapshotResult | void;
