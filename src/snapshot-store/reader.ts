/**
 * Reading a snapshot back. Every chunk is decompressed and its SHA-256 compared with its index
 * record before it is handed on; at the end of a stream its size, its SHA-256 and its index's
 * SHA-256 are compared with the manifest. Any mismatch makes the stream emit an IntegrityError
 * naming the snapshot, stream and chunk, before the stream ends, so a plugin never commits it.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Readable } from 'node:stream';
import { DamagedPackError, IntegrityError, OperationError, messageOf } from '../core/errors.js';
import type { SnapshotSource } from '../core/plugin.js';
import { packFileName } from './layout.js';
import { CHUNK_RECORD_SIZE, decodeChunkRecord, MANIFEST_FILE, type Manifest, parseManifest } from './manifest.js';

const require = createRequire(import.meta.url);
const zstd = require('zstd-napi/binding') as {
  DCtx: new () => { decompress(dst: Uint8Array, src: Uint8Array): number };
};

/** Largest logical chunk a reader accepts (the chunker's max is far below this). */
const MAX_CHUNK = 64 * 1024 * 1024;
/** Largest single read from a pack (neighbouring chunks are read together). */
const MAX_READ = 4 * 1024 * 1024;
const INDEX_BLOCK = 1365 * CHUNK_RECORD_SIZE;

/** The errors of opening or reading a store file that mean the file is missing or its disk failed. */
const DAMAGE_CODES = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'ELOOP', 'EIO']);

/**
 * Linux's EUCLEAN (117) and EBADMSG (74): how ext4, XFS and others say a file's blocks or metadata
 * are corrupt (their EFSCORRUPTED and EFSBADCRC). Damage, not something to try again. libuv has no
 * names for them, so Node's error carries only the number (code "Unknown system error -117").
 */
const CORRUPT_ERRNOS = new Set([-117, -74]);

/**
 * The error for a store file that could not be read: damage (`damage`, an IntegrityError) when the
 * file is missing or unreadable on its disk; anything else (a permission: snapshot data is not
 * readable by other users; too many open files, no memory) is this run's problem, not the
 * snapshot's, and is said as such, so that --check counts it as unchecked, not as damaged.
 */
export function readFailure(error: unknown, file: string, damage: string): IntegrityError | OperationError {
  const { code, errno } = error as NodeJS.ErrnoException;
  if (code === undefined || DAMAGE_CODES.has(code) || (errno !== undefined && CORRUPT_ERRNOS.has(errno))) {
    return new IntegrityError(damage, { cause: error });
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new OperationError(
      `cannot read ${file}: permission denied; snapshot data is readable by its owner and group${ownerOf(file)} only: run this as that user or in that group`,
      { cause: error },
    );
  }
  return new OperationError(`cannot read ${file}: ${messageOf(error)}; the file itself may be intact: try again`, { cause: error });
}

function ownerOf(file: string): string {
  try {
    const info = statSync(file); // only on the way to an error
    return ` (uid ${info.uid}, gid ${info.gid})`;
  } catch {
    return '';
  }
}

/** Reads manifest.json of a folder; IntegrityError when it is missing or damaged. */
export async function readManifest(folder: string, where: string): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(path.join(folder, MANIFEST_FILE), 'utf8');
  } catch (error) {
    throw readFailure(error, path.join(folder, MANIFEST_FILE), `${where}: cannot read manifest.json: ${messageOf(error)}`);
  }
  return parseManifest(text, where);
}

/** Takes the shared store lock for the time a stream is read, so gc never rewrites it meanwhile. */
export type ReadGuard = () => Promise<{ release(): Promise<void> }>;

/** A snapshot in the store's own format. */
export class StoredSnapshot implements SnapshotSource {
  readonly identity: string;
  readonly type: string;
  readonly streams: string[];

  constructor(
    readonly path: string,
    readonly manifest: Manifest,
    /** How errors name the snapshot (its relative path). */
    readonly where: string,
    private readonly guard?: ReadGuard,
  ) {
    this.identity = manifest.identity;
    this.type = manifest.type;
    this.streams = manifest.streams.map((stream) => stream.name);
  }

  /** Loads and checks the manifest of a folder. */
  static async load(folder: string, where: string, guard?: ReadGuard): Promise<StoredSnapshot> {
    return new StoredSnapshot(folder, await readManifest(folder, where), where, guard);
  }

  size(name: string): number | undefined {
    return this.manifest.streams.find((stream) => stream.name === name)?.size;
  }

  /** Checks each stream's chunk index against the manifest (cheap: no pack data is read). */
  async verifyIndexes(): Promise<void> {
    for (const stream of this.manifest.streams) {
      let data: Buffer;
      try {
        data = await readFile(path.join(this.path, stream.index));
      } catch (error) {
        throw readFailure(error, path.join(this.path, stream.index), `${this.where}: cannot read the chunk index ${stream.index}: ${messageOf(error)}`);
      }
      const sha256 = createHash('sha256').update(data).digest('hex');
      if (sha256 !== stream.indexSha256 || data.length !== stream.chunks * CHUNK_RECORD_SIZE) {
        throw new IntegrityError(`${this.where}: the chunk index ${stream.index} does not match the manifest; the snapshot is damaged`);
      }
    }
  }

  open(name: string): Readable {
    return Readable.from(this.chunks(name), { objectMode: false, highWaterMark: 1024 * 1024 });
  }

  async verify(): Promise<void> {
    for (const name of this.streams) {
      for await (const chunk of this.chunks(name)) void chunk;
    }
  }

  /** The verified logical bytes of a stream, chunk by chunk, under the read guard. */
  async *chunks(name: string): AsyncGenerator<Buffer> {
    const held = await this.guard?.();
    try {
      yield* this.unguardedChunks(name);
    } finally {
      await held?.release();
    }
  }

  private async *unguardedChunks(name: string): AsyncGenerator<Buffer> {
    const stream = this.manifest.streams.find((entry) => entry.name === name);
    if (stream === undefined) {
      throw new OperationError(`${this.where} has no stream ${JSON.stringify(name)} (it has: ${this.streams.join(', ') || 'none'})`);
    }
    const where = `${this.where}: stream ${name}`;
    const packs = new PackFiles(this.path, this.manifest.packs, where);
    const dctx = new zstd.DCtx();
    const streamHash = createHash('sha256');
    const indexHash = createHash('sha256');
    let index: FileHandle;
    try {
      index = await open(path.join(this.path, stream.index), 'r');
    } catch (error) {
      throw readFailure(error, path.join(this.path, stream.index), `${where}: cannot open its chunk index ${stream.index}: ${messageOf(error)}`);
    }
    let size = 0;
    let chunkNumber = 0;
    try {
      const block = Buffer.alloc(INDEX_BLOCK);
      let pending: ReturnType<typeof decodeChunkRecord>[] = [];
      for (;;) {
        const { bytesRead } = await index.read(block, 0, block.length, null);
        if (bytesRead === 0) break;
        if (bytesRead % CHUNK_RECORD_SIZE !== 0) {
          throw new IntegrityError(`${where}: the chunk index ${stream.index} is truncated; the snapshot is damaged`);
        }
        const records = Buffer.from(block.subarray(0, bytesRead));
        indexHash.update(records);
        pending = [];
        for (let at = 0; at < bytesRead; at += CHUNK_RECORD_SIZE) pending.push(decodeChunkRecord(records, at));
        for (const run of runs(pending)) {
          // Good until the next read (PackFiles): every chunk of the run is decompressed out of it first.
          const data = await packs.read(run[0]!.pack, run[0]!.offset, runLength(run), chunkNumber);
          let at = 0;
          for (const record of run) {
            const pack = this.manifest.packs[record.pack]!;
            const label = `${where}: chunk ${chunkNumber} (pack ${pack}, offset ${record.offset})`;
            if (record.rawLength > MAX_CHUNK) throw new IntegrityError(`${label} has an impossible size; the snapshot is damaged`);
            const raw = Buffer.allocUnsafe(record.rawLength);
            let produced: number;
            try {
              produced = dctx.decompress(raw, data.subarray(at, at + record.length));
            } catch (error) {
              throw new DamagedPackError(`${label} cannot be decompressed (${messageOf(error)}); the snapshot is damaged`, pack);
            }
            const actual = createHash('sha256').update(raw).digest();
            if (produced !== record.rawLength || !actual.equals(record.hash)) {
              throw new DamagedPackError(
                `${label} does not match its checksum (expected ${Buffer.from(record.hash).toString('hex')}, got ${actual.toString('hex')}); the snapshot is damaged`,
                pack,
              );
            }
            streamHash.update(raw);
            size += raw.length;
            chunkNumber += 1;
            at += record.length;
            yield raw;
          }
        }
      }
      const indexSha256 = indexHash.digest('hex');
      if (indexSha256 !== stream.indexSha256 || chunkNumber !== stream.chunks) {
        throw new IntegrityError(`${where}: the chunk index ${stream.index} does not match the manifest; the snapshot is damaged`);
      }
      const sha256 = streamHash.digest('hex');
      if (size !== stream.size || sha256 !== stream.sha256) {
        throw new IntegrityError(
          `${where}: the stream's content does not match the manifest (size ${size} of ${stream.size}, sha256 ${sha256}); the snapshot is damaged`,
        );
      }
    } finally {
      await index.close();
      await packs.close();
    }
  }
}

type ChunkRef = ReturnType<typeof decodeChunkRecord>;

/** Groups records into runs that are adjacent in one pack, so each run is one read. */
function* runs(records: ChunkRef[]): Generator<ChunkRef[]> {
  let run: ChunkRef[] = [];
  for (const record of records) {
    const last = run[run.length - 1];
    if (
      last !== undefined &&
      (record.pack !== last.pack || record.offset !== last.offset + last.length || runLength(run) + record.length > MAX_READ)
    ) {
      yield run;
      run = [];
    }
    run.push(record);
  }
  if (run.length > 0) yield run;
}

function runLength(run: ChunkRef[]): number {
  const last = run[run.length - 1]!;
  return last.offset + last.length - run[0]!.offset;
}

/**
 * The pack files of one folder, opened on first use, for one reader that reads in sequence (each
 * stream's generator makes its own). What read() returns lies in one buffer that every read
 * reuses, so it is only good until the next read: the reader decompresses each run out of it
 * before it reads the next. A fresh buffer per read would be memory touched for the first
 * time on every read, which is dear on a VM (about 3 ms per MB here, 0.1 CPU-seconds per restore
 * of the benchmark database).
 */
class PackFiles {
  private readonly handles = new Map<number, FileHandle>();
  private scratch: Buffer | undefined;

  constructor(
    private readonly folder: string,
    private readonly packs: string[],
    private readonly where: string,
  ) {}

  async read(slot: number, offset: number, length: number, chunkNumber: number): Promise<Buffer> {
    const name = this.packs[slot];
    if (name === undefined) {
      throw new IntegrityError(`${this.where}: chunk ${chunkNumber} names pack #${slot}, which the manifest does not list; the snapshot is damaged`);
    }
    if (length > MAX_READ + MAX_CHUNK) {
      throw new IntegrityError(`${this.where}: chunk ${chunkNumber} has an impossible length; the snapshot is damaged`);
    }
    let handle = this.handles.get(slot);
    if (handle === undefined) {
      const file = path.join(this.folder, packFileName(name));
      try {
        handle = await open(file, 'r');
      } catch (error) {
        throw readFailure(error, file, `${this.where}: pack ${name} is missing from the snapshot folder (${messageOf(error)}); the snapshot is damaged`);
      }
      this.handles.set(slot, handle);
    }
    if (this.scratch === undefined || this.scratch.length < length) this.scratch = Buffer.allocUnsafeSlow(Math.max(length, MAX_READ));
    const data = this.scratch.subarray(0, length);
    const { bytesRead } = await handle.read(data, 0, length, offset);
    if (bytesRead !== length) {
      throw new DamagedPackError(
        `${this.where}: chunk ${chunkNumber} lies beyond the end of pack ${name} (offset ${offset}); the snapshot is damaged`,
        name,
      );
    }
    return data;
  }

  async close(): Promise<void> {
    for (const handle of this.handles.values()) await handle.close();
    this.handles.clear();
  }
}
