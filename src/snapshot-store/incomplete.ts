/**
 * Telling a complete snapshot folder from the remains of one. A folder named by an identity is
 * normally complete: writes and imports rename it into place only when it is. Remains come from
 * outside that rule (a gc of an older version killed while it deleted a folder, a hand-made
 * copy); a new snapshot or import of the same identity must replace them instead of pointing a
 * generation at them. Only a definite answer counts: an error reading the folder (EACCES, EIO) is
 * thrown, never taken for "incomplete", so a complete snapshot is never removed by mistake.
 */
import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../core/log.js';
import { isDirectory, removeFolderHidden } from './fs-util.js';
import { packFileName } from './layout.js';
import { legacyDumpOf } from './legacy.js';
import { MANIFEST_FILE, parseManifest } from './manifest.js';
import { moduleFolderEntries } from './module-folder.js';

/** True when the path exists; false only when it is definitely not there. */
async function present(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return false;
    throw error;
  }
}

/**
 * True when `folder` holds a complete snapshot: ours (a manifest that parses, and every chunk
 * index and pack it names), Dysnomia's (its single dump) or an external module's (anything else
 * but an empty folder or our files without a manifest). The data themselves are not read;
 * `--check` does that.
 */
export async function holdsSnapshot(folder: string): Promise<boolean> {
  const manifestFile = path.join(folder, MANIFEST_FILE);
  if (!(await present(manifestFile))) return (await legacyDumpOf(folder)) !== undefined || (await moduleFolderEntries(folder)) !== undefined;
  let manifest;
  try {
    manifest = parseManifest(await readFile(manifestFile, 'utf8'), folder);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== undefined) throw error;
    return false; // unreadable as a manifest: damaged beyond use
  }
  for (const stream of manifest.streams) if (!(await present(path.join(folder, stream.index)))) return false;
  for (const pack of manifest.packs) if (!(await present(path.join(folder, packFileName(pack))))) return false;
  return true;
}

/**
 * Moves a folder that holds no complete snapshot out of the way (to a hidden name) and removes
 * it, so the complete one being written or imported can take its name. Returns whether it did.
 */
export async function setAsideIncomplete(folder: string, label: string, log: Logger): Promise<boolean> {
  if (!(await isDirectory(folder)) || (await holdsSnapshot(folder))) return false;
  log.warn(`replacing ${label}: the folder is not a complete snapshot (left by an interrupted removal, or damaged)`);
  return removeFolderHidden(folder, '.incomplete');
}
