/**
 * psql's `\restrict KEY` guard (CVE-2025-8714): in a restored dump, no psql meta-command runs
 * until `\unrestrict KEY`, so a hostile origin server cannot make the restore run commands.
 * pg_dump (since 13.22, 14.19, 15.14, 16.10, 17.6) writes the pair with a random key, which
 * would make every dump of an unchanged database different. So a snapshot is stored without the
 * pair (exactly those two lines are taken out, with the key read from the dump), and a restore
 * wraps the stream in a pair with a fresh key that the stored data cannot know (a Dysnomia
 * snapshot made by a recent pg_dump keeps its own pair).
 */
import { randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { FilterTransform, type PieceFilter } from '../sql/piece-filter.js';
import { toolOutput, type ToolOptions } from '../sql/tool.js';
import { findPgTools, type PgTools } from './client.js';
import { PLUGIN } from './options.js';

/** The first minor release of each major version that knows `\restrict`. */
const FIRST: Record<number, number> = { 13: 22, 14: 19, 15: 14, 16: 10, 17: 6 };

/** True when this psql knows the guard (from `--version`). */
export async function knowsRestrict(tool: string, options: ToolOptions): Promise<boolean> {
  const text = await toolOutput(tool, ['--version'], `asking ${tool} for its version`, options);
  const match = /(\d+)\.(\d+)/.exec(text);
  if (match === null) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major >= 18 || (FIRST[major] !== undefined && minor >= FIRST[major]!);
}

/**
 * Starts finding psql and asking whether it knows the guard, in the background, so that a restore
 * asks while its session connects (Debian's tools are Perl wrappers: about a tenth of a second).
 * knowsRestrict then finds the answer cached, or reports the failure, which is not cached. (A
 * snapshot asks pg_dump nothing: see {@link OwnRestrictFilter}.)
 */
export function primeKnowsRestrict(tool: keyof PgTools): void {
  findPgTools()
    .then((tools) => knowsRestrict(tools[tool], { plugin: PLUGIN }))
    .catch(() => {});
}

/** A random key of letters and digits. */
export function restrictKey(): string {
  return randomBytes(24).toString('hex');
}

/**
 * Removes the lines `\restrict KEY` and `\unrestrict KEY` (KEY being the given one) from a dump; every
 * other byte passes unchanged. Written by hand: a byte-exact line filter, which no library offers.
 * The whole dump passes through here, so a piece is only searched, never copied, unless a pattern
 * is in it or straddles its start (twice per dump). What it keeps between pieces is a copy
 * (piece-filter.ts).
 */
export class RestrictFilter implements PieceFilter {
  private readonly patterns: Buffer[];
  /** The patterns without their first newline (see {@link mayHold}). */
  private readonly probes: Buffer[];
  private readonly keep: number;
  /** The last `keep` bytes seen, held back: a pattern may start in them. */
  private carry: Buffer = Buffer.alloc(0);

  constructor(key: string) {
    this.patterns = [Buffer.from(`\n\\restrict ${key}\n`), Buffer.from(`\n\\unrestrict ${key}\n`)];
    this.probes = this.patterns.map((pattern) => pattern.subarray(1));
    this.keep = Math.max(...this.patterns.map((p) => p.length)) - 1;
  }

  /**
   * True when `data` may hold a pattern. Node finds a needle that starts with a rare byte (here a
   * backslash) with memchr, and one that starts with a newline with a much slower Boyer-Moore
   * search: on the benchmark dump that is 26 ms against 54 ms per pattern, over the whole dump.
   */
  private mayHold(data: Buffer): boolean {
    return this.probes.some((probe) => data.includes(probe));
  }

  write(piece: Buffer): Buffer[] {
    const out: Buffer[] = [];
    // A small piece, or a pattern across the seam: join (small, or rare) and search the whole.
    const seam = this.carry.length > 0 ? Buffer.concat([this.carry, piece.subarray(0, this.keep)]) : undefined;
    if (piece.length <= this.keep || (seam !== undefined && this.mayHold(seam))) {
      this.carry = this.passOn(this.remove(Buffer.concat([this.carry, piece])), out);
    } else {
      if (this.carry.length > 0) out.push(this.carry);
      this.carry = this.passOn(this.mayHold(piece) ? this.remove(piece) : piece, out);
    }
    return out;
  }

  /** Passes on all of `data` but its last `keep` bytes, and returns those (copied: data is the caller's). */
  private passOn(data: Buffer, out: Buffer[]): Buffer {
    const cut = Math.max(0, data.length - this.keep);
    if (cut > 0) out.push(data.subarray(0, cut));
    return Buffer.from(data.subarray(cut));
  }

  private remove(data: Buffer): Buffer {
    let out = data;
    for (const pattern of this.patterns) {
      const at = out.indexOf(pattern);
      // Keep the newline in front of the line, drop the line itself.
      if (at >= 0) out = Buffer.concat([out.subarray(0, at + 1), out.subarray(at + pattern.length)]);
    }
    return out;
  }

  end(): Buffer[] {
    const rest = this.carry;
    this.carry = Buffer.alloc(0);
    return [rest];
  }
}

/** How far into a dump pg_dump's own `\\restrict` line may be (it is the fifth line). */
const LOOKAHEAD = 4096;
const OWN_GUARD = /^\\restrict (\S+)$/;

/** What {@link guardKey} says while a dump's first statement has not come yet. */
const PENDING = Symbol('pending');

/**
 * The key of pg_dump's own guard in the complete lines of a dump's head: its first line that is
 * neither empty nor a `--` comment, when that is `\\restrict KEY` and no `-- Dumped ` line came
 * before it. pg_dump writes its guard above `-- Dumped from database version ...`, whose text the
 * server chose: a guard line below it (a server version with a newline in it) is not pg_dump's,
 * and is left in the dump, where psql refuses it (a second guard, or a meta-command in restricted
 * mode). Undefined when there is no guard; PENDING when the lines hold no statement yet.
 */
function guardKey(lines: readonly string[]): string | undefined | typeof PENDING {
  for (const line of lines) {
    if (line.startsWith('-- Dumped ')) return undefined;
    if (line === '' || line.startsWith('--')) continue;
    return OWN_GUARD.exec(line)?.[1];
  }
  return PENDING;
}

/**
 * True when the dump starts with pg_dump's guard (see guardKey). Only there: the same text later
 * on (in a function body, say) is data.
 */
export function hasOwnGuard(head: string): boolean {
  const key = guardKey(head.split('\n'));
  return key !== undefined && key !== PENDING;
}

/** Passes every piece on unchanged. */
const PASS: PieceFilter = { write: (piece) => [piece], end: () => [] };

/**
 * Takes pg_dump's own `\restrict` pair out of its output, with the key pg_dump chose: read from the
 * guard line (the dump's first statement, see guardKey), then both lines taken out as
 * {@link RestrictFilter} takes them. The bytes are those that handing pg_dump our own key gives,
 * so no snapshot's identity changes; but pg_dump need not be asked its version first to know
 * whether it takes `--restrict-key` (on Debian a Perl wrapper and a second program: the dump
 * starts about 0.05 s sooner). A dump without the guard (an older pg_dump) passes unchanged.
 */
export class OwnRestrictFilter implements PieceFilter {
  /** What was read before the guard line was complete (a copy: a source reuses its memory). */
  private head: Buffer[] = [];
  /** A RestrictFilter with the key once the guard is read, PASS when there is none. */
  private inner: PieceFilter | undefined;

  write(piece: Buffer): Buffer[] {
    if (this.inner !== undefined) return this.inner.write(piece);
    // Mostly the first piece holds the guard line: decided without a copy.
    const data = this.head.length === 0 ? piece : Buffer.concat([...this.head, piece]);
    const inner = this.decide(data, false);
    if (inner === undefined) {
      this.head = [this.head.length === 0 ? Buffer.from(piece) : data];
      return [];
    }
    this.head = [];
    return inner.write(data);
  }

  end(): Buffer[] {
    if (this.inner !== undefined) return this.inner.end();
    const data = Buffer.concat(this.head);
    this.head = [];
    const inner = this.decide(data, true)!;
    return [...inner.write(data), ...inner.end()];
  }

  /** The filter for the rest of the dump, or undefined while the guard line may still come. */
  private decide(data: Buffer, ended: boolean): PieceFilter | undefined {
    const lines = data.subarray(0, LOOKAHEAD).toString('latin1').split('\n');
    // The last line is complete only where the dump ends within the look-ahead.
    const key = guardKey(ended && data.length <= LOOKAHEAD ? lines : lines.slice(0, -1));
    if (key === PENDING && !ended && data.length < LOOKAHEAD) return undefined;
    this.inner = key === undefined || key === PENDING ? PASS : new RestrictFilter(key);
    return this.inner;
  }
}

/** {@link OwnRestrictFilter} as a stream stage. */
export class OwnRestrictRemover extends FilterTransform {
  constructor() {
    super(new OwnRestrictFilter());
  }
}

/**
 * Puts the stream between a fresh `\\restrict` and `\\unrestrict` pair, unless the dump brings its
 * own (a Dysnomia snapshot made by a recent pg_dump): psql refuses a second `\\restrict`.
 */
export class RestrictGuard extends Transform {
  private readonly key = restrictKey();
  private head: Buffer[] = [];
  private headLength = 0;
  private guarded: boolean | undefined;

  private decide(): void {
    const head = Buffer.concat(this.head);
    this.guarded = !hasOwnGuard(head.subarray(0, LOOKAHEAD).toString('latin1'));
    if (this.guarded) this.push(Buffer.from(`\\restrict ${this.key}\n`));
    this.push(head);
    this.head = [];
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.guarded !== undefined) return callback(null, chunk);
    this.head.push(chunk);
    this.headLength += chunk.length;
    if (this.headLength >= LOOKAHEAD) this.decide();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    if (this.guarded === undefined) this.decide();
    callback(null, this.guarded ? Buffer.from(`\n\\unrestrict ${this.key}\n`) : undefined);
  }
}
