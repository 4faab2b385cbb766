/**
 * A repository's identity: a hash of every ref and its target plus what HEAD says. Two
 * repositories with the same identity have the same history, so a snapshot of an unchanged
 * repository is recognised before a single object is read.
 */
import { createHash } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { OperationError } from '../../core/errors.js';
import { git } from './git.js';
import { PLUGIN_TYPE } from './options.js';

/** One ref and the object it points at. */
export interface Ref {
  name: string;
  oid: string;
}

/** What the identity is computed from. */
export interface RefState {
  refs: Ref[];
  /** HEAD as written in the HEAD file: `ref: refs/heads/main`, or an object id when detached. */
  head: string;
}

/** Reads HEAD as written (a symbolic ref or a detached object id), without resolving it. */
export async function readHead(repo: string): Promise<string> {
  try {
    return (await readFile(path.join(repo, 'HEAD'), 'utf8')).trim();
  } catch (error) {
    throw new OperationError(`cannot read ${path.join(repo, 'HEAD')}: is ${repo} a git repository?`, {
      plugin: PLUGIN_TYPE,
      cause: error,
    });
  }
}

/** Every ref under refs/ with its target, as git lists them. */
export async function listRefs(repo: string, signal?: AbortSignal): Promise<Ref[]> {
  const out = await git(repo, ['for-each-ref', '--format=%(objectname) %(refname)'], `listing the refs of ${repo}`, signal, true);
  return parseRefLines(out);
}

function parseRefLines(text: string): Ref[] {
  const refs: Ref[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const space = line.indexOf(' ');
    refs.push({ oid: line.slice(0, space), name: line.slice(space + 1) });
  }
  return refs;
}

/** The refs and HEAD of a repository, read now. */
export async function readRefState(repo: string, signal?: AbortSignal): Promise<RefState> {
  const head = await readHead(repo);
  return { refs: await listRefs(repo, signal), head };
}

/** The identity of a ref state: SHA-256 (hex) over the sorted `oid name` lines and HEAD. */
export function identityOf(state: RefState): string {
  const lines = state.refs
    .map((ref) => `${ref.oid} ${ref.name}\n`)
    .sort((a, b) => {
      const an = a.slice(a.indexOf(' ') + 1);
      const bn = b.slice(b.indexOf(' ') + 1);
      return an < bn ? -1 : an > bn ? 1 : 0;
    });
  const hash = createHash('sha256');
  for (const line of lines) hash.update(line);
  hash.update(`HEAD ${state.head}\n`);
  return hash.digest('hex');
}

/** The start of a bundle file: its version, capabilities and the refs it carries. */
export interface BundleHeader {
  version: number;
  /** `sha1` or `sha256` (bundle v3 says so; v2 is always sha1). */
  objectFormat: string;
  /** The refs the bundle carries, HEAD excluded. */
  refs: Ref[];
  /** The object HEAD pointed at when the bundle was made, if it listed HEAD. */
  headOid?: string;
  /** Objects the receiving repository must already have (none for a `--all` bundle). */
  prerequisites: string[];
}

/** Parses a bundle header (everything before the blank line that precedes the pack). */
export function parseBundleHeader(text: string): BundleHeader {
  const lines = text.split('\n');
  const version = /^# v([23]) git bundle$/.exec(lines[0] ?? '');
  if (!version) throw new OperationError('not a git bundle (no "# v2/v3 git bundle" header)', { plugin: PLUGIN_TYPE });
  const header: BundleHeader = { version: Number(version[1]), objectFormat: 'sha1', refs: [], prerequisites: [] };
  for (const line of lines.slice(1)) {
    if (line === '') break;
    if (line.startsWith('@object-format=')) header.objectFormat = line.slice('@object-format='.length);
    else if (line.startsWith('@')) continue;
    else if (line.startsWith('-')) header.prerequisites.push(line.slice(1).split(' ')[0]!);
    else {
      const [ref] = parseRefLines(line);
      if (ref === undefined) continue;
      if (ref.name === 'HEAD') header.headOid = ref.oid;
      // Only refs/: `--all` also lists a linked worktree's HEAD (`worktrees/<name>/HEAD`), which
      // belongs to that worktree, is not restored (the fetch takes refs/*) and is not in the
      // identity of the live repository either. Counted, it made every such snapshot unrestorable.
      else if (ref.name.startsWith('refs/')) header.refs.push(ref);
    }
  }
  return header;
}

/** The `git init` option for a bundle's object format; none for sha1, which every git knows. */
export function objectFormat(header: BundleHeader | undefined): string[] {
  return header === undefined || header.objectFormat === 'sha1' ? [] : [`--object-format=${header.objectFormat}`];
}

/** The header's end: the blank line before the pack data. */
const HEADER_END = Buffer.from('\n\n');

/**
 * Collects a bundle's header from the chunks streaming past, without holding on to the rest.
 * `header()` is the parsed header once the blank line has been seen.
 */
export class BundleHeaderReader {
  private chunks: Buffer[] = [];
  private parsed?: BundleHeader;
  private failure?: unknown;

  /** Feeds the next chunk of the bundle. */
  push(chunk: Buffer): void {
    if (this.parsed !== undefined || this.failure !== undefined) return;
    this.chunks.push(chunk);
    const all = Buffer.concat(this.chunks);
    const end = all.indexOf(HEADER_END);
    if (end === -1) {
      this.chunks = [all];
      return;
    }
    this.chunks = [];
    try {
      this.parsed = parseBundleHeader(all.subarray(0, end + 1).toString('utf8'));
    } catch (error) {
      this.failure = error;
    }
  }

  /** True once the header has been seen (whether or not it parsed). */
  done(): boolean {
    return this.parsed !== undefined || this.failure !== undefined;
  }

  /** The header, or undefined when the stream ended before it was complete; throws if it was bad. */
  header(): BundleHeader | undefined {
    if (this.failure !== undefined) throw this.failure;
    return this.parsed;
  }
}

/** Reads the header of a bundle file, without reading its pack. */
export async function readBundleHeader(file: string): Promise<BundleHeader> {
  const reader = new BundleHeaderReader();
  const handle = await open(file, 'r');
  try {
    const block = Buffer.alloc(64 * 1024);
    let position = 0;
    while (!reader.done()) {
      const { bytesRead } = await handle.read(block, 0, block.length, position);
      if (bytesRead === 0) break;
      position += bytesRead;
      reader.push(Buffer.from(block.subarray(0, bytesRead)));
    }
  } finally {
    await handle.close();
  }
  let header: BundleHeader | undefined;
  try {
    header = reader.header();
  } catch (error) {
    throw new OperationError(`${file}: ${(error as Error).message}; make it with git bundle create`, { plugin: PLUGIN_TYPE });
  }
  if (header === undefined) {
    throw new OperationError(`${file}: not a git bundle (its header never ends); make it with git bundle create`, { plugin: PLUGIN_TYPE });
  }
  return header;
}
