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
import { messageOf } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { fsyncPath, isDirectory, readdirOrEmpty, tempName } from './fs-util.js';
import { damagedAsideDir, packFileName, poolPackPath, relativePath, snapshotDir } from './layout.js';
import { fileSha256 } from './legacy.js';
import { readManifest } from './reader.js';

function damagedDir(stateDir: string): string {
  return path.join(stateLayout.pool(stateDir), '.damaged');
}

/** Records that `pack` was found damaged. Never fails the caller: the finding is reported anyway. */
export async function recordDamagedPack(stateDir: string, pack: string, log: Logger): Promise<void> {
  if (!/^[0-9a-f]{64}$/.test(pack)) return;
  try {
    await mkdir(damagedDir(stateDir), { recursive: true });
    await writeFile(path.join(damagedDir(stateDir), pack), '');
  } catch (error) {
    log.warn(`cannot record that pack ${pack} is damaged (${messageOf(error)}); the next snapshot may reuse its data`);
  }
}

/** The packs recorded as damaged. */
export async function damagedPacks(stateDir: string): Promise<Set<string>> {
  return new Set((await readdirOrEmpty(damagedDir(stateDir))).filter((name) => /^[0-9a-f]{64}$/.test(name)));
}

/** Forgets a record (the pack was healed, or left the pool). */
export async function forgetDamagedPack(stateDir: string, pack: string): Promise<void> {
  await rm(path.join(damagedDir(stateDir), pack), { force: true });
}

/** The first recorded-damaged pack a snapshot folder's manifest names, if any. */
export async function damagedPackIn(folder: string, damaged: Set<string>): Promise<string | undefined> {
  if (damaged.size === 0) return undefined;
  const manifest = await readManifest(folder, folder).catch(() => undefined);
  return manifest?.packs.find((pack) => damaged.has(pack));
}

/** True when the pool holds `pack` and its bytes do not hash to its name. */
export async function poolCopyIsDamaged(stateDir: string, pack: string): Promise<boolean> {
  return (await fileSha256(poolPackPath(stateDir, pack)).catch(() => pack)) !== pack;
}

/**
 * Puts `good`, a file whose bytes hash to `pack`, in the pool in place of a damaged copy, and links
 * it in place of the damaged copy in every snapshot folder that holds that copy. Returns how many
 * folders were healed. Each replacement is a rename of a new link, so a crash leaves every folder
 * with either copy (and a temporary link at the pool's top level, which the next run removes).
 */
export async function healPack(stateDir: string, pack: string, good: string, log: Logger): Promise<number> {
  const pool = stateLayout.pool(stateDir);
  const pooled = poolPackPath(stateDir, pack);
  const old = await stat(pooled).catch(() => undefined);
  await mkdir(path.dirname(pooled), { recursive: true });
  const replace = async (target: string, source: string) => {
    const temp = path.join(pool, tempName('.pack'));
    await link(source, temp);
    await rename(temp, target);
  };
  await replace(pooled, good);
  await fsyncPath(path.dirname(pooled));
  let healed = 0;
  if (old !== undefined) {
    const snapshots = path.join(stateDir, 'snapshots');
    for (const container of await readdirOrEmpty(snapshots)) {
      if (container.startsWith('.')) continue;
      for (const component of await readdirOrEmpty(path.join(snapshots, container))) {
        if (component.startsWith('.')) continue;
        for (const identity of await readdirOrEmpty(path.join(snapshots, container, component))) {
          const file = path.join(snapshots, container, component, identity, packFileName(pack));
          const info = await lstat(file).catch(() => undefined);
          if (info === undefined || info.ino !== old.ino || info.dev !== old.dev) continue;
          await replace(file, pooled);
          healed += 1;
        }
      }
    }
  }
  await forgetDamagedPack(stateDir, pack);
  log.warn(`pack ${pack} was damaged; a good copy of it was just stored and replaced it in the pool${healed > 0 ? ` and in ${healed} snapshot folder${healed === 1 ? '' : 's'}` : ''}`);
  return healed;
}

/**
 * Finishes what a replacement killed halfway left (see {@link commitImport}): with no folder under
 * the identity, the damaged copy is put back, so generations never point at nothing; with one,
 * the replacement is in place and the damaged copy goes. Runs under the component's lock (an import's or a snapshot's).
 */
export async function settleAside(stateDir: string, key: ComponentKey, identity: string, log: Logger): Promise<void> {
  const aside = damagedAsideDir(stateDir, key, identity);
  if (!(await isDirectory(aside))) return;
  const target = snapshotDir(stateDir, key, identity);
  if (await isDirectory(target)) {
    await rm(aside, { recursive: true, force: true });
    return;
  }
  log.warn(`an earlier replacement of the damaged ${relativePath(key, identity)} was interrupted; putting the damaged copy back before it is checked again`);
  await rename(aside, target);
}
