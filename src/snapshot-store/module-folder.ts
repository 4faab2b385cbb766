/**
 * Snapshot folders written by an external module (Dysnomia's fileset, wrapper, subversion,
 * mongo-database or ejabberd modules, a user's own script): a "module folder" is any snapshot
 * folder with neither manifest.json nor a single Dysnomia dump. The store lists, checks, imports
 * and collects it as Dysnomia does, checked by Dysnomia's folder checksum; only the module that
 * wrote it reads it back, so a built-in plugin refuses to restore it.
 */
import { constants, type Stats } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { OperationError, UsageError } from '../core/errors.js';
import { readdirOrEmpty } from './fs-util.js';
import { packOfFileName } from './layout.js';
import { checkFolderChecksum, dysnomiaFolderHash, LEGACY_DUMPS } from './legacy.js';
import { MANIFEST_FILE } from './manifest.js';
import type { SnapshotSource } from '../core/plugin.js';
import type { Staging } from './staging.js';

/** True for the names of this store's own snapshot files (manifest, chunk index, pack). */
function isStoreFileName(name: string): boolean {
  return name === MANIFEST_FILE || /^stream-[0-9]+\.chunks$/.test(name) || packOfFileName(name) !== undefined;
}

/** What a folder is when it is no snapshot of any kind, in the words of every message that says so. */
export const NO_SNAPSHOT_FOLDER = 'empty (entries whose names start with a dot do not count), or holds chunk indexes or packs without their manifest.json';

/**
 * The visible entries of `folder` when it is a module folder; undefined for the other kinds: ours
 * (manifest.json), Dysnomia's (a single dump), an empty folder, or the remains of ours (chunk
 * indexes or packs without a manifest, what a gc of an older version killed halfway leaves).
 */
export async function moduleFolderEntries(folder: string): Promise<string[] | undefined> {
  const names = (await readdirOrEmpty(folder)).filter((name) => !name.startsWith('.')).sort();
  if (names.length === 0 || names.some(isStoreFileName)) return undefined;
  if (names.length === 1 && Object.hasOwn(LEGACY_DUMPS, names[0]!)) return undefined;
  return names;
}

/**
 * For a module folder that holds a Dysnomia dump beside other entries: what it holds and what to
 * do. Such a folder is not Dysnomia's snapshot (which holds only its dump), so it is taken as a
 * module's, as a module may write a dump and files of its own.
 */
export function dumpWithOthers(entries: string[]): string | undefined {
  const dump = entries.find((name) => Object.hasOwn(LEGACY_DUMPS, name));
  if (dump === undefined) return undefined;
  const others = entries.filter((name) => name !== dump).map((name) => JSON.stringify(name));
  return `it holds ${dump} and also ${others.join(', ')}, and a Dysnomia snapshot folder holds only its dump; if it is Dysnomia's snapshot of a database, move the other entries out of the folder`;
}

/**
 * A snapshot folder written by an external module. It has no streams a built-in plugin could
 * read: opening one refuses, naming the folder.
 */
export class ModuleFolder implements SnapshotSource {
  readonly type = 'module';
  readonly streams: string[] = [];

  constructor(
    readonly path: string,
    readonly identity: string,
    /** Its visible top-level entries. */
    readonly entries: string[],
    /** The checksums/ file for this folder, if the store has one. */
    private readonly checksumPath: string | undefined,
    private readonly where: string,
  ) {}

  /** Opens a module folder; undefined when the folder is of another kind. */
  static async load(folder: string, checksumPath: string | undefined, where: string, identity = path.basename(folder)): Promise<ModuleFolder | undefined> {
    const entries = await moduleFolderEntries(folder);
    return entries === undefined ? undefined : new ModuleFolder(folder, identity, entries, checksumPath, where);
  }

  /** Reads every file, and compares Dysnomia's folder checksum with the checksum file when there is one. */
  async verify(): Promise<void> {
    if (!(await checkFolderChecksum(this.path, this.checksumPath, this.where))) await dysnomiaFolderHash(this.path);
  }

  size(): undefined {
    return undefined;
  }

  open(): never {
    throw this.refusal();
  }

  /** Why a built-in plugin does not restore it (`via`: how the restore reached it). */
  refusal(via?: string): OperationError {
    const stray = dumpWithOthers(this.entries);
    return new OperationError(
      `${via === undefined ? `${this.where} is` : `${via} points at ${this.where}, which is`} a folder written by an external module (it has neither manifest.json nor a single Dysnomia dump; it holds ${this.entries.map((name) => JSON.stringify(name)).join(', ')}): ` +
        `only that module reads it back, not a built-in plugin; restore it with the module that made it${stray === undefined ? '' : `; ${stray}, and remove its checksum file, which covers them`}. Nothing was restored`,
    );
  }
}

/** The entries of a module folder to import, relative to it: its folders first, then its files. */
export interface ModuleFolderListing {
  dirs: string[];
  files: string[];
}

/**
 * Lists a module folder to import, recursively. Only regular files and folders are taken: a
 * symbolic link, device, FIFO or socket is refused (a usage error naming the entry), as is a file
 * of this store's own format (the folder then holds snapshot folders of ours, which are imported
 * themselves).
 */
export async function listModuleFolder(source: string, shown: string): Promise<ModuleFolderListing> {
  const listing: ModuleFolderListing = { dirs: [], files: [] };
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(path.join(source, rel))).sort()) {
      const entry = rel === '' ? name : `${rel}/${name}`;
      const info = await lstat(path.join(source, entry));
      if (info.isDirectory()) {
        listing.dirs.push(entry);
        await walk(entry);
      } else if (!info.isFile()) {
        throw new UsageError(
          `cannot import ${shown}: its entry ${entry} is ${kindOf(info)}; a snapshot folder written by a module is imported as regular files and folders only; nothing was imported`,
        );
      } else if (isStoreFileName(name) && rel !== '') {
        throw new UsageError(
          `cannot import ${shown}: it is not a snapshot folder: its entry ${entry} is a file of a snapshot of this store's own format; import that snapshot folder itself; nothing was imported`,
        );
      } else {
        listing.files.push(entry);
      }
    }
  };
  await walk('');
  return listing;
}

function kindOf(info: Stats): string {
  if (info.isSymbolicLink()) return 'a symbolic link';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  return 'a device';
}

/**
 * Copies a listed module folder into the staging folder, keeping each entry's permissions (the
 * owner keeps reading its files and writing its folders, so that gc can remove them).
 */
export async function stageModuleFolder(staging: Staging, source: string, listing: ModuleFolderListing): Promise<void> {
  for (const dir of listing.dirs) {
    await mkdir(path.join(staging.folder, dir));
  }
  for (const file of listing.files) {
    const from = path.join(source, file);
    // O_NOFOLLOW: an entry swapped for a symbolic link since it was listed is not followed.
    const handle = await open(from, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      await staging.addFile(file, handle.createReadStream({ autoClose: false }));
      await chmod(path.join(staging.folder, file), ((await handle.stat()).mode & 0o755) | 0o400);
    } finally {
      await handle.close();
    }
  }
  for (const dir of listing.dirs) {
    await chmod(path.join(staging.folder, dir), ((await lstat(path.join(source, dir))).mode & 0o755) | 0o700);
  }
}
