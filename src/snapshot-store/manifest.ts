/**
 * The snapshot manifest (`manifest.json`) and the chunk index files it names.
 *
 * A snapshot folder holds `manifest.json`, one binary chunk index per stream (`stream-N.chunks`)
 * and hard links to the pack files it reads from (`<sha256>.pack`). The manifest carries its own
 * SHA-256 (`manifestSha256`, over the compact JSON of every other field), so a flipped byte in it
 * is found even in a folder copied without its `checksums/` entry.
 */
import { createHash } from 'node:crypto';
import { IntegrityError } from '../core/errors.js';
import type { ChunkingOptions } from './chunker.js';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'dysnomia-snapshot';
export const MANIFEST_VERSION = 1;

/** One stream of a snapshot. */
export interface StreamEntry {
  name: string;
  /** Logical (uncompressed) size in bytes. */
  size: number;
  /** SHA-256 of the logical bytes, hex. */
  sha256: string;
  /** Number of chunks. */
  chunks: number;
  /** The chunk index file in the folder. */
  index: string;
  /** SHA-256 of the chunk index file, hex. */
  indexSha256: string;
}

/** The content of manifest.json, without its own checksum. */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: number;
  /** The plugin type that wrote it. */
  type: string;
  container: string;
  component: string;
  identity: string;
  /** `content`: the identity is {@link contentSha256}; `natural`: the plugin named it. */
  identityKind: 'content' | 'natural';
  /** Creation time, ISO 8601. */
  created: string;
  /** SHA-256 of the logical content (see {@link contentHash}); what checksums/ records. */
  contentSha256: string;
  chunking: ChunkingOptions & { algorithm: string };
  compression: 'zstd';
  /** Pack hashes; chunk records refer to them by position. */
  packs: string[];
  streams: StreamEntry[];
}

/** The name the manifest gives chunker.ts's cuts (a different gear or loop must change it). */
export const CHUNKING_ALGORITHM = 'fastcdc-gear32';

/** Size of one chunk record in a chunk index file. */
export const CHUNK_RECORD_SIZE = 48;

/** One chunk as its index records it. */
export interface ChunkRecord {
  /** SHA-256 of the chunk's logical bytes. */
  hash: Uint8Array;
  /** Position of its pack in {@link Manifest.packs}. */
  pack: number;
  offset: number;
  /** Compressed length in the pack. */
  length: number;
  /** Logical length. */
  rawLength: number;
}

/**
 * Writes a record at `offset` of `target` (whose whole buffer `view` covers): hash, then pack,
 * offset, length, rawLength (u32 LE). Fields, not a ChunkRecord: the writer calls this once per
 * chunk and allocates nothing for it.
 */
export function encodeChunkRecord(
  target: Uint8Array,
  view: DataView,
  at: number,
  hash: Uint8Array,
  pack: number,
  offset: number,
  length: number,
  rawLength: number,
): void {
  target.set(hash, at);
  view.setUint32(at + 32, pack, true);
  view.setUint32(at + 36, offset, true);
  view.setUint32(at + 40, length, true);
  view.setUint32(at + 44, rawLength, true);
}

/** Reads the record at `offset` of `source`. */
export function decodeChunkRecord(source: Uint8Array, offset: number): ChunkRecord {
  const view = new DataView(source.buffer, source.byteOffset + offset + 32, 16);
  return {
    hash: source.subarray(offset, offset + 32),
    pack: view.getUint32(0, true),
    offset: view.getUint32(4, true),
    length: view.getUint32(8, true),
    rawLength: view.getUint32(12, true),
  };
}

/** The chunk index file name of the i-th stream. */
export function indexFileName(position: number): string {
  return `stream-${position}.chunks`;
}

/**
 * The logical content hash: for one stream, exactly that stream's SHA-256 (so it matches
 * `sha256sum` of the dump); otherwise the SHA-256 of the lines `sha256sum` would print for the
 * streams in the order they were written (`<hex>  <name>\n` each).
 */
export function contentHash(streams: readonly { name: string; sha256: string }[]): string {
  if (streams.length === 1) return streams[0]!.sha256;
  const hash = createHash('sha256');
  for (const stream of streams) hash.update(`${stream.sha256}  ${stream.name}\n`);
  return hash.digest('hex');
}

/** The text of manifest.json for a manifest. */
export function serializeManifest(manifest: Manifest): string {
  const manifestSha256 = createHash('sha256').update(JSON.stringify(manifest)).digest('hex');
  return `${JSON.stringify({ ...manifest, manifestSha256 }, null, 2)}\n`;
}

const HEX64 = /^[0-9a-f]{64}$/;
const STREAM_NAME = /^[A-Za-z0-9_+@=-][A-Za-z0-9._+@=-]*$/;

/** True when a stream name is a plain file name the store accepts. */
export function isValidStreamName(name: string): boolean {
  return (
    STREAM_NAME.test(name) &&
    name.length <= 200 &&
    name !== MANIFEST_FILE &&
    !name.endsWith('.chunks') &&
    !name.endsWith('.pack')
  );
}

/**
 * Parses and checks manifest.json text: its own checksum, then every field. `where` names the
 * folder in errors. Throws IntegrityError on any mismatch.
 */
export function parseManifest(text: string, where: string): Manifest {
  const bad = (problem: string) => new IntegrityError(`${where}: manifest.json ${problem}; the snapshot is damaged`);
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw bad(`is not valid JSON (${(error as Error).message})`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('is not a JSON object');
  const { manifestSha256, ...rest } = parsed;
  if (typeof manifestSha256 !== 'string') throw bad('has no manifestSha256');
  const actual = createHash('sha256').update(JSON.stringify(rest)).digest('hex');
  if (actual !== manifestSha256) throw bad(`does not match its own checksum (manifestSha256 ${manifestSha256}, content ${actual})`);
  const m = rest as unknown as Manifest;
  if (m.format !== MANIFEST_FORMAT) throw bad(`has format ${JSON.stringify(m.format)}, expected ${MANIFEST_FORMAT}`);
  if (m.version !== MANIFEST_VERSION) {
    throw bad(`has version ${JSON.stringify(m.version)}; this dysnomia reads version ${MANIFEST_VERSION} (upgrade dysnomia)`);
  }
  for (const key of ['type', 'container', 'component', 'identity', 'created'] as const) {
    if (typeof m[key] !== 'string' || m[key] === '') throw bad(`has no ${key}`);
  }
  if (m.identityKind !== 'content' && m.identityKind !== 'natural') throw bad('has a bad identityKind');
  if (!HEX64.test(m.contentSha256)) throw bad('has a bad contentSha256');
  if (m.compression !== 'zstd') throw bad(`names an unknown compression ${JSON.stringify(m.compression)}`);
  if (!Array.isArray(m.packs) || !m.packs.every((p) => typeof p === 'string' && HEX64.test(p))) {
    throw bad('has a bad pack list');
  }
  if (!Array.isArray(m.streams)) throw bad('has no stream list');
  m.streams.forEach((s, i) => {
    if (typeof s !== 'object' || s === null || typeof s.name !== 'string' || !isValidStreamName(s.name)) {
      throw bad(`has a bad name for stream ${i}`);
    }
    if (!Number.isSafeInteger(s.size) || s.size < 0) throw bad(`has a bad size for stream ${s.name}`);
    if (!Number.isSafeInteger(s.chunks) || s.chunks < 0) throw bad(`has a bad chunk count for stream ${s.name}`);
    if (!HEX64.test(s.sha256) || !HEX64.test(s.indexSha256)) throw bad(`has a bad hash for stream ${s.name}`);
    if (s.index !== indexFileName(i)) throw bad(`names a bad index file for stream ${s.name}`);
  });
  if (new Set(m.streams.map((s) => s.name)).size !== m.streams.length) throw bad('names a stream twice');
  if (contentHash(m.streams) !== m.contentSha256) throw bad('has a contentSha256 that does not match its streams');
  if (m.identityKind === 'content' && m.identity !== m.contentSha256) {
    throw bad('has an identity that does not match its content');
  }
  return m;
}
