/** Small file-system helpers for crash-safe writes: temp names, fsync, atomic replace. */
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync } from 'node:fs';
import { lstat, open, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { leftByGoneProcess, ownedName } from '../core/lock.js';

/**
 * The mode of the files that hold a snapshot's data (packs and chunk indices): read-only, for the
 * owner and (as far as the umask allows) the group, never for other users. A snapshot is a whole
 * database, which Dysnomia left readable by every local user; the group is kept so that a backup
 * agent can be given the store through its group (a setgid state dir), as it cannot through 0400.
 */
export const DATA_FILE_MODE = 0o440;

/** Every temporary name in the store starts with this; listings skip such names. */
export const TEMP_PREFIX = '.tmp-';

/**
 * A fresh temporary name carrying our pid and host tag (`.tmp-<pid>.<start>@<tag>-<random>`, see
 * ownedName), so a later run on this host can tell whether its writer is gone, and a run on another host sharing the
 * state dir leaves it alone.
 */
export function tempName(suffix = ''): string {
  return `${ownedName(TEMP_PREFIX)}${randomBytes(6).toString('hex')}${suffix}`;
}

/**
 * Removes a folder so that no one sees it half gone: it is renamed to a hidden temporary name
 * (atomic) and deleted there; a kill in between leaves a hidden leftover that the next run
 * removes. Synchronous: gc removes thousands. Returns false when the folder was not there.
 */
export function removeFolderHidden(folder: string, suffix: string): boolean {
  const hidden = path.join(path.dirname(folder), tempName(suffix));
  try {
    renameSync(folder, hidden);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
  rmSync(hidden, { recursive: true, force: true });
  return true;
}

/** True for names made by {@link tempName} (or any other hidden name the store must ignore). */
export function isHiddenName(name: string): boolean {
  return name.startsWith('.');
}

/** Flushes a file or directory to disk. */
export async function fsyncPath(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `file` atomically and durably: temp file beside it, fsync, rename, fsync dir. */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const temp = path.join(path.dirname(file), tempName());
  try {
    const handle = await open(temp, 'w', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await fsyncPath(path.dirname(file));
}

/** Entry names of a directory, or [] when it does not exist. */
export async function readdirOrEmpty(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') {
      return [];
    }
    throw error;
  }
}

/** The entry names of a directory that listings show (not hidden), sorted; [] when it does not exist. */
export async function visibleNames(dir: string): Promise<string[]> {
  return (await readdirOrEmpty(dir)).filter((name) => !isHiddenName(name)).sort();
}

/** True when the path exists (symlinks are not followed). */
export async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch {
    return false;
  }
}

/** True when the path is a directory (following symlinks). */
export async function isDirectory(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isDirectory();
  } catch {
    return false;
  }
}

/** Removes temporary entries in `dir` whose writing process is gone. */
export async function removeDeadTemps(dir: string, all = false): Promise<void> {
  for (const name of await readdirOrEmpty(dir)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    if (all || leftByGoneProcess(name, TEMP_PREFIX)) {
      await rm(path.join(dir, name), { recursive: true, force: true });
    }
  }
}
