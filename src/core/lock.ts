/**
 * Cross-process locks with a shared and an exclusive mode, stale-lock takeover and a bounded wait.
 *
 * Hand-written on purpose: proper-lockfile (the well-kept choice) has no shared mode and decides
 * staleness by mtime, which would take over the lock of a live but slow dump. Here a lock is a
 * directory holding one small JSON file per holder (pid, host, process start time, since). A
 * holder whose process is gone on this host is stale and is removed with a warning.
 *
 * Mutual exclusion without a kernel lock: a taker first publishes its own holder file (atomic
 * rename), then lists the directory and backs off if it sees a conflicting holder. Of two takers
 * that conflict, the one that lists second always sees the other, so both can never proceed;
 * when both see each other both back off with a random delay and one wins the next round. An
 * exclusive taker that waits leaves a `wait` file, which makes new shared takers queue behind it,
 * so a stream of overlapping snapshots cannot starve gc.
 *
 * A process this process starts while it holds a lock (a dump tool, an external module) holds the
 * lock too, once this process is gone: killed with SIGKILL, dysnomia leaves a module running that
 * may still be changing the component, and the next run must not take the lock from under it.
 * Each child gets a holder file of its own (`child-...`, see {@link recordChild}), which counts
 * only while the child runs and the process that started it does not.
 *
 * A full disk must not lock anyone out (gc is what frees space, --check is what an operator runs
 * then): the name of a holder file carries what staleness needs (mode, pid, process start, a tag
 * of the host), so when there is no block left for its JSON the holder file is published empty.
 */
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import diagnosticsChannel from 'node:diagnostics_channel';
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AbortedError, LockTimeoutError, OperationError, UsageError, messageOf } from './errors.js';
import type { Logger } from './log.js';

/** How to take a lock. */
export interface LockOptions {
  /** What the lock protects, for the "waiting for ..." message. */
  what: string;
  /** Give up after this many milliseconds (undefined: wait forever). */
  timeoutMs?: number;
  log?: Logger;
  signal?: AbortSignal;
}

export type LockMode = 'shared' | 'exclusive';

/** What a lock's holder file records. */
export interface LockHolder {
  mode: LockMode | 'wait';
  pid: number;
  host: string;
  /** When the lock was taken (or the wait began), ISO 8601. */
  since: string;
  what: string;
  /** The holder process's start time in clock ticks since boot (Linux), to detect pid reuse. */
  processStart?: number;
  /** For a child of a holder ({@link recordChild}): the program it runs. */
  command?: string;
}

/** A lock being held; release it exactly once. */
export interface HeldLock {
  /** The lock's folder: the file given, or for a name too long to be a file name {@link lockFolder}'s. */
  readonly file: string;
  readonly mode: LockMode;
  release(): Promise<void>;
}

/**
 * Runs `fn` while holding the lock `file` (a directory, created when missing) in the given mode.
 * Throws LockTimeoutError when `timeoutMs` passes first, AbortedError when `signal` fires.
 */
export async function withLock<T>(
  file: string,
  mode: LockMode,
  options: LockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await acquireLock(file, mode, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** The longest file name (in bytes) Linux's file systems take: NAME_MAX. */
const NAME_MAX = 255;
/** How many bytes of an overlong lock name {@link lockFolder} keeps before the hash. */
const LOCK_NAME_START = 120;

/**
 * The folder a lock is kept in: `file` itself, unless its name is longer than a file name may be.
 * A component's lock is `component-<container>-<component>.lock`, and each of the two names may
 * have 200 characters (more bytes once encoded), so valid names could not be locked (ENAMETOOLONG).
 * Such a name keeps its start, for a reader of `locks/`, and ends in the SHA-256 of the whole
 * name, so two long names never share a lock. Names that fit stay as they are: a lock held by a
 * running process of an earlier version has the same folder.
 */
export function lockFolder(file: string): string {
  const resolved = path.resolve(file);
  const name = path.basename(resolved);
  if (Buffer.byteLength(name) <= NAME_MAX) return resolved;
  const extension = /\.[A-Za-z0-9]{1,8}$/.exec(name)?.[0] ?? '';
  const hash = createHash('sha256').update(name).digest('hex');
  // 120 bytes of the start, '-', 64 hex digits and an extension of at most 9 fit in NAME_MAX. Cut
  // by characters, so that a name with multi-byte characters is not cut inside one.
  let start = '';
  for (const character of name.slice(0, name.length - extension.length)) {
    if (Buffer.byteLength(start + character) > LOCK_NAME_START) break;
    start += character;
  }
  return path.join(path.dirname(resolved), `${start}-${hash}${extension}`);
}

const HOST = os.hostname();
/**
 * A short tag of the host name, for names of files that a process on this host owns (host names
 * may hold any character): a pid means something only on the host that gave it.
 */
export const HOST_TAG = hostTag(HOST);
const TEMP_PREFIX = '.tmp-';
/** Holder files this process has published and not yet removed, for cleanup on exit. */
const published = new Set<string>();
/**
 * The locks this process holds, by holder file, with the child holder files published for them
 * ({@link recordChild}).
 */
const held = new Map<string, { dir: string; mode: LockMode; what: string; children: Set<string> }>();
let exitHookInstalled = false;

/** Takes the lock and returns a handle; see {@link withLock}. */
export async function acquireLock(file: string, mode: LockMode, options: LockOptions): Promise<HeldLock> {
  const { timeoutMs } = options;
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0)) {
    // NaN would wait forever, a negative number give up at once: a caller's mistake either way.
    throw new UsageError(`lock timeout ${String(timeoutMs)}: expected a number of milliseconds >= 0 (or leave it out to wait as long as it takes)`);
  }
  const dir = lockFolder(file);
  await ensureLockDir(dir);
  installExitHook();
  const started = Date.now();
  const nonce = `${process.pid}-${processStartTime(process.pid) ?? 0}-${HOST_TAG}-${randomBytes(6).toString('hex')}`;
  const mine = path.join(dir, `${mode}-${nonce}.json`);
  const waitFile = path.join(dir, `wait-${nonce}.json`);
  let waitPublished = false;
  let told = false;
  let delay = 10;
  try {
    for (;;) {
      if (options.signal?.aborted) {
        // "Waiting" only once another holder has been named: with nobody holding it, it misled.
        throw new AbortedError(`cancelled while ${told ? 'waiting for' : 'locking'} ${options.what}`);
      }
      await publish(dir, mine, holder(mode, options.what));
      const others = await liveHolders(dir, [mine, waitFile], options.log);
      const conflict = others.find((other) => conflicts(mode, other, holdsShared(dir)));
      if (conflict === undefined) {
        held.set(mine, { dir, mode, what: options.what, children: new Set() });
        return handle(dir, mine, mode);
      }
      await unpublish(mine);
      if (mode === 'exclusive' && !waitPublished) {
        await publish(dir, waitFile, holder('wait', options.what));
        waitPublished = true;
      }
      const { holder: blocker } = conflict;
      const by = `pid ${blocker.pid}${blocker.host === HOST ? '' : ` on ${blocker.host}`} since ${blocker.since}`;
      if (!told) {
        options.log?.info(`waiting for ${options.what}: ${describeHolder(blocker)} holds it (${by}; lock ${dir})`);
        told = true;
      }
      const elapsed = Date.now() - started;
      if (options.timeoutMs !== undefined && elapsed >= options.timeoutMs) {
        throw new LockTimeoutError(
          `gave up after ${formatSeconds(options.timeoutMs)} waiting for ${options.what}: ` +
            `${describeHolder(blocker)} holds it (${by}; lock ${dir}); try again later or raise --lock-timeout`,
        );
      }
      let wait = delay * (0.5 + Math.random());
      if (options.timeoutMs !== undefined) wait = Math.min(wait, Math.max(1, options.timeoutMs - elapsed));
      await sleep(wait, options.signal);
      delay = Math.min(delay * 1.5, 250);
    }
  } finally {
    if (waitPublished) await unpublish(waitFile);
  }
}

function describeHolder(holder: LockHolder): string {
  if (holder.mode === 'wait') return `a queued gc or import (${holder.what})`;
  if (holder.mode === 'shared') return `a shared holder (${holder.what})`;
  // Two calls of the library in one process wait for each other like two processes.
  const self = holder.pid === process.pid && holder.host === HOST;
  return `${self ? 'another call in this process' : 'another process'} (${holder.what})`;
}

function formatSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** Whether this process holds the lock in `dir` shared: a nested shared take then never queues. */
function holdsShared(dir: string): boolean {
  for (const lock of held.values()) if (lock.dir === dir && lock.mode === 'shared') return true;
  return false;
}

function conflicts(mode: LockMode, other: { holder: LockHolder }, alreadyShared: boolean): boolean {
  if (mode === 'exclusive') return other.holder.mode !== 'wait';
  if (other.holder.mode === 'exclusive') return true;
  return other.holder.mode === 'wait' && !alreadyShared;
}

function holder(mode: LockHolder['mode'], what: string): LockHolder {
  const start = processStartTime(process.pid);
  return {
    mode,
    pid: process.pid,
    host: HOST,
    since: new Date().toISOString(),
    what,
    ...(start === undefined ? {} : { processStart: start }),
  };
}

function handle(dir: string, mine: string, mode: LockMode): HeldLock {
  let released = false;
  return {
    file: dir,
    mode,
    release: async () => {
      if (released) return;
      released = true;
      const children = held.get(mine)?.children ?? new Set<string>();
      held.delete(mine);
      for (const child of children) await unpublish(child);
      await unpublish(mine);
    },
  };
}

async function ensureLockDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new OperationError(
      `cannot create the lock ${dir}: ${messageOf(error)}; check that the state dir exists and is writable`,
      { cause: error },
    );
  }
}

async function publish(dir: string, file: string, content: LockHolder): Promise<void> {
  try {
    writeHolderFile(file, content);
  } catch (error) {
    // Even an empty file failed: the file system has no inode left, which "writable" does not
    // explain, and which no gc of the store can mend, since it needs a lock file too.
    const hint = isDiskFull(error)
      ? `its file system has no room even for an empty file (no free inodes? see df -i ${dir}); free some there, outside the store: dysnomia-snapshots --gc needs a lock file too`
      : 'check that the state dir exists and is writable';
    throw new OperationError(`cannot write the lock file ${file}: ${messageOf(error)}; ${hint}`, { cause: error });
  }
}

/**
 * Writes a holder file under a temporary name and renames it into place, so that readers never
 * see half of it; throws what the file system said, with the temporary file removed.
 * Synchronous, so that {@link recordChild} can write a child's file right after the fork; the
 * files are small.
 */
function writeHolderFile(file: string, content: LockHolder): void {
  const temp = path.join(path.dirname(file), `${TEMP_PREFIX}${path.basename(file)}`);
  try {
    try {
      writeFileSync(temp, `${JSON.stringify(content)}\n`);
    } catch (error) {
      if (!isDiskFull(error)) throw error;
      // No block for the details; an empty file needs none, and its name says enough.
      writeFileSync(temp, '');
    }
    renameSync(temp, file);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  published.add(file);
}

function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function hostTag(host: string): string {
  return createHash('sha256').update(host).digest('hex').slice(0, 8);
}

/** `<mode>-<pid>-<process start>-<host tag>-<random>.json`, as acquireLock names holder files. */
const HOLDER_NAME = /^(shared|exclusive|wait)-(\d+)-(\d+)-([0-9a-f]{8})-[0-9a-f]+\.json$/;

/** What an empty holder file's name says (one published on a full disk); undefined for others. */
async function holderFromName(file: string): Promise<LockHolder | undefined> {
  const match = HOLDER_NAME.exec(path.basename(file));
  if (match === null) return undefined;
  const written = await stat(file).catch(() => undefined);
  if (written === undefined) return undefined;
  const [, mode, pid, start, tag] = match;
  return {
    mode: mode as LockHolder['mode'],
    pid: Number(pid),
    host: tag === HOST_TAG ? HOST : `the host tagged ${tag}`,
    since: written.mtime.toISOString(),
    what: 'details not recorded: the disk was full',
    ...(start === '0' ? {} : { processStart: Number(start) }),
  };
}

async function unpublish(file: string): Promise<void> {
  published.delete(file);
  await rm(file, { force: true });
}

/** The holders of a lock other than `exclude`, with stale ones (dead pid on this host) removed. */
async function liveHolders(
  dir: string,
  exclude: string[],
  log: Logger | undefined,
): Promise<{ file: string; holder: LockHolder }[]> {
  const result: { file: string; holder: LockHolder }[] = [];
  for (const name of await readdir(dir)) {
    const file = path.join(dir, name);
    if (exclude.includes(file)) continue;
    if (name.startsWith(TEMP_PREFIX)) {
      // The holder file being published, under its own name after the prefix. One published on
      // another host is not ours to judge by its pid; on this host its writer is gone when the
      // pid is free or now belongs to a process started later.
      const temp = name.slice(TEMP_PREFIX.length);
      const childWriter = CHILD_NAME.exec(temp);
      if (childWriter !== null && childWriter[6] === HOST_TAG) {
        const [, , , , parent, parentStart] = childWriter;
        if (endedByName(parent!, parentStart!)) await rm(file, { force: true });
        continue;
      }
      const writer = HOLDER_NAME.exec(temp);
      if (writer !== null && writer[4] === HOST_TAG) {
        const [, , pid, start] = writer;
        if (endedByName(pid!, start!)) await rm(file, { force: true });
      }
      continue;
    }
    const child = CHILD_NAME.exec(name);
    if (child !== null) {
      const info = await liveChildHolder(file, child);
      if (info !== undefined) result.push({ file, holder: info });
      continue;
    }
    if (!name.endsWith('.json')) continue;
    const info = await readHolder(file);
    if (info === undefined) continue;
    if (isStale(info)) {
      await rm(file, { force: true });
      if (info.mode !== 'wait') {
        log?.warn(
          `took over the stale lock ${dir}: its ${info.mode} holder, pid ${info.pid} (since ${info.since}, ${info.what}), is no longer running`,
        );
      }
      continue;
    }
    result.push({ file, holder: info });
  }
  return result;
}

/**
 * `child-<mode>-<pid>-<process start>-<parent pid>-<parent start>-<host tag>-<random>.json`: the
 * holder file of a process that a lock's holder started ({@link recordChild}). Its name says all
 * that staleness needs, as a holder file's does.
 */
const CHILD_NAME = /^child-(shared|exclusive)-(\d+)-(\d+)-(\d+)-(\d+)-([0-9a-f]{8})-[0-9a-f]+\.json$/;

/**
 * The holder a child holder file stands for, or undefined when it does not count now: while the
 * process that started the child runs, that process's own holder file says whether the lock is
 * held (and its child never blocks it); on another host neither pid can be judged, and that
 * host's holder stays anyway. A file whose child has ended is removed.
 */
async function liveChildHolder(file: string, match: RegExpExecArray): Promise<LockHolder | undefined> {
  const [, mode, pid, start, parent, parentStart, tag] = match;
  if (tag !== HOST_TAG) return undefined;
  if (endedByName(pid!, start!)) {
    await rm(file, { force: true });
    return undefined;
  }
  if (!endedByName(parent!, parentStart!)) return undefined;
  const recorded = await readHolder(file);
  const command = recorded?.command === undefined ? '' : `${recorded.command}, `;
  return {
    mode: mode as LockMode,
    pid: Number(pid),
    host: HOST,
    since: recorded?.since ?? '(not recorded: the disk was full)',
    what: `${recorded?.what ?? 'details not recorded: the disk was full'}: ${command}started by pid ${parent}, which has ended but left it running`,
    ...(start === '0' ? {} : { processStart: Number(start) }),
  };
}

/**
 * Gives a process this process starts while it holds locks a holder file in each of them (see
 * the top of this file), removed when the child exits or the lock is released. Every child of
 * the process counts, not only those started for one lock: a library caller running two
 * operations at once may then wait for a child of the other one, but never misses one that
 * still changes what a lock protects. Runs right after the fork, before anything else of this
 * process, and writes synchronously, so that the child has its file within moments of its start.
 */
function recordChild(child: ChildProcess): void {
  const pid = child.pid;
  if (pid === undefined || held.size === 0) return;
  const start = processStartTime(pid) ?? 0;
  const files: string[] = [];
  for (const lock of held.values()) {
    const file = path.join(
      lock.dir,
      `child-${lock.mode}-${pid}-${start}-${process.pid}-${OWN_START ?? 0}-${HOST_TAG}-${randomBytes(6).toString('hex')}.json`,
    );
    const content = { ...holder(lock.mode, lock.what), pid, command: child.spawnfile, ...(start === 0 ? {} : { processStart: start }) };
    try {
      writeHolderFile(file, content);
    } catch {
      // Best effort: the lock itself is held by this process's own holder file either way.
      continue;
    }
    lock.children.add(file);
    files.push(file);
  }
  child.once('exit', () => {
    for (const file of files) unpublish(file).catch(() => undefined);
  });
}

async function readHolder(file: string): Promise<LockHolder | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    // Vanished between readdir and read: released.
    return undefined;
  }
  if (text === '') return holderFromName(file);
  try {
    const parsed = JSON.parse(text) as LockHolder;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string') return undefined;
    return parsed;
  } catch {
    // Not ours: not a holder.
    return undefined;
  }
}

/** This process's start time, which tells it apart from a later process given the same pid. */
const OWN_START = processStartTime(process.pid);

/**
 * The start of a name that says which process on which host owns a file or folder:
 * `<prefix><pid>.<start time>@<host tag>-` (without `.<start time>` where /proc does not tell it).
 * Store temporaries, the git plugin's folders and the SQL plugins' secret folders use it, so that
 * a later run can remove what a killed one left ({@link leftByGoneProcess}). The start time
 * matters after a reboot: the pid of a killed run is then often another process's.
 */
export function ownedName(prefix: string): string {
  return `${prefix}${process.pid}${OWN_START === undefined ? '' : `.${OWN_START}`}@${HOST_TAG}-`;
}

/** How an owned name begins after its prefix: pid, start time and host tag (the last two optional). */
const OWNER_PATTERN = /^(\d+)(?:\.(\d+))?(?:@([0-9a-f]{8}))?-/;

/**
 * True when `name` was made by {@link ownedName}(prefix) on this host, by a process that is gone:
 * its pid is free, or belongs to a process that started at another time. Names without a host tag
 * are from older versions, made on this host as far as we know; names without a start time (older
 * versions too) count as gone only when their pid is free.
 */
export function leftByGoneProcess(name: string, prefix: string): boolean {
  if (!name.startsWith(prefix)) return false;
  const match = OWNER_PATTERN.exec(name.slice(prefix.length));
  if (match === null || (match[3] !== undefined && match[3] !== HOST_TAG)) return false;
  return processEnded(Number(match[1]), match[2] === undefined ? undefined : Number(match[2]));
}

/**
 * True when process `pid`, which started at `start` (clock ticks since boot, when known), is gone
 * on this host: its pid is free, or a process that started at another time has it now.
 */
function processEnded(pid: number, start: number | undefined): boolean {
  if (processIsGone(pid)) return true;
  const now = processStat(pid);
  // A zombie has ended; it keeps its pid only until its parent (or init) reaps it, and where the
  // killed holder's orphans are never reaped (a container without an init), that is for ever.
  if (now?.state === 'Z' || now?.state === 'X') return true;
  if (start === undefined) return false;
  return now !== undefined && now.start !== start;
}

/** {@link processEnded} for a pid and a start time as a file name gives them (`0`: not known). */
function endedByName(pid: string, start: string): boolean {
  return processEnded(Number(pid), start === '0' ? undefined : Number(start));
}

/** True when the process is known to be gone on this host (ESRCH); false when alive or unknown. */
export function processIsGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** True when the holder ran on this host and its process is gone (or its pid was reused). */
export function isStale(info: LockHolder): boolean {
  return info.host === HOST && processEnded(info.pid, info.processStart);
}

/** A process's start time in clock ticks since boot (Linux `/proc/PID/stat` field 22). */
export function processStartTime(pid: number): number | undefined {
  return processStat(pid)?.start;
}

/** A process's state letter and start time, from `/proc/PID/stat` (fields 3 and 22). */
function processStat(pid: number): { state: string; start: number | undefined } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const value = Number(fields[19]);
    return { state: fields[0] ?? '', start: Number.isFinite(value) ? value : undefined };
  } catch {
    return undefined;
  }
}

/** Waits `ms`, or less when the signal fires: the waiting loop then says what it was waiting for. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      signal?.removeEventListener('abort', aborted);
      resolve();
    }
    function aborted(): void {
      clearTimeout(timer);
      resolve();
    }
    signal?.addEventListener('abort', aborted, { once: true });
  });
}

/** Removes this process's holder files when it exits without releasing (process.exit, a signal). */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  diagnosticsChannel.subscribe('child_process', (message) => {
    const child = (message as { process?: ChildProcess }).process;
    // Published in the child's constructor, before the fork: the pid is there once the code
    // that spawned it has run, before any other event.
    if (held.size > 0 && child !== undefined) queueMicrotask(() => recordChild(child));
  });
  process.on('exit', () => {
    for (const file of published) rmSync(file, { force: true });
  });
}
