/**
 * Packs found damaged, and how a good copy heals them. `--check` and a failing restore record the
 * pack they found damaged (an empty file `pool/.damaged/<hash>`). A new snapshot then does not
 * reuse data of a snapshot that links a recorded pack, so it stores that data anew, and an
 * unchanged component's snapshot does not stop at "unchanged" while its snapshot is damaged. When
 * the data stored anew makes a pack of the same name (a pack is named by the hash of its bytes),
 * that copy replaces the damaged one in the pool and in every snapshot folder that linked it, and
 * those snapshots are whole again.
 */
import { link, lstat, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { damagedPackOf, IntegrityError, messageOf, OperationError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { fsyncPath, isDirectory, readdirOrEmpty, tempName } from './fs-util.js';
import { checksumFile, damagedAsideDir, packFileName, poolPackPath, relativePath, snapshotDir } from './layout.js';
import { fileSha256 } from './legacy.js';
import { readManifest, StoredSnapshot } from './reader.js';

function damagedDir(stateDir: string): string {
  return path.join(stateLayout.pool(stateDir), '.damaged');
}

/**
 * Records that `pack` was found damaged. Never fails the caller (the finding is reported anyway);
 * says whether the record was made (a store this user cannot write takes none).
 */
export async function recordDamagedPack(stateDir: string, pack: string, log: Logger): Promise<boolean> {
  if (!/^[0-9a-f]{64}$/.test(pack)) return false;
  try {
    await mkdir(damagedDir(stateDir), { recursive: true });
    await writeFile(path.join(damagedDir(stateDir), pack), '');
    return true;
  } catch (error) {
    log.warn(`cannot record that pack ${pack} is damaged (${messageOf(error)}); the next snapshot may reuse its data`);
    return false;
  }
}

/** The packs recorded as damaged. */
export async function damagedPacks(stateDir: string): Promise<Set<string>> {
  return new Set((await readdirOrEmpty(damagedDir(stateDir))).filter((name) => /^[0-9a-f]{64}$/.test(name)));
}

/** Forgets a record (the pack was healed, or left the store). */
export async function forgetDamagedPack(stateDir: string, pack: string): Promise<void> {
  await rm(path.join(damagedDir(stateDir), pack), { force: true });
}

/** The first recorded-damaged pack a snapshot folder's manifest names, if any. */
export async function damagedPackIn(folder: string, damaged: Set<string>): Promise<string | undefined> {
  if (damaged.size === 0) return undefined;
  const manifest = await readManifest(folder, folder).catch(() => undefined);
  return manifest?.packs.find((pack) => damaged.has(pack));
}

/**
 * What makes the snapshot at `folder` damaged as far as it is cheap to tell, or undefined: a
 * recorded-damaged pack it names (`pack <hash>`), or a chunk index that does not match its
 * manifest. Indexes are small (40 bytes a chunk), so a snapshot of an unchanged component checks
 * them before it stops at "unchanged": an index found damaged records no pack, and the damaged
 * copy was otherwise kept, and found unrestorable, for good.
 */
export async function damageIn(folder: string, damaged: Set<string>): Promise<string | undefined> {
  const pack = await damagedPackIn(folder, damaged);
  if (pack !== undefined) return `pack ${pack}`;
  let snapshot: StoredSnapshot;
  try {
    snapshot = await StoredSnapshot.load(folder, folder);
  } catch {
    return undefined; // not our format, or a manifest the callers judge themselves
  }
  try {
    await snapshot.verifyIndexes();
    return undefined;
  } catch (error) {
    if (error instanceof IntegrityError) return 'a chunk index that does not match its manifest';
    throw error;
  }
}

/** The SHA-256 of a file; a file that cannot be read is an error, never taken for intact or damaged. */
async function hashOf(file: string): Promise<string> {
  try {
    return await fileSha256(file);
  } catch (error) {
    throw new OperationError(`cannot read ${file} to check it (${messageOf(error)})`, { cause: error });
  }
}

/** Every visible snapshot folder's copy of `pack`: `snapshots/<container>/<component>/<id>/<pack>.pack`. */
async function folderCopies(stateDir: string, pack: string): Promise<string[]> {
  const snapshots = path.join(stateDir, 'snapshots');
  const copies: string[] = [];
  for (const container of await readdirOrEmpty(snapshots)) {
    if (container.startsWith('.')) continue;
    for (const component of await readdirOrEmpty(path.join(snapshots, container))) {
      if (component.startsWith('.')) continue;
      for (const identity of await readdirOrEmpty(path.join(snapshots, container, component))) {
        // Hidden: a write or import in progress, or a copy being removed, is not ours to touch;
        // a damaged copy set aside by a replacement killed halfway is, since it may be put back.
        if (identity.startsWith('.') && !identity.startsWith('.damaged-')) continue;
        const file = path.join(snapshots, container, component, identity, packFileName(pack));
        if ((await lstat(file).catch(() => undefined))?.isFile()) copies.push(file);
      }
    }
  }
  return copies;
}

/** True when some visible snapshot folder holds a copy of `pack`. */
export async function packIsLinked(stateDir: string, pack: string): Promise<boolean> {
  return (await folderCopies(stateDir, pack)).length > 0;
}

/**
 * Heals a recorded-damaged pack with `good`, a file whose bytes hash to the pack's name (a copy
 * just written and hashed as it was written, or the pool's copy once checked): the pool's copy
 * and every snapshot folder's copy that is another file and does not hash to the name are
 * replaced by links to it. Each replacement links under a temporary name at the pool's top level
 * (where the next run removes a leftover) and renames over the damaged file, so a folder always
 * holds one whole copy. A folder that goes away meanwhile is skipped, and so is the record's
 * removal: the record goes only after a pass that reached every copy. Returns how many folders
 * were healed.
 */
export async function healPack(stateDir: string, pack: string, good: string, log: Logger): Promise<number> {
  const pool = stateLayout.pool(stateDir);
  const pooled = poolPackPath(stateDir, pack);
  const link2 = async (source: string, target: string) => {
    const temp = path.join(pool, tempName('.pack'));
    await link(source, temp);
    try {
      await rename(temp, target);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  };
  await mkdir(path.dirname(pooled), { recursive: true });
  const poolInfo = await stat(pooled).catch(() => undefined);
  const goodInfo = await stat(good);
  if (poolInfo === undefined || poolInfo.ino !== goodInfo.ino || poolInfo.dev !== goodInfo.dev) {
    if (poolInfo === undefined || (await hashOf(pooled)) !== pack) {
      await link2(good, pooled);
      await fsyncPath(path.dirname(pooled));
    }
  }
  const source = await stat(pooled);
  const poolReplaced = poolInfo === undefined || poolInfo.ino !== source.ino || poolInfo.dev !== source.dev;
  const verdicts = new Map<string, boolean>(); // inode -> intact
  let healed = 0;
  let complete = true;
  for (const file of await folderCopies(stateDir, pack)) {
    const info = await stat(file).catch(() => undefined);
    if (info === undefined) {
      complete = false; // its folder went away meanwhile (another component's replacement)
      continue;
    }
    if (info.ino === source.ino && info.dev === source.dev) continue;
    const inode = `${info.dev}:${info.ino}`;
    if (!verdicts.has(inode)) {
      // A copy that cannot be read is replaced too: a good copy can only do good there.
      verdicts.set(inode, await fileSha256(file).then((hash) => hash === pack, () => false));
    }
    if (verdicts.get(inode)) continue;
    try {
      await link2(pooled, file);
      healed += 1;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw error;
      complete = false; // the folder went away meanwhile
    }
  }
  if (complete) await forgetDamagedPack(stateDir, pack);
  if (healed > 0 || poolReplaced) {
    const where = [poolReplaced ? 'in the pool' : '', healed > 0 ? `in ${healed} snapshot folder${healed === 1 ? '' : 's'}` : ''].filter(Boolean).join(' and ');
    log.warn(`pack ${pack} was damaged; a good copy of it replaced it ${where}`);
  }
  return healed;
}

/**
 * Finishes what a replacement killed halfway left (an import's commitImport, a snapshot's
 * replaceDamaged): with no folder under the identity, the damaged copy is put back, so generations
 * never point at nothing, and true says the caller must replace it again; with one, the
 * replacement is in place and the damaged copy goes. Runs under the component's lock (an import's or a snapshot's).
 */
export async function settleAside(stateDir: string, key: ComponentKey, identity: string, log: Logger): Promise<boolean> {
  const aside = damagedAsideDir(stateDir, key, identity);
  if (!(await isDirectory(aside))) return false;
  const target = snapshotDir(stateDir, key, identity);
  if (await isDirectory(target)) {
    await rm(aside, { recursive: true, force: true });
    return false;
  }
  log.warn(`an earlier replacement of the damaged ${relativePath(key, identity)} was interrupted; putting the damaged copy back, to be replaced again`);
  await rename(aside, target);
  return true;
}

/** {@link settleAside} for every copy set aside in a component's snapshots; the identities put back. */
export async function settleAsides(stateDir: string, key: ComponentKey, log: Logger): Promise<string[]> {
  const putBack: string[] = [];
  for (const name of await readdirOrEmpty(stateLayout.snapshots(stateDir, key))) {
    if (!name.startsWith('.damaged-')) continue;
    const identity = name.slice('.damaged-'.length);
    if (await settleAside(stateDir, key, identity, log)) putBack.push(identity);
  }
  return putBack;
}

/**
 * Puts a new copy of a snapshot in place of the store's damaged one (an import's, or a snapshot's
 * of an unchanged component): the damaged copy moves aside to `.damaged-<id>`, `publish` renames
 * the new one to the snapshot's name, then the damaged copy goes. If `publish` fails before its
 * rename, the damaged copy is put back; after it (a failed fsync), the new copy stays and that is
 * only warned about, as is a failure to remove the damaged copy. Killed between the two renames,
 * the next import or snapshot of it settles what is left ({@link settleAside}).
 */
export async function replaceDamagedCopy(
  stateDir: string,
  key: ComponentKey,
  identity: string,
  publish: () => Promise<void>,
  log: Logger,
): Promise<void> {
  const target = snapshotDir(stateDir, key, identity);
  const aside = damagedAsideDir(stateDir, key, identity);
  await rm(checksumFile(stateDir, key, identity), { force: true });
  await rename(target, aside);
  try {
    await publish();
  } catch (error) {
    if (!(await isDirectory(target))) {
      await rename(aside, target);
      throw error;
    }
    log.warn(`the new copy of ${relativePath(key, identity)} is in place, but making that durable failed: ${messageOf(error)}`);
  }
  await rm(aside, { recursive: true, force: true }).catch((error: unknown) =>
    log.warn(`cannot remove the damaged copy ${aside} (${messageOf(error)}); the next snapshot or import of it removes it`),
  );
}

/**
 * Records the pack an error found damaged in the snapshot at `folder`, unless the snapshot's chunk
 * indexes are what is damaged: the reader checks an index whole only at its end, so a bad record
 * first shows as bad data in the pack it points into.
 */
export async function recordFoundDamage(stateDir: string, folder: string, error: unknown, log: Logger): Promise<void> {
  const pack = damagedPackOf(error);
  if (pack === undefined) return;
  const indexesIntact = await StoredSnapshot.load(folder, folder).then(
    (snapshot) => snapshot.verifyIndexes().then(() => true),
    () => false,
  );
  if (indexesIntact) await recordDamagedPack(stateDir, pack, log);
}
