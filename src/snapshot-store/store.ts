/**
 * The snapshot store: takes snapshots through a plugin's sink and hands back the latest one.
 * See docs/snapshot-store.md for the layout and the guarantees.
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { AbortedError, DysnomiaError, IntegrityError, OperationError, messageOf } from '../core/errors.js';
import { acquireLock, withLock } from '../core/lock.js';
import { type Logger, silentLogger } from '../core/log.js';
import type { PluginSnapshotResult, SnapshotSink, SnapshotSource } from '../core/plugin.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import type { KnownSnapshot } from './chunk-processor.js';
import { damagedPacks, damageIn, recordFoundDamage, settleAsides } from './damage.js';
import { identityFor, recordFingerprint } from './fingerprint.js';
import { isDirectory, removeDeadTemps, writeFileAtomic } from './fs-util.js';
import { addGeneration, latestGeneration, listGenerations } from './generations.js';
import {
  assertIdentity,
  assertKey,
  checksumFile,
  damagedAsideDir,
  relativePath,
  snapshotDir,
  storeLockFile,
} from './layout.js';
import { holdsSnapshot, setAsideIncomplete } from './incomplete.js';
import { dysnomiaFolderHash, LegacySnapshot } from './legacy.js';
import { MANIFEST_FILE } from './manifest.js';
import { ModuleFolder, NO_SNAPSHOT_FOLDER } from './module-folder.js';
import { readManifest, StoredSnapshot } from './reader.js';
import { SnapshotWriter, type WriteTuning } from './writer.js';

export interface StoreOptions {
  log?: Logger;
  /** Bound on waiting for locks, in milliseconds (undefined: wait forever). */
  lockTimeoutMs?: number;
  /** The clock for creation and generation times (tests fake it). */
  now?: () => Date;
  /** Chunk size, compression level and pack size; the defaults suit database dumps. */
  tuning?: WriteTuning;
}

export interface WriteParams {
  /** The plugin type, recorded in the manifest. */
  type: string;
  /** An identity computed before writing; when a snapshot with it exists, `fill` is skipped. */
  naturalIdentity?: string;
  /**
   * Reads the plugin's fingerprint; undefined when it has none. It is read before `fill` would
   * start: when the last snapshot taken with a fingerprint recorded the same one, and its folder is
   * whole, `fill` is skipped. After `fill` it is read again, and recorded only if it is still the
   * same: then nothing changed while the dump ran, and the dump is the state it stands for
   * (fingerprint.ts).
   */
  fingerprint?: () => Promise<string | undefined>;
  signal?: AbortSignal;
  /** Called with the logical bytes consumed so far. */
  onProgress?: (bytes: number) => void;
}

/** What a snapshot did. */
export interface SnapshotOutcome {
  identity: string;
  /** The generation number now pointing at the snapshot. */
  generation: number;
  /** False when the latest generation already pointed at this identity (Dysnomia's rule). */
  newGeneration: boolean;
  /** False when a folder with this identity already existed. */
  newSnapshot: boolean;
  /** Logical bytes the plugin wrote. */
  bytesRead: number;
  /** Bytes newly added to the pool (after dedup and compression). */
  bytesStored: number;
  /** Absolute path of the snapshot folder. */
  path: string;
  /** True when the fingerprint showed the component unchanged, and nothing was dumped. */
  byFingerprint?: boolean;
}

/** How many recent snapshots of a component a new one deduplicates against. */
const DEDUP_DEPTH = 3;

export class SnapshotStore {
  constructor(
    readonly stateDir: string,
    readonly options: StoreOptions = {},
  ) {}

  private get log(): Logger {
    return this.options.log ?? silentLogger;
  }

  private now(): Date {
    return this.options.now?.() ?? new Date();
  }

  /**
   * Takes a snapshot of a component through `fill`, which writes its streams into the sink.
   * Resolves to undefined when `fill` wrote no stream and gave no identity (nothing to keep).
   */
  async write(
    key: ComponentKey,
    params: WriteParams,
    fill: (sink: SnapshotSink) => Promise<PluginSnapshotResult | void>,
  ): Promise<SnapshotOutcome | undefined> {
    assertKey(key);
    if (params.naturalIdentity !== undefined) assertIdentity(params.naturalIdentity);
    return this.withStoreLock('shared', `the snapshot store (snapshot of ${key.container}/${key.component})`, params.signal, async () => {
      // The fingerprint is read from the server while the store looks at itself.
      const reading = params.fingerprint?.();
      reading?.catch(() => {}); // awaited below, unless the store fails first
      const snapshots = stateLayout.snapshots(this.stateDir, key);
      await mkdirOrExplain(snapshots, this.stateDir);
      await removeDeadTemps(snapshots);
      await removeDeadTemps(stateLayout.pool(this.stateDir));
      // Read once: the write may heal (and forget) a record, and commit must still know the
      // snapshot it replaces was damaged.
      const damaged = await damagedPacks(this.stateDir);
      // A replacement of a damaged copy killed halfway: the copy is put back, and this write
      // replaces it again, without reusing its data or trusting a pack the pool has already.
      const putBack = await settleAsides(this.stateDir, key, this.log);
      const suspect = putBack.length > 0;
      const nothingRead = { newSnapshot: false, bytesRead: 0, bytesStored: 0 };
      const usable = (identity: string) => !putBack.includes(identity) && this.wholeSnapshot(key, identity, damaged);
      if (params.naturalIdentity !== undefined && (await usable(params.naturalIdentity))) {
        return this.finish(key, params.naturalIdentity, nothingRead);
      }
      const before = await reading;
      if (before !== undefined) {
        const recorded = await identityFor(this.stateDir, key, before, this.log);
        if (recorded !== undefined && (await usable(recorded))) return { ...(await this.finish(key, recorded, nothingRead)), byFingerprint: true };
      }
      const writer = new SnapshotWriter({
        stateDir: this.stateDir,
        key,
        damaged,
        suspect,
        known: await this.knownSnapshots(key, damaged, putBack),
        log: this.log,
        tuning: this.options.tuning,
        signal: params.signal,
        onProgress: params.onProgress,
      });
      try {
        const result = await fill(writer.sink);
        // Read again once the dump has ended, while the store finishes; it never rejects.
        const held = before === undefined ? Promise.resolve(false) : this.fingerprintHeld(key, before, params.fingerprint!);
        await writer.settle();
        if (params.signal?.aborted) throw new AbortedError('snapshot cancelled', { cause: params.signal.reason });
        const natural = result?.identity ?? params.naturalIdentity;
        const identity = natural ?? (writer.streams.length > 0 ? writer.contentSha256() : undefined);
        if (identity === undefined) {
          await writer.discard();
          return undefined;
        }
        assertIdentity(identity);
        await setAsideIncomplete(snapshotDir(this.stateDir, key, identity), relativePath(key, identity), this.log);
        const newSnapshot = await writer.commit({
          identity,
          identityKind: natural === undefined ? 'content' : 'natural',
          type: params.type,
          created: this.now(),
          replaceExisting: putBack.includes(identity),
        });
        const outcome = await this.finish(key, identity, {
          newSnapshot,
          bytesRead: writer.bytesRead,
          bytesStored: writer.bytesStored,
        });
        if (await held) await this.recordFingerprint(key, before!, identity);
        return outcome;
      } catch (error) {
        await writer.discard();
        throw explainWriteError(error, this.stateDir);
      }
    });
  }

  /** The snapshot the latest generation points at, or undefined when there is none. */
  async latest(key: ComponentKey): Promise<SnapshotSource | undefined> {
    assertKey(key);
    const generation = await latestGeneration(this.stateDir, key);
    if (generation === undefined) return undefined;
    const via = `generation ${generation.number} of ${key.container}/${key.component}`;
    const snapshot = await this.open(key, generation.identity, via);
    // Only the module that wrote such a folder reads it back; it restores it itself, not through here.
    if (snapshot instanceof ModuleFolder) throw snapshot.refusal(via);
    return snapshot;
  }

  /**
   * Runs `fn` with the snapshot the latest generation points at (undefined when there is none),
   * holding the store's shared lock from before the lookup until `fn` has finished. A restore
   * runs under it, so that every run takes the store lock before a lock of its own: a SQL
   * plugin's server lock is taken only inside. A restore that took the server lock first and the
   * store lock when it began to read could wait behind a queued gc, which waits for a snapshot
   * that holds the store lock and waits for that server lock.
   */
  async withLatest<T>(key: ComponentKey, fn: (source: SnapshotSource | undefined) => Promise<T>, signal?: AbortSignal): Promise<T> {
    assertKey(key);
    const held = await this.readLock(`latest generation of ${key.container}/${key.component}`, signal);
    let source: SnapshotSource | undefined;
    try {
      source = await this.latest(key);
      return await fn(source);
    } catch (error) {
      // A restore that met damaged data says so to the next snapshot, which stores it anew.
      if (source !== undefined) await recordFoundDamage(this.stateDir, source.path, error, this.log);
      throw error;
    } finally {
      await held.release();
    }
  }

  /**
   * Opens any snapshot folder of a component (ours, Dysnomia's or an external module's). `via`
   * says how it was reached, for the error when the folder is missing.
   */
  async open(key: ComponentKey, identity: string, via?: string): Promise<StoredSnapshot | LegacySnapshot | ModuleFolder> {
    const folder = snapshotDir(this.stateDir, key, identity);
    const rel = relativePath(key, identity);
    if (!(await isDirectory(folder))) {
      // An import or a snapshot that replaced a damaged copy and was killed between its two
      // renames leaves the damaged copy aside; the next one of the snapshot settles it (settleAside).
      const aside = damagedAsideDir(this.stateDir, key, identity);
      const interrupted = (await isDirectory(aside))
        ? `; a replacement of a damaged copy of it was interrupted (the damaged copy is at ${aside}): take a snapshot of the component, or import the snapshot again, to finish it`
        : '';
      throw new IntegrityError(`${via ? `${via} points at` : 'there is no'} snapshot ${rel}${via ? ', which is missing' : ''}${interrupted}`);
    }
    const guard = () => this.readLock(rel);
    if (await isFile(path.join(folder, MANIFEST_FILE))) return StoredSnapshot.load(folder, rel, guard);
    const checksum = checksumFile(this.stateDir, key, identity);
    const other = (await LegacySnapshot.load(folder, checksum, rel)) ?? (await ModuleFolder.load(folder, checksum, rel));
    if (other !== undefined) return other;
    throw new IntegrityError(`${rel} is not a snapshot: its folder is ${NO_SNAPSHOT_FOLDER}`);
  }

  /**
   * Runs `fn` under the shared store lock, or without it in a store this process cannot write (see
   * readLock); `fn` is told which, since without the lock a gc by the store's owner may remove what
   * it reads.
   */
  async withReadLock<T>(what: string, signal: AbortSignal | undefined, fn: (locked: boolean) => Promise<T>): Promise<T> {
    const held = await this.readLock(what, signal);
    try {
      return await fn(held.locked);
    } finally {
      await held.release();
    }
  }

  /**
   * The shared store lock for reading a snapshot. A store this process cannot write (a read-only
   * copy, another user's state dir) is read without it. This process cannot collect it then, but
   * the store's owner can (a nightly gc while a backup agent in the store's group reads it): a
   * snapshot no generation keeps may go while it is read.
   */
  private async readLock(rel: string, signal?: AbortSignal): Promise<{ release(): Promise<void>; locked: boolean }> {
    try {
      const held = await acquireLock(storeLockFile(this.stateDir), 'shared', {
        what: `the snapshot store (reading ${rel})`,
        timeoutMs: this.options.lockTimeoutMs,
        log: this.log,
        signal,
      });
      return { release: () => held.release(), locked: true };
    } catch (error) {
      const code = ((error as Error).cause as NodeJS.ErrnoException | undefined)?.code;
      if (code === 'EACCES' || code === 'EROFS' || code === 'EPERM') return { release: async () => {}, locked: false };
      throw error;
    }
  }

  /** Writes the checksum if missing, then applies the generation rule. */
  private async finish(
    key: ComponentKey,
    identity: string,
    counts: { newSnapshot: boolean; bytesRead: number; bytesStored: number },
  ): Promise<SnapshotOutcome> {
    await this.ensureChecksum(key, identity);
    const { generation, newGeneration } = await addGeneration(this.stateDir, key, identity, this.options.now?.());
    return { identity, generation, newGeneration, ...counts, path: snapshotDir(this.stateDir, key, identity) };
  }

  /** True when the store holds the snapshot whole: every file there, and none known to be damaged. */
  private async wholeSnapshot(key: ComponentKey, identity: string, damaged: Set<string>): Promise<boolean> {
    const folder = snapshotDir(this.stateDir, key, identity);
    if (!(await holdsSnapshot(folder))) return false;
    const damage = await damageIn(folder, damaged);
    if (damage === undefined) return true;
    this.log.warn(`${relativePath(key, identity)} is in the store but damaged (${damage}): this snapshot stores it anew`);
    return false;
  }

  /**
   * Whether the fingerprint read after the dump is `before`. A fingerprint that cannot be read now
   * (the server went away) only costs the next snapshot a dump.
   */
  private async fingerprintHeld(key: ComponentKey, before: string, read: () => Promise<string | undefined>): Promise<boolean> {
    const where = `${key.container}/${key.component}`;
    try {
      if ((await read()) === before) return true;
      this.log.debug(`${where} changed while it was dumped: its fingerprint is not recorded`);
    } catch (error) {
      this.log.debug(`cannot read the fingerprint of ${where} after the dump (${messageOf(error)}): it is not recorded`);
    }
    return false;
  }

  /**
   * After the snapshot is stored and linked: a record that cannot be written costs the next
   * snapshot a dump, and must not turn this one into a failure.
   */
  private async recordFingerprint(key: ComponentKey, fingerprint: string, identity: string): Promise<void> {
    try {
      await recordFingerprint(this.stateDir, key, fingerprint, identity);
    } catch (error) {
      this.log.warn(`cannot record the fingerprint of ${relativePath(key, identity)} (${messageOf(error)}): the next snapshot dumps the component even if it is unchanged`);
    }
  }

  /** Writes `checksums/<container>/<component>/<id>` for a snapshot folder unless it exists. */
  async ensureChecksum(key: ComponentKey, identity: string): Promise<void> {
    const file = checksumFile(this.stateDir, key, identity);
    if (await isFile(file)) return;
    const folder = snapshotDir(this.stateDir, key, identity);
    const checksum = (await isFile(path.join(folder, MANIFEST_FILE)))
      ? `sha256:${(await readManifest(folder, relativePath(key, identity))).contentSha256}`
      : await dysnomiaFolderHash(folder);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, checksum);
  }

  /** The recent snapshots of a component whose chunks a new snapshot can reuse. */
  private async knownSnapshots(key: ComponentKey, damaged: Set<string>, exclude: string[]): Promise<KnownSnapshot[]> {
    const identities: string[] = [];
    for (const generation of (await listGenerations(this.stateDir, key)).reverse()) {
      if (!identities.includes(generation.identity) && !exclude.includes(generation.identity)) identities.push(generation.identity);
      if (identities.length === DEDUP_DEPTH) break;
    }
    const known: KnownSnapshot[] = [];
    for (const identity of identities) {
      const folder = snapshotDir(this.stateDir, key, identity);
      if (!(await isFile(path.join(folder, MANIFEST_FILE)))) continue;
      try {
        const snapshot = await StoredSnapshot.load(folder, relativePath(key, identity));
        await snapshot.verifyIndexes();
        const bad = snapshot.manifest.packs.find((pack) => damaged.has(pack));
        if (bad !== undefined) {
          this.log.warn(`not reusing data of ${relativePath(key, identity)}: its pack ${bad} was found damaged; this snapshot stores that data anew`);
          continue;
        }
        known.push({
          folder,
          packs: snapshot.manifest.packs,
          indexFiles: snapshot.manifest.streams.map((stream) => path.join(folder, stream.index)),
          streamNames: snapshot.manifest.streams.map((stream) => stream.name),
          chunking: snapshot.manifest.chunking,
        });
      } catch (error) {
        // The reader's messages start with the snapshot's path already.
        const rel = relativePath(key, identity);
        this.log.warn(`not reusing data of ${rel}: ${messageOf(error).replace(`${rel}: `, '')}`);
      }
    }
    return known;
  }

  /** Runs `fn` under the store lock. */
  withStoreLock<T>(mode: 'shared' | 'exclusive', what: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    return withLock(
      storeLockFile(this.stateDir),
      mode,
      { what, timeoutMs: this.options.lockTimeoutMs, log: this.log, signal },
      fn,
    );
  }
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** Creates a store directory, or says clearly that the state dir cannot be written. */
export async function mkdirOrExplain(dir: string, stateDir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new OperationError(
      `cannot write to the state dir ${stateDir} (creating ${dir}): ${messageOf(error)}; check DYSNOMIA_STATEDIR and its permissions`,
      { cause: error },
    );
  }
}

/**
 * What an EFBIG met while writing the store means, for snapshots and imports alike: they write no
 * file but the store's, and a pack grows to 16 MiB, so a file size limit below that (ulimit -f,
 * limits.conf of a cron) stops them with an error that names no file.
 */
export function fileSizeLimitMet(stateDir: string, error: unknown): string {
  return `a file of the state dir ${stateDir} grew past the largest file this process may write (${messageOf(error)}); a pack needs up to 16 MiB: raise the file size limit (ulimit -f) of this run`;
}

/**
 * A file-system error met while writing a snapshot, as an OperationError that says what happened
 * and what to do; other errors unchanged. A full disk is the one a nightly cron meets most.
 */
export function explainWriteError(error: unknown, stateDir: string): unknown {
  const errno = error as NodeJS.ErrnoException;
  if (error instanceof DysnomiaError || !(error instanceof Error)) return error;
  if (errno.code === 'ENOSPC' || errno.code === 'EDQUOT') {
    return new OperationError(
      `the snapshot was not taken: the disk of the state dir ${stateDir} is full (${errno.message}). ` +
        'No generation was added and the earlier ones are intact; free space (dysnomia-snapshots --gc removes old generations) and try again',
      { cause: error },
    );
  }
  if (errno.code === 'EFBIG') {
    return new OperationError(
      `the snapshot was not taken: ${fileSizeLimitMet(stateDir, error)}. No generation was added and the earlier ones are intact`,
      { cause: error },
    );
  }
  // Other file-system errors only when they name a file of the state dir (a broken pipe is not one).
  if (typeof errno.path !== 'string' || !errno.path.startsWith(stateDir)) return error;
  return new OperationError(`the snapshot was not taken: cannot write to the state dir ${stateDir}: ${errno.message}`, { cause: error });
}
