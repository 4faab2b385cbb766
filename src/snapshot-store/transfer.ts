/**
 * Moving snapshots between stores: `--import PATH` (a folder copied with cp -a, scp -r or tar),
 * `--export REL` (a tar stream of the folder) and `--import -` (such a stream on stdin).
 *
 * The stream is a plain tar: first `dysnomia-export.json` (what the snapshot is and which packs
 * were left out), then the folder's files under `<identity>/`. Packs the receiver already has can
 * be left out (`have`, or `base`: a snapshot the receiver has), so moving a snapshot again after a
 * small change sends only the new packs. `tar -x` of a stream that leaves nothing out gives a
 * folder that `--import PATH` accepts.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { link, lstat, open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { DysnomiaError, IntegrityError, OperationError, UsageError, messageOf } from '../core/errors.js';
import { assertSafeName } from '../core/resolve.js';
import { acquireLock, type HeldLock } from '../core/lock.js';
import { type Logger, silentLogger } from '../core/log.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { DATA_FILE_MODE, exists, isDirectory, readdirOrEmpty, removeDeadTemps, tempName } from './fs-util.js';
import { damagedPacks, recordFoundDamage, replaceDamagedCopy, settleAside } from './damage.js';
import { addGeneration } from './generations.js';
import {
  assertIdentity,
  assertKey,
  checksumFile,
  componentLockFile,
  packFileName,
  packOfFileName,
  parseRelativePath,
  relativePath,
  snapshotDir,
  storeLockFile,
} from './layout.js';
import { dysnomiaFolderHash, LEGACY_DUMPS, legacyDumpOf, readChecksum } from './legacy.js';
import { indexFileName, MANIFEST_FILE, type Manifest } from './manifest.js';
import { readFailure, readManifest } from './reader.js';
import { holdsSnapshot } from './incomplete.js';
import { dumpWithOthers, listModuleFolder, ModuleFolder, moduleFolderEntries, NO_SNAPSHOT_FOLDER, stageModuleFolder } from './module-folder.js';
import { Staging, verifySnapshotFolder } from './staging.js';
import { fileSizeLimitMet, SnapshotStore } from './store.js';

/** Options of the imports. */
export interface ImportOptions {
  /** Container name to file the snapshot under (default: from the manifest, the stream or the path). */
  container?: string;
  /** Component name (default as for container). */
  component?: string;
  log?: Logger;
  lockTimeoutMs?: number;
  signal?: AbortSignal;
  /** The clock for the new generation's time. */
  now?: () => Date;
  /**
   * Stream imports with `container` and `component` given: called once the import holds its locks,
   * before it reads the stream. A migration within one state dir starts its export (which holds
   * the store's lock) only then, so that it never waits for the component lock while holding the
   * store's lock (see docs/snapshot-store.md, "Locks").
   */
  onLocked?: () => void;
}

/** What an import did. */
export interface ImportOutcome {
  container: string;
  component: string;
  identity: string;
  /** `container/component/identity`. */
  path: string;
  generation: number;
  newGeneration: boolean;
  /** False when the store had this snapshot already, intact (a damaged copy is replaced: true). */
  newSnapshot: boolean;
  /** Packs copied into the pool, and their bytes. */
  packsReceived: number;
  bytesReceived: number;
  /** Packs the pool had already (linked, not copied). */
  packsLinked: number;
}

/** Options of {@link exportSnapshot}. */
export interface ExportOptions {
  /** Pack hashes the receiver has (from its {@link listPoolPacks}); they are left out. */
  have?: Iterable<string>;
  /** A snapshot (`container/component/id`) the receiver has; the packs it links are left out. */
  base?: string;
  log?: Logger;
  lockTimeoutMs?: number;
  signal?: AbortSignal;
}

/** What an export sent. */
export interface ExportOutcome {
  path: string;
  identity: string;
  packsSent: number;
  packsOmitted: number;
  /** Bytes of file content in the stream. */
  bytesSent: number;
}

const EXPORT_HEADER = 'dysnomia-export.json';
const EXPORT_FORMAT = 'dysnomia-export';
const MAX_HEADER = 1024 * 1024;

interface ExportHeader {
  format: typeof EXPORT_FORMAT;
  version: 1;
  container: string;
  component: string;
  identity: string;
  /** Packs the manifest lists that the stream does not carry. */
  omittedPacks: string[];
  /**
   * The SHA-256 of the fields above that name things ({@link headerSha256}); streams of versions
   * before it have none. The names are the sender's, which are not always its manifest's (a
   * snapshot imported with -C/-c keeps the names it was taken under in its manifest), so only
   * this tells a header damaged on its way from one that names the snapshot as its sender files it.
   */
  sha256?: string;
}

function headerSha256(header: Pick<ExportHeader, 'container' | 'component' | 'identity' | 'omittedPacks'>): string {
  const fields = [header.container, header.component, header.identity, header.omittedPacks];
  return createHash('sha256').update(JSON.stringify(fields)).digest('hex');
}

/** The hashes of every pack in a store's pool (what a receiver tells a sender it has). */
export async function listPoolPacks(stateDir: string): Promise<string[]> {
  const pool = stateLayout.pool(stateDir);
  // A pack recorded as damaged is not offered: a sender leaves out what the receiver lists, and
  // this one the receiver needs sent, to heal it.
  const damaged = await damagedPacks(stateDir);
  const packs: string[] = [];
  for (const fanout of (await readdirOrEmpty(pool)).sort()) {
    if (fanout.startsWith('.')) continue;
    for (const name of (await readdirOrEmpty(path.join(pool, fanout))).sort()) {
      const pack = packOfFileName(name);
      if (pack !== undefined && !damaged.has(pack)) packs.push(pack);
    }
  }
  return packs;
}

/** Takes the component lock, then the shared store lock, and runs `fn`. */
async function withImportLocks<T>(stateDir: string, key: ComponentKey, options: ImportOptions, fn: () => Promise<T>): Promise<T> {
  const lockOptions = { timeoutMs: options.lockTimeoutMs, log: options.log, signal: options.signal };
  const held: HeldLock[] = [];
  try {
    held.push(
      await acquireLock(componentLockFile(stateDir, key), 'exclusive', {
        ...lockOptions,
        what: `component ${key.container}/${key.component} (import)`,
      }),
    );
    held.push(
      await acquireLock(storeLockFile(stateDir), 'shared', {
        ...lockOptions,
        what: `the snapshot store (import into ${key.container}/${key.component})`,
      }),
    );
    // What killed imports and snapshots of this component left, as a snapshot removes it: a
    // machine that only receives transfers would otherwise fill up with half-received folders.
    await removeDeadTemps(stateLayout.snapshots(stateDir, key));
    await removeDeadTemps(stateLayout.pool(stateDir));
    return await fn();
  } finally {
    for (const lock of held.reverse()) await lock.release();
  }
}

/** Checksum and generation for a snapshot that is in place. */
async function finishImport(
  stateDir: string,
  key: ComponentKey,
  identity: string,
  options: ImportOptions,
  counts: Pick<ImportOutcome, 'newSnapshot' | 'packsReceived' | 'bytesReceived' | 'packsLinked'>,
): Promise<ImportOutcome> {
  const store = new SnapshotStore(stateDir, { log: options.log });
  let generation: number;
  let newGeneration: boolean;
  try {
    await store.ensureChecksum(key, identity);
    const time = await generationTime(snapshotDir(stateDir, key, identity), options.now?.() ?? new Date());
    ({ generation, newGeneration } = await addGeneration(stateDir, key, identity, time));
  } catch (error) {
    // The snapshot is in place by now: "nothing was imported" would be untrue.
    throw new OperationError(
      `${relativePath(key, identity)} is in the store, but its checksum file or generation link could not be written (${messageOf(error)}); fix that (a full disk: dysnomia-snapshots --gc) and import again, which adds only what is missing`,
      { cause: error },
    );
  }
  return {
    container: key.container,
    component: key.component,
    identity,
    path: relativePath(key, identity),
    generation,
    newGeneration,
    ...counts,
  };
}

/**
 * The time of an imported snapshot's generation: when the snapshot was taken (its manifest's
 * `created`), so that a history moved to another machine keeps its dates and `--gc --keep-daily`
 * there keeps what it kept here. With the import's time instead, a whole migrated history looked
 * one day old, and the first time-based gc kept one snapshot of it. A Dysnomia folder (no manifest)
 * or a time in the future (another machine's clock) gives `now`.
 */
async function generationTime(folder: string, now: Date): Promise<Date> {
  const created = await readManifest(folder, folder).then(
    (manifest) => new Date(manifest.created),
    () => undefined,
  );
  return created !== undefined && !Number.isNaN(created.getTime()) && created < now ? created : now;
}

/** Container and component from `.../snapshots/<container>/<component>/<id>`, if the path has that form. */
function keyFromPath(folder: string): Partial<ComponentKey> {
  const parts = folder.split(path.sep);
  if (parts.length >= 4 && parts[parts.length - 4] === 'snapshots') {
    return { container: parts[parts.length - 3], component: parts[parts.length - 2] };
  }
  return {};
}

function chooseKey(options: ImportOptions, ...sources: Partial<ComponentKey>[]): ComponentKey {
  const container = options.container ?? sources.find((s) => s.container)?.container;
  const component = options.component ?? sources.find((s) => s.component)?.component;
  if (container === undefined || component === undefined) {
    throw new UsageError(
      `cannot tell which ${container === undefined ? 'container' : 'component'} the snapshot belongs to; give -C CONTAINER and -c COMPONENT`,
    );
  }
  return assertKey({ container, component });
}

/**
 * The store's copy of the snapshot an import brings: none, intact, or damaged (and how); `module`
 * when it is a folder written by an external module.
 */
type StoredCopy = { state: 'absent' } | { state: 'intact'; module: boolean } | { state: 'damaged'; problem: string; module: boolean };

/**
 * True when an integrity error comes from failing to read (EACCES, EIO, EMFILE), not from what was
 * read or found missing: that says nothing about the copy, which must then not be replaced.
 */
function isReadFailure(error: unknown): boolean {
  for (let cause = (error as Error).cause; cause !== undefined && cause !== null; cause = (cause as Error).cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code !== 'ENOENT' && code !== 'ENOTDIR' && /^E[A-Z]+$/.test(code)) return true;
  }
  return false;
}

/**
 * Checks the store's copy of the snapshot being imported before the import trusts it: a damaged
 * copy that an import took for "the store has it already" would make every restore of it fail,
 * with no way to repair it by importing a good copy. The check is the one an import applies to
 * what it receives, so it costs a read of all the copy's data, where an import of a snapshot the
 * store had used to read none of it: about what importing the snapshot anew costs. Imports are
 * rare and read (or receive) their source in full anyway.
 * What was read and found wrong, or found missing, counts as damage (the copy is then replaced by
 * one verified the same way); an error reading it (EACCES, EIO, no xz) is thrown, since it says
 * nothing about the copy.
 */
async function checkStoredCopy(stateDir: string, key: ComponentKey, identity: string, log: Logger): Promise<StoredCopy> {
  await settleAside(stateDir, key, identity, log);
  const target = snapshotDir(stateDir, key, identity);
  if (!(await isDirectory(target))) return { state: 'absent' };
  const rel = relativePath(key, identity);
  // What a gc of an older version killed halfway leaves is said so, as the writer says it.
  const incomplete = !(await holdsSnapshot(target));
  const module = (await moduleFolderEntries(target)) !== undefined;
  try {
    await verifySnapshotFolder(target, rel, identity, checksumFile(stateDir, key, identity));
  } catch (error) {
    if (!(error instanceof IntegrityError) || isReadFailure(error)) throw error;
    // Other snapshots may link the same pack: the next snapshots of their components heal it.
    await recordFoundDamage(stateDir, target, error, log);
    const what = messageOf(error).replace(`${rel}: `, '').replace(/; the snapshot is damaged$/, '');
    return { state: 'damaged', problem: incomplete ? `not a complete snapshot: ${what}` : what, module };
  }
  return incomplete ? { state: 'damaged', problem: 'not a complete snapshot', module } : { state: 'intact', module };
}

/**
 * Refuses an import when the store holds a different snapshot under the same name. A module names
 * its folders itself (Subversion's by the revision number), so two different folders can share a
 * name: one whose content differs from the store's copy must neither be taken for "the store has
 * it already" nor replace it. `incoming` is the module folder being imported (undefined for ours
 * and Dysnomia's, whose names are their content's hash); a damaged module copy is compared with
 * the staged folder by {@link refuseOtherDamagedModule}.
 */
async function refuseOtherSnapshot(stored: StoredCopy, target: string, incoming: string | undefined, where: string, rel: string): Promise<void> {
  if (stored.state === 'absent' || (incoming === undefined && !stored.module)) return;
  let why: string | undefined;
  if (!stored.module) {
    // A damaged copy of our format or an incomplete folder is replaced by an import of its kind,
    // never by a module's folder that happens to have its name.
    const kind = (await legacyDumpOf(target)) === undefined ? "this store's own format" : "Dysnomia's (a database dump)";
    if (stored.state === 'intact') why = `the store's copy is a snapshot of ${kind}`;
    else why = `the store's copy is a damaged snapshot of ${kind} (${stored.problem}), which only a copy of that snapshot replaces`;
  } else if (incoming === undefined) {
    why = "the store's copy is a folder written by an external module";
  } else if (stored.state === 'intact') {
    // In name order: a copy written in another order holds the same content all the same.
    const [mine, theirs] = [await dysnomiaFolderHash(target, { sorted: true }), await dysnomiaFolderHash(incoming, { sorted: true })];
    if (mine !== theirs) why = `its content differs from the folder's (${mine} in the store, ${theirs} in the folder, entries in name order)`;
  }
  if (why !== undefined) throw conflict(where, rel, why, incoming !== undefined);
}

/** For a damaged module copy: the staged folder replaces it only when it is what the copy's checksum file recorded. */
async function refuseOtherDamagedModule(stored: StoredCopy, staged: string, checksum: string, where: string, rel: string): Promise<void> {
  if (stored.state !== 'damaged' || !stored.module) return;
  const recorded = await readChecksum(checksum);
  const actual = await dysnomiaFolderHash(staged);
  if (recorded !== actual) {
    throw conflict(where, rel, `the store's copy is damaged (${stored.problem}), and the folder is not the one its checksum file records either (${actual})`, true);
  }
}

function conflict(where: string, rel: string, why: string, fromFolder: boolean): OperationError {
  const keepBoth = fromFolder ? ' (to keep both, import a copy of the folder under another name)' : '';
  return new OperationError(
    `${where}: the store has a different snapshot under the name ${rel}: ${why}. A module names its snapshot folders itself, so two snapshots can share a name; nothing was imported${keepBoth}`,
  );
}

/**
 * Puts a verified import in place. When the store's copy is damaged, the import's packs go into
 * the pool first, then the imported folder replaces the damaged one ({@link replaceDamagedCopy});
 * finishImport writes the new copy's checksum.
 */
async function commitImport(
  stateDir: string,
  staging: Staging,
  key: ComponentKey,
  identity: string,
  stored: StoredCopy,
  log: Logger,
): Promise<boolean> {
  if (stored.state !== 'damaged') return staging.commit(identity, log);
  await staging.pool(log);
  let committed = true;
  await replaceDamagedCopy(stateDir, key, identity, async () => {
    committed = await staging.publish(identity);
  }, log);
  if (!committed) return false;
  log.warn(`snapshot ${relativePath(key, identity)} in the store was damaged (${stored.problem}); replaced it with the imported copy`);
  return true;
}

/**
 * `--import PATH`: copies a snapshot folder (ours, Dysnomia's, or any other: an external module's,
 * copied as it is) into the store, verified before it is accepted. Packs the pool has intact are
 * linked, not copied. A copy the store has already is kept when it verifies, else replaced (see
 * {@link checkStoredCopy}); a different snapshot of the same name is refused
 * ({@link refuseOtherSnapshot}). The source folder is left as it was.
 *
 * A store that has the snapshot intact still verifies the source folder as an import of it would,
 * as `--import -` verifies its stream: taken for "the store has it already" unread, a damaged copy
 * (a pack truncated or with a flipped byte, a chunk index missing or not the manifest's) passed with
 * exit 0, and whoever copied it never learnt that it is bad. The folder's packs are hashed, not
 * written again (the store's copies, the same when the hashes agree, stand in for them); a Dysnomia
 * dump is verified where it is. A module folder was read in full already, and compared with the
 * store's copy, by {@link refuseOtherSnapshot}.
 */
export async function importSnapshotFolder(stateDir: string, folder: string, options: ImportOptions = {}): Promise<ImportOutcome> {
  const source = path.resolve(folder);
  if (!(await isDirectory(source))) throw new UsageError(`cannot import ${folder}: it is not a folder`);
  const hasManifest = (await lstat(path.join(source, MANIFEST_FILE)).catch(() => undefined)) !== undefined;
  const legacyDump = hasManifest ? undefined : await legacyDumpOf(source);
  // Anything else is a folder an external module wrote (Dysnomia moved any folder into its store).
  const moduleEntries = hasManifest || legacyDump !== undefined ? undefined : await moduleFolderEntries(source);
  if (!hasManifest && legacyDump === undefined && moduleEntries === undefined) {
    throw new UsageError(
      `cannot import ${folder}: it is not a snapshot folder (it is ${NO_SNAPSHOT_FOLDER})`,
    );
  }
  const listing = moduleEntries === undefined ? undefined : await listModuleFolder(source, folder);
  const manifest = hasManifest ? await readManifest(source, `cannot import ${folder}`) : undefined;
  const key = chooseKey(options, manifest ?? {}, keyFromPath(source));
  const identity = assertIdentity(manifest?.identity ?? path.basename(source));
  // Dysnomia names a database snapshot by the SHA-256 of its dump, which is what a folder of its
  // format is checked against: a renamed folder could not be, and would be filed unchecked.
  if (legacyDump !== undefined && !/^[0-9a-f]{64}$/.test(identity)) {
    throw new UsageError(
      `cannot import ${folder}: a Dysnomia snapshot folder is named by the SHA-256 of its ${legacyDump}, and ${JSON.stringify(identity)} is not one; give the folder its original name (sha256sum ${legacyDump} prints it); nothing was imported`,
    );
  }
  const where = `cannot import ${folder}`;
  const stray = moduleEntries === undefined ? undefined : dumpWithOthers(moduleEntries);
  if (stray !== undefined) {
    options.log?.warn(`importing ${folder} as a folder written by an external module, which only that module restores: ${stray}, and import it again`);
  }
  return withImportLocks(stateDir, key, options, async () => {
    const counts = { packsReceived: 0, bytesReceived: 0, packsLinked: 0 };
    const stored = await checkStoredCopy(stateDir, key, identity, options.log ?? silentLogger);
    const rel = relativePath(key, identity);
    const target = snapshotDir(stateDir, key, identity);
    await refuseOtherSnapshot(stored, target, listing && source, where, rel);
    const known = stored.state === 'intact' ? target : undefined;
    const hasIt = () => finishImport(stateDir, key, identity, options, { newSnapshot: false, ...counts });
    if (known !== undefined && manifest === undefined) {
      if (listing === undefined) await verifySnapshotFolder(source, where, identity).catch((error: unknown) => keptIntact(error, known));
      return hasIt();
    }
    const staging = await Staging.create(stateDir, key);
    try {
      if (manifest !== undefined) {
        await stageFiles(staging, source, manifest, where, known);
      } else if (listing !== undefined) {
        await stageModuleFolder(staging, source, listing);
      } else {
        await staging.addFile(legacyDump!, createReadStream(path.join(source, legacyDump!)));
      }
      await staging.verify(where, identity);
      if (known !== undefined) {
        await staging.discard();
        return await hasIt();
      }
      await refuseOtherDamagedModule(stored, staging.folder, checksumFile(stateDir, key, identity), where, rel);
      return await commitStaged(stateDir, staging, key, identity, stored, options);
    } catch (error) {
      await staging.discard();
      return keptIntact(explainImportError(error, stateDir), known);
    }
  });
}

/**
 * Rethrows a failed import of a snapshot the store has intact (`known`: its folder), saying that
 * the store's copy stays as it was: the failure is the source's, not the store's.
 */
function keptIntact(error: unknown, known: string | undefined): never {
  if (known !== undefined && error instanceof IntegrityError && !messageOf(error).includes("the store's copy")) {
    throw new IntegrityError(`${messageOf(error)}; the store's copy of the snapshot is intact and stays as it was`, { cause: error });
  }
  throw error;
}

/** Puts a verified import in place and files its generation, counting what it brought. */
async function commitStaged(
  stateDir: string,
  staging: Staging,
  key: ComponentKey,
  identity: string,
  stored: StoredCopy,
  options: ImportOptions,
): Promise<ImportOutcome> {
  const newSnapshot = await commitImport(stateDir, staging, key, identity, stored, options.log ?? silentLogger);
  return finishImport(stateDir, key, identity, options, {
    newSnapshot,
    packsReceived: newSnapshot ? staging.packsReceived : 0,
    bytesReceived: newSnapshot ? staging.bytesReceived : 0,
    packsLinked: staging.packsLinked,
  });
}

/**
 * Stages the files of our snapshot folder `source`. With `known` (the store's intact folder of the
 * same snapshot), a pack the folder carries is hashed and the store's copy linked in its place
 * ({@link receiveKnownPack}), as `--import -` does with the packs of its stream.
 */
async function stageFiles(staging: Staging, source: string, manifest: Manifest, where: string, known?: string): Promise<void> {
  const required = [MANIFEST_FILE, ...manifest.streams.map((_, position) => indexFileName(position))];
  // Checked first, so that a folder missing one says so instead of failing on a raw ENOENT.
  for (const name of required) {
    const info = await stat(path.join(source, name)).catch(() => undefined);
    if (info === undefined || !info.isFile()) {
      throw new IntegrityError(`cannot import ${source}: its file ${name} is missing, so it is not a complete snapshot folder; nothing was imported`);
    }
  }
  for (const name of required) await staging.addFile(name, createReadStream(path.join(source, name)));
  for (const pack of new Set(manifest.packs)) {
    const file = path.join(source, packFileName(pack));
    const carried = (await stat(file).catch(() => undefined)) !== undefined;
    if (carried && known !== undefined && (await exists(path.join(known, packFileName(pack))))) {
      await receiveKnownPack(staging, createReadStream(file), pack, path.join(known, packFileName(pack)), (actual) =>
        `${where}: its file ${packFileName(pack)} is damaged (its content hashes to ${actual}, not to its name); nothing was imported`,
      );
      continue;
    }
    // A pack the folder carries is linked from the pool only when the pool's copy is intact;
    // otherwise the folder's copy is taken and replaces the pool's on commit, as `--import -` does.
    if (carried ? await staging.hasIntactInPool(pack) : await staging.hasInPool(pack)) {
      await staging.linkFromPool(pack);
      continue;
    }
    if (!carried) {
      throw new IntegrityError(`cannot import ${source}: pack ${pack} is missing from the folder (and this store does not have it)`);
    }
    await staging.addFile(packFileName(pack), createReadStream(file), pack);
  }
}

/**
 * `--export REL`: writes a tar stream of a snapshot folder to `out` (and ends it), leaving out the
 * packs the receiver has (see {@link ExportOptions}).
 */
export async function exportSnapshot(stateDir: string, rel: string, out: Writable, options: ExportOptions = {}): Promise<ExportOutcome> {
  const { key, identity } = parseRelativePath(rel);
  // Asked before the lock, whose file would otherwise make the state dir (locks/store.lock) for a
  // usage error, even one that does not exist; asked again under the lock, which a gc may precede.
  const noSuchSnapshot = () => new UsageError(`there is no snapshot ${rel} in ${stateDir}; see --query-all for the snapshots it has`);
  const noSuchBase = () => new UsageError(`--base ${options.base}: there is no such snapshot in ${stateDir}`);
  const base = options.base === undefined ? undefined : parseRelativePath(options.base);
  if (!(await isDirectory(snapshotDir(stateDir, key, identity)))) throw noSuchSnapshot();
  if (base !== undefined && !(await isDirectory(snapshotDir(stateDir, base.key, base.identity)))) throw noSuchBase();
  const store = new SnapshotStore(stateDir, { log: options.log, lockTimeoutMs: options.lockTimeoutMs });
  // Read as a restore reads: a store this user cannot write (another user's, a read-only copy)
  // exports all the same, without the store lock. Its owner's gc is then not held off, and a file
  // it removes meanwhile is said as that, not as damage or a failure of the output.
  return store.withReadLock(`${rel} for export`, options.signal, async (locked) => {
    const removedMeanwhile = (error: unknown, name: string): OperationError | undefined =>
      !locked && (error as NodeJS.ErrnoException).code === 'ENOENT'
        ? new OperationError(
            `cannot export ${rel}: its file ${name} was removed while it was being exported; this user cannot write the store's lock, so the export does not hold off a gc by the store's owner, which removes snapshots no generation keeps. ` +
              'What was sent is cut short, and an --import of it refuses it: export a snapshot the gc keeps (see --query-latest), or export as a user who can write the store lock (locks/store.lock)',
            { cause: error },
          )
        : undefined;
    const folder = snapshotDir(stateDir, key, identity);
    if (!(await isDirectory(folder))) throw noSuchSnapshot();
    const omit = new Set<string>(options.have ?? []);
    if (base !== undefined) {
      const baseFolder = snapshotDir(stateDir, base.key, base.identity);
      if (!(await isDirectory(baseFolder))) throw noSuchBase();
      for (const name of await readdir(baseFolder)) {
        const pack = packOfFileName(name);
        if (pack !== undefined) omit.add(pack);
      }
    }
    const files: { name: string; file: string; size: number }[] = [];
    const omitted: string[] = [];
    const addFile = async (name: string) => {
      const file = path.join(folder, name);
      // Opened, not only looked at: a file this user may not read (snapshot data is not readable
      // by other users) fails here, said as such, and not halfway through the stream, where it
      // read as a failure of the output.
      let size: number;
      try {
        const handle = await open(file, 'r');
        try {
          size = (await handle.stat()).size;
        } finally {
          await handle.close();
        }
      } catch (error) {
        throw removedMeanwhile(error, name) ?? readFailure(error, file, `cannot export ${rel}: its file ${name} cannot be read (${messageOf(error)}); the snapshot is damaged, see dysnomia-snapshots --check`);
      }
      files.push({ name, file, size });
    };
    if ((await lstat(path.join(folder, MANIFEST_FILE)).catch(() => undefined)) !== undefined) {
      const manifest = await readManifest(folder, rel);
      await addFile(MANIFEST_FILE);
      for (const stream of manifest.streams) await addFile(stream.index);
      for (const pack of new Set(manifest.packs)) {
        if (omit.has(pack)) omitted.push(pack);
        else await addFile(packFileName(pack));
      }
    } else {
      const dump = await legacyDumpOf(folder);
      if (dump === undefined && (await ModuleFolder.load(folder, undefined, rel)) !== undefined) {
        throw new OperationError(
          `cannot export ${rel}: it is a folder written by an external module, which the export stream does not carry; copy the folder instead (cp -r "$(dysnomia-snapshots --resolve ${rel})" …) and --import it on the other side; nothing was exported`,
        );
      }
      if (dump === undefined) throw new IntegrityError(`${rel} is not a snapshot folder; nothing to export`);
      await addFile(dump);
    }
    const header: ExportHeader = {
      format: EXPORT_FORMAT,
      version: 1,
      container: key.container,
      component: key.component,
      identity,
      omittedPacks: omitted,
    };
    header.sha256 = headerSha256(header);
    const pack = tar.pack();
    // The reader can go away at any time (`--export | ssh host ...` with ssh dying): its error
    // must end the export with a message, not wait unheard while an entry waits for room.
    const writing = pipeline(pack, out).catch((error: unknown) => {
      throw new OperationError(`export of ${rel} stopped: its output cannot be written (${messageOf(error)}); the receiving side got an incomplete stream, which an import refuses`, {
        cause: error,
      });
    });
    const failure = writing.then(() => new Promise<never>(() => {}));
    failure.catch(() => {}); // raced below; this only keeps an unused one quiet
    try {
      await Promise.race([addEntry(pack, EXPORT_HEADER, Buffer.from(`${JSON.stringify(header, null, 2)}\n`)), failure]);
      for (const entry of files) {
        if (options.signal?.aborted) throw new OperationError(`export of ${rel} cancelled`);
        await Promise.race([
          addStreamEntry(pack, `${identity}/${entry.name}`, entry.size, createReadStream(entry.file)).catch((error: unknown) => {
            throw removedMeanwhile(error, entry.name) ?? error;
          }),
          failure,
        ]);
      }
      pack.finalize();
    } catch (error) {
      pack.destroy(error as Error);
      await writing.catch(() => {});
      throw error;
    }
    await writing;
    return {
      path: rel,
      identity,
      packsSent: files.filter((entry) => packOfFileName(entry.name) !== undefined).length,
      packsOmitted: omitted.length,
      bytesSent: files.reduce((sum, entry) => sum + entry.size, 0),
    };
  });
}

function addEntry(pack: tar.Pack, name: string, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: data.length, mode: 0o644, mtime: new Date(0) }, data, (error) => (error ? reject(error) : resolve()));
  });
}

async function addStreamEntry(pack: tar.Pack, name: string, size: number, data: Readable): Promise<void> {
  let done!: (error?: Error | null) => void;
  const finished = new Promise<void>((resolve, reject) => {
    done = (error) => (error ? reject(error) : resolve());
  });
  finished.catch(() => {}); // awaited below, unless the pipeline fails first
  const entry = pack.entry({ name, size, mode: DATA_FILE_MODE, mtime: new Date(0) }, done);
  await pipeline(data, entry);
  await finished;
}

/**
 * `--import -`: reads a stream made by {@link exportSnapshot} and imports it like a folder. Packs
 * the stream leaves out must be in this store's pool, or the import fails and changes nothing.
 */
export async function importSnapshotStream(stateDir: string, input: Readable, options: ImportOptions = {}): Promise<ImportOutcome> {
  const extract = tar.extract();
  const ending = new StreamEnding();
  const feeding = pipeline(input, ending.counter, extract).catch((error: unknown) => {
    extract.destroy(error as Error);
  });
  const entries = extract[Symbol.asyncIterator]();
  const readHeader = async () => {
    const first = await entries.next();
    if (first.done) {
      // Nothing at all: in `--export ... | --import -` the sending side failed (its error is above).
      throw new IntegrityError(`the input is empty: no snapshot stream arrived (when it comes from dysnomia-snapshots --export, that side failed; see its message)`);
    }
    if (first.value.header.name !== EXPORT_HEADER) {
      first.value.resume();
      throw new UsageError(`the input is not a snapshot stream made by dysnomia-snapshots --export (it does not start with ${EXPORT_HEADER})`);
    }
    return parseHeader(await readSmall(first.value as AsyncIterable<Buffer>, MAX_HEADER));
  };
  try {
    // With the target named, its locks come before the first byte is read, and onLocked says so;
    // otherwise the header names it. A state dir that does not exist yet has no export running
    // from it to wait for (without onLocked, nobody waits for the locks): the header comes first
    // there too, so that an empty or foreign input does not create the state dir for its locks.
    const named =
      options.container !== undefined && options.component !== undefined && (options.onLocked !== undefined || (await exists(stateDir)));
    const outcome = named
      ? await withImportLocks(stateDir, chooseKey(options), options, async () => {
          options.onLocked?.();
          return importStream(stateDir, entries, chooseKey(options), await readHeader(), options, ending);
        })
      : await readHeader().then((header) => {
          const key = chooseKey(options, header);
          return withImportLocks(stateDir, key, options, () => importStream(stateDir, entries, key, header, options, ending));
        });
    await feeding;
    return outcome;
  } catch (error) {
    extract.destroy();
    input.resume();
    const explained = explainImportError(error, stateDir);
    if (explained instanceof DysnomiaError) throw explained;
    // tar-stream's words for an input that stops inside an entry, by where it stops.
    const endedEarly = /^(Unexpected end of data|Stream was destroyed|Premature close)$/.test(messageOf(error));
    const said = endedEarly ? 'it ends in the middle of a file' : messageOf(error);
    throw new IntegrityError(
      `cannot read the snapshot stream: ${said}; it was cut short or damaged on its way (a failed or interrupted --export, or not one at all); nothing was imported`,
      { cause: error },
    );
  }
}

/**
 * A full disk met while importing, as an OperationError that says so: the import's writes fail
 * with ENOSPC, which is the store's disk, not the stream or the folder being read. The same for a
 * file size limit (EFBIG) and for other failures on the store's files.
 */
function explainImportError(error: unknown, stateDir: string): unknown {
  if (error instanceof DysnomiaError) return error;
  const { code, path: file } = error as NodeJS.ErrnoException;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new OperationError(
      `the disk of the state dir ${stateDir} is full (${messageOf(error)}); nothing was imported and the store is as it was: free space (dysnomia-snapshots --gc removes old generations) and import again`,
      { cause: error },
    );
  }
  // Read as the input's, it blamed the stream.
  if (code === 'EFBIG') {
    return new OperationError(`${fileSizeLimitMet(stateDir, error)}; nothing was imported and the store is as it was`, { cause: error });
  }
  // Any other failure on a file of the store (EACCES, EROFS, EIO) is the store's, not the input's.
  if (typeof file === 'string' && path.resolve(file).startsWith(`${path.resolve(stateDir)}${path.sep}`)) {
    return new OperationError(`cannot write to the state dir ${stateDir} (${messageOf(error)}); nothing was imported and the store is as it was`, {
      cause: error,
    });
  }
  return error;
}

/** The part of {@link importSnapshotStream} after its header, under the import's locks. */
async function importStream(
  stateDir: string,
  entries: ReturnType<tar.Extract[typeof Symbol.asyncIterator]>,
  key: ComponentKey,
  header: ExportHeader,
  options: ImportOptions,
  ending: StreamEnding,
): Promise<ImportOutcome> {
  const identity = header.identity; // checked by parseHeader
  const where = `cannot import the stream of ${relativePath(key, identity)}`;
  const stored = await checkStoredCopy(stateDir, key, identity, options.log ?? silentLogger);
  const target = snapshotDir(stateDir, key, identity);
  await refuseOtherSnapshot(stored, target, undefined, where, relativePath(key, identity));
  // A store that has the snapshot intact still reads and verifies the whole stream: taken for
  // "the store has it already" unread, a stream cut short or damaged on its way passed (exit 0), and
  // the sender never learnt that its copy, or the transport, is bad. The packs the store's copy
  // holds are hashed as they arrive and linked from it, not written again.
  const known = stored.state === 'intact' ? target : undefined;
  const staging = await Staging.create(stateDir, key);
  try {
    let files = 0;
    let manifest: Manifest | undefined;
    const carried = new Set<string>();
    for (let next = await entries.next(); !next.done; next = await entries.next()) {
      const entry = next.value;
      const name = entryName(entry.header, identity, where);
      const pack = packOfFileName(name);
      if (pack !== undefined && known !== undefined && (await exists(path.join(known, name)))) {
        await receiveKnownPack(staging, entry as AsyncIterable<Uint8Array>, pack, path.join(known, name), (actual) =>
          `${where}: the stream's copy of pack ${pack} is damaged (its content hashes to ${actual}): it was damaged on its way; nothing was imported`,
        );
      } else {
        await staging.addFile(name, entry as AsyncIterable<Uint8Array>, pack);
      }
      if (pack !== undefined) carried.add(pack);
      files += 1;
      ending.entryEnds(entry.header);
      // The manifest comes first: a header that disagrees with it is refused before the packs.
      if (name === MANIFEST_FILE) {
        manifest = await readManifest(staging.folder, where);
        refuseHeaderMismatch(header, manifest, options, where);
      }
    }
    if (files === 0) {
      throw new IntegrityError(`${where}: the stream ended before the first of the snapshot's files; was the export cut short (a failed or interrupted --export)? Nothing was imported`);
    }
    if (!ending.complete()) {
      throw new IntegrityError(
        `${where}: the stream ends after its file ${ending.lastName} without the end of the tar archive, so it seems cut short (a failed or interrupted --export, or a transfer that stopped); nothing was imported${known === undefined ? '' : "; the store's copy is intact and stays as it was"}`,
      );
    }
    refuseStrayOmitted(header, manifest, carried, where);
    for (const pack of header.omittedPacks) {
      if (!(await staging.hasInPool(pack))) {
        throw new IntegrityError(
          `${where}: the stream leaves out pack ${pack}, which this store does not have; export again without --have/--base, or with --have listing this store's packs (--list-packs)`,
        );
      }
      await staging.linkFromPool(pack);
    }
    await staging.verify(where, identity).catch((error: unknown) => explainOmitted(error, staging, header.omittedPacks, where));
    if (known !== undefined) {
      await staging.discard();
      return await finishImport(stateDir, key, identity, options, { newSnapshot: false, packsReceived: 0, bytesReceived: 0, packsLinked: 0 });
    }
    return await commitStaged(stateDir, staging, key, identity, stored, options);
  } catch (error) {
    await staging.discard();
    return keptIntact(error, known);
  }
}

/**
 * A pack of a stream or folder whose snapshot the store has intact: its bytes are hashed as they
 * arrive, not written, and the store's copy (`file`, which is the same when the hashes agree) is
 * linked into the staged folder for verification. `damaged` says a copy that hashes to `actual`.
 */
async function receiveKnownPack(
  staging: Staging,
  data: AsyncIterable<Uint8Array>,
  pack: string,
  file: string,
  damaged: (actual: string) => string,
): Promise<void> {
  const hash = createHash('sha256');
  for await (const piece of data) hash.update(piece);
  const actual = hash.digest('hex');
  if (actual !== pack) throw new IntegrityError(damaged(actual));
  try {
    await link(file, path.join(staging.folder, packFileName(pack)));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new IntegrityError(`the snapshot brings its file ${packFileName(pack)} twice; nothing was imported`, { cause: error });
    // fs.protected_hardlinks lets only a file's owner (or a user who may write it) link it: a
    // member of the store's group copies the pack, which it may read, instead.
    if (code !== 'EPERM' && code !== 'EACCES') throw error;
    await staging.addFile(packFileName(pack), createReadStream(file), pack);
  }
}

/**
 * Whether a stream ends as `--export` ends it: after its last file, the end of the tar archive
 * (two 512-byte blocks of zeros). tar-stream takes a stream that stops exactly after a file for a
 * complete one; an import of it then failed on whatever that file was missing (`pack … is missing`,
 * or nothing at all into a store that had the snapshot).
 */
class StreamEnding {
  private total = 0;
  private tail = Buffer.alloc(0);
  private lastEnd: number | undefined;
  lastName = '';

  /** Counts what passes from the input to the tar reader. */
  readonly counter = new Transform({
    transform: (chunk: Buffer, _encoding, done) => {
      this.total += chunk.length;
      this.tail = chunk.length >= END_OF_ARCHIVE ? Buffer.from(chunk.subarray(-END_OF_ARCHIVE)) : Buffer.concat([this.tail, chunk]).subarray(-END_OF_ARCHIVE);
      done(null, chunk);
    },
  });

  /** Records where an entry (its data padded to 512 bytes) ends in the input. */
  entryEnds(header: tar.Header): void {
    const start = (header as tar.Header & { byteOffset?: number }).byteOffset;
    this.lastEnd = start === undefined ? undefined : start + Math.ceil(header.size / 512) * 512;
    this.lastName = header.name;
  }

  /** True when the input ended with the end of the archive after the last entry. */
  complete(): boolean {
    const room = this.lastEnd === undefined || this.total - this.lastEnd >= END_OF_ARCHIVE;
    return room && this.tail.length === END_OF_ARCHIVE && this.tail.every((byte) => byte === 0);
  }
}

const END_OF_ARCHIVE = 1024;

/**
 * Rethrows a failed verification of a stream import, naming a pack the stream left out whose copy
 * in this store's pool is damaged: only a stream that carries it can repair that. The left-out
 * packs are read only once verification has failed.
 */
async function explainOmitted(error: unknown, staging: Staging, omitted: string[], where: string): Promise<never> {
  if (error instanceof IntegrityError) {
    for (const pack of omitted) {
      if (!(await staging.hasIntactInPool(pack))) {
        throw new IntegrityError(
          `${where}: this store's copy of pack ${pack} is damaged, and the stream leaves it out; export again without --have/--base so that it carries the pack`,
          { cause: error },
        );
      }
    }
  }
  throw error;
}

function parseHeader(text: string): ExportHeader {
  let header: ExportHeader;
  try {
    header = JSON.parse(text) as ExportHeader;
  } catch (error) {
    throw new IntegrityError(`the stream's ${EXPORT_HEADER} is not valid JSON (${messageOf(error)})`);
  }
  if (typeof header !== 'object' || header === null || header.format !== EXPORT_FORMAT || header.version !== 1) {
    throw new IntegrityError(`the stream's ${EXPORT_HEADER} has an unknown format; is this dysnomia older than the sender?`);
  }
  // The header comes from the other side, and a byte flipped on the way can make it anything: each
  // field is checked here, so that a wrong one is said as a damaged stream (exit 1), not as a
  // usage error or a Node internal about a path argument.
  const damaged = (what: string) =>
    new IntegrityError(`the stream's ${EXPORT_HEADER} is damaged: ${what}; it was damaged on its way, or is not one --export wrote; nothing was imported`);
  for (const field of ['container', 'component', 'identity'] as const) {
    const value: unknown = header[field];
    if (typeof value !== 'string') throw damaged(`its ${field} is ${JSON.stringify(value) ?? String(value)}, not a string`);
    try {
      if (field === 'identity') assertIdentity(value);
      else assertSafeName(value, field);
    } catch {
      throw damaged(`it names the ${field} ${JSON.stringify(value)}, which is not a usable ${field === 'identity' ? 'snapshot identity' : `${field} name`}`);
    }
  }
  if (!Array.isArray(header.omittedPacks) || !header.omittedPacks.every((p) => typeof p === 'string' && /^[0-9a-f]{64}$/.test(p))) {
    throw new IntegrityError(`the stream's ${EXPORT_HEADER} has a bad list of omitted packs`);
  }
  if (header.sha256 !== undefined && header.sha256 !== headerSha256(header)) {
    throw damaged('its fields do not match its own checksum (sha256)');
  }
  return header;
}

/**
 * Refuses a stream whose header names another snapshot than the manifest it carries (the
 * manifest is covered by its own `manifestSha256`). The container and component are the sender's
 * filing names, which differ from the manifest's when the sender imported the snapshot under
 * other names (-C/-c, a migration): a header with its checksum vouches for them. A header of an
 * older sender has none; its names are taken when they differ, with a warning naming both, since
 * a byte flipped in them would file the snapshot under another component. A name given with
 * -C/-c is the user's choice, and not compared.
 */
function refuseHeaderMismatch(header: ExportHeader, manifest: Manifest, options: ImportOptions, where: string): void {
  if (manifest.identity !== header.identity) {
    throw new IntegrityError(
      `${where}: its ${EXPORT_HEADER} names the identity ${JSON.stringify(header.identity)}, but the snapshot's manifest names ${JSON.stringify(manifest.identity)}: the stream was damaged on its way; nothing was imported`,
    );
  }
  if (header.sha256 !== undefined) return;
  for (const field of ['container', 'component'] as const) {
    if (options[field] === undefined && manifest[field] !== header[field]) {
      options.log?.warn(
        `${where}: its ${EXPORT_HEADER} (from an older version, without a checksum) names the ${field} ${JSON.stringify(header[field])}, and the snapshot was taken as ${field} ${JSON.stringify(manifest[field])}; filed under the header's names, as the sender filed it. If that name looks damaged, import again with -C and -c`,
      );
    }
  }
}

/**
 * Refuses a header that says it leaves out a pack the snapshot does not use (or that the stream
 * carries all the same): linked from the pool, it pinned an unrelated pack in the snapshot folder.
 */
function refuseStrayOmitted(header: ExportHeader, manifest: Manifest | undefined, carried: Set<string>, where: string): void {
  const used = new Set(manifest?.packs ?? []);
  for (const pack of header.omittedPacks) {
    const why = !used.has(pack)
      ? `which the snapshot's ${manifest === undefined ? 'folder (a Dysnomia dump, without packs)' : 'manifest'} does not name`
      : carried.has(pack)
        ? 'which the stream carries all the same'
        : undefined;
    if (why !== undefined) {
      throw new IntegrityError(`${where}: its ${EXPORT_HEADER} says it leaves out pack ${pack}, ${why}: the stream was damaged on its way; nothing was imported`);
    }
  }
}

/** The file name of a stream entry inside the snapshot folder; anything else is refused. */
function entryName(header: tar.Header, identity: string, where: string): string {
  const slash = header.name.indexOf('/');
  const folder = slash < 0 ? undefined : header.name.slice(0, slash);
  const name = slash < 0 ? '' : header.name.slice(slash + 1);
  const allowed =
    name === MANIFEST_FILE ||
    /^stream-[0-9]+\.chunks$/.test(name) ||
    packOfFileName(name) !== undefined ||
    Object.hasOwn(LEGACY_DUMPS, name);
  if ((header.type ?? 'file') !== 'file' || !allowed) {
    throw new IntegrityError(`${where}: unexpected entry ${JSON.stringify(header.name)} in the stream`);
  }
  if (folder !== identity) {
    throw new IntegrityError(
      `${where}: its ${EXPORT_HEADER} names the identity ${identity}, but its files are under ${folder}/: the stream was damaged on its way; nothing was imported`,
    );
  }
  return name;
}

async function readSmall(entry: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const part of entry) {
    size += part.length;
    if (size > limit) throw new IntegrityError(`the stream's ${EXPORT_HEADER} is larger than ${limit} bytes`);
    parts.push(part);
  }
  return Buffer.concat(parts).toString('utf8');
}
