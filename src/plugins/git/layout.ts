/**
 * Where a component's repository lives, the temporary folders beside it, and how a crash between
 * two steps is repaired.
 *
 * Every change to a live repository is made in a folder beside it and moved into place by
 * renaming, so the repository is always either the old one or the new one. The folders are named
 * `.<component>.dysnomia-<kind>-<pid>.<start time>@<host tag>-<random>`, and only those of a process that is
 * gone are repaired (older versions named them `.<component>.dysnomia-<kind>-<random>`):
 *
 * - `activate`, `restore`: a repository being built; never live, removed if found.
 * - `old`: the previous repository, moved aside during a restore's swap. With the repository in
 *   place it is a leftover of a finished swap and removed; with the repository missing, the crash
 *   hit between the two renames, and it is moved back (the restore did not happen). With the
 *   repository in place and the restored copy still waiting in a `restore` folder, someone made a
 *   new repository after such a crash: nothing is removed, and the user decides.
 * - `delete`: a collected repository being removed; removed if found.
 */
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, readFile, readlink, realpath, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { ComponentSpec } from '../../core/resolve.js';
import type { Logger } from '../../core/log.js';
import { ConfigError, OperationError } from '../../core/errors.js';
import { leftByGoneProcess, ownedName } from '../../core/lock.js';
import { processIds } from './git.js';
import { identityOf, readRefState } from './identity.js';
import { type GitRepositoryOptions, PLUGIN_TYPE } from './options.js';

/** The kinds of temporary folder beside a repository. */
export type TempKind = 'activate' | 'restore' | 'old' | 'delete';

/** Names of older versions, without their maker: `<kind>-<random>`. */
const TEMP_SUFFIX = /^(activate|restore|old|delete)-[0-9a-f]{12}$/;
/** Names with their maker (see ownedName): `<kind>-<pid>[.<start time>]@<host tag>-<random>`. */
const OWNED_SUFFIX = /^(activate|restore|old|delete)-\d+(?:\.\d+)?@[0-9a-f]{8}-[0-9a-f]{12}$/;

/** The live repository of a component: `<gitBaseDir>/<component name>`. */
export function repositoryPath(options: GitRepositoryOptions, component: ComponentSpec): string {
  return path.join(options.baseDir, component.name);
}

/**
 * The repository's part of its temporary names: its name, or for a long one the first 100
 * characters and a hash of the whole, so that with pid, start time, host tag and random part the
 * name stays within the 255 bytes a file name may have (component names are ASCII, up to 200).
 */
function tempStem(repo: string): string {
  const name = path.basename(repo);
  return name.length <= 120 ? name : `${name.slice(0, 100)}~${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
}

/** A fresh temporary path beside the repository. */
export function tempPath(repo: string, kind: TempKind): string {
  return path.join(path.dirname(repo), `${ownedName(`.${tempStem(repo)}.dysnomia-${kind}-`)}${randomBytes(6).toString('hex')}`);
}

/** A temporary folder found beside a repository. */
export interface Leftover {
  kind: TempKind;
  path: string;
}

/**
 * The temporary folders of this repository (and only this one) in its base dir that no running
 * operation owns: those of a process that is gone, and those of older versions (which did not
 * name their maker). Two containers that share a gitBaseDir have their own component locks, so a
 * restore through one must not lose its folder to the other's repair.
 */
export async function leftovers(repo: string): Promise<Leftover[]> {
  // Older versions used the whole name, however long.
  const prefixes = [...new Set([tempStem(repo), path.basename(repo)])].map((stem) => `.${stem}.dysnomia-`);
  let entries: string[];
  try {
    entries = await readdir(path.dirname(repo));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const found: Leftover[] = [];
  for (const entry of entries.sort()) {
    const prefix = prefixes.find((candidate) => entry.startsWith(candidate));
    if (prefix === undefined) continue;
    const suffix = entry.slice(prefix.length);
    const match = TEMP_SUFFIX.exec(suffix) ?? OWNED_SUFFIX.exec(suffix);
    if (match === null) continue;
    if (OWNED_SUFFIX.test(suffix) && !leftByGoneProcess(entry, `${prefix}${match[1]}-`)) continue;
    found.push({ kind: match[1] as TempKind, path: path.join(path.dirname(repo), entry) });
  }
  return found;
}

/** True when something (a folder, a file, a link) exists at `file`. */
/**
 * Refuses a path that holds something other than a bare git repository: a folder with `objects/`,
 * or with HEAD and `refs/`. A damaged repository (HEAD or `refs/` lost) still passes, since that
 * is what a restore is for; a folder of web pages at the same path does not, and a restore would
 * have replaced it and removed what it held.
 */
export async function assertRepositoryAt(repo: string, doing: string): Promise<void> {
  const info = await lstat(repo);
  if (info.isSymbolicLink()) return; // each caller says what a link means to it
  const isDir = async (name: string) => (await stat(path.join(repo, name)).catch(() => undefined))?.isDirectory() === true;
  const isFile = async (name: string) => (await stat(path.join(repo, name)).catch(() => undefined))?.isFile() === true;
  if (info.isDirectory() && ((await isDir('objects')) || ((await isFile('HEAD')) && (await isDir('refs'))))) return;
  throw new OperationError(
    `${repo} exists but is not a bare git repository (${info.isDirectory() ? 'a folder without objects/, HEAD or refs/' : 'not a folder'}); ${doing} would replace it and what it holds: move it away first, or set gitBaseDir to the folder of the repositories`,
    { plugin: PLUGIN_TYPE },
  );
}

/**
 * Refuses a symbolic link whose target is missing (or that cannot be followed) where the
 * repository should be: git and stat() would report it with a bare ENOENT that names the link, as
 * if the link itself were missing. Nothing is created through it or in its place: the repository
 * it pointed to may only be on a disk not mounted yet.
 */
export async function refuseDanglingLink(repo: string): Promise<void> {
  const info = await lstat(repo).catch(() => undefined);
  if (info === undefined || !info.isSymbolicLink()) return;
  const problem = await stat(repo).then(
    () => undefined,
    (error: NodeJS.ErrnoException) => error.code,
  );
  if (problem === undefined) return;
  const target = await readlink(repo);
  const resolved = path.resolve(path.dirname(repo), target);
  const shown = resolved === target ? target : `${target} (${resolved})`;
  const why = problem === 'ELOOP' ? 'a loop of links, which cannot be followed' : problem === 'ENOENT' || problem === 'ENOTDIR' ? 'which does not exist' : `which cannot be reached (${problem})`;
  throw new OperationError(
    `${repo} is a symbolic link to ${shown}, ${why}: put the repository back there (or mount its disk), or remove the link`,
    { plugin: PLUGIN_TYPE },
  );
}

export async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/**
 * The processes that have their working folder in `dir` (git's receive-pack and upload-pack work
 * in the repository they serve, but so does an admin's shell), each as `pid <pid> (<command>)` for a
 * message. Read from /proc, as no library offers it: elsewhere, and for processes we may not look
 * at, none are found.
 */
export async function processesIn(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await processIds()) {
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => undefined);
    if (cwd === undefined || (cwd !== dir && !cwd.startsWith(`${dir}/`))) continue;
    const command = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    found.push(`pid ${entry}${command === '' ? '' : ` (${command.length > 60 ? `${command.slice(0, 57)}...` : command})`}`);
  }
  return found;
}

/**
 * The file a restore writes into the live repository just before it moves it aside: the identity
 * of the refs it had then. A later repair compares it with the refs found there, to
 * tell a previous repository that only waited for removal from one that pushes reached.
 */
export const AT_SWAP_FILE = 'dysnomia-refs-at-swap';

/** Where a previous repository that may hold pushes is kept: a name no repair touches. */
export function keptPath(repo: string, aside: string): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '');
  return path.join(path.dirname(repo), `.${path.basename(repo)}.dysnomia-kept-${stamp}-${path.basename(aside).slice(-6)}`);
}

/**
 * True when the previous repository a finished swap left is as it was at the swap (its refs as
 * recorded in AT_SWAP_FILE) and no process works in it: nothing there is not in the snapshot
 * restored, or in the restore's own record of the refs it replaced.
 */
async function untouchedSinceSwap(aside: string): Promise<boolean> {
  try {
    const recorded = (await readFile(path.join(aside, AT_SWAP_FILE), 'utf8')).trim();
    if (identityOf(await readRefState(aside)) !== recorded) return false;
  } catch {
    return false; // no record (killed before it was written, an older version) or unreadable refs
  }
  return (await processesIn(await realpath(aside).catch(() => aside))).length === 0;
}

/**
 * Repairs what an interrupted operation left: puts a repository moved aside back when the swap
 * was cut between its two renames, and removes every other temporary folder. A previous
 * repository left after a finished swap is removed only when it is shown untouched since the
 * swap; else (a restore killed while it waited for pushes still going into it) it is kept, as
 * the restore itself would have kept it. Runs under the component lock, before every operation
 * that reads or changes the repository.
 */
export async function recover(repo: string, log: Logger): Promise<void> {
  const found = await leftovers(repo);
  if (found.length === 0) return;
  const aside = found.filter((leftover) => leftover.kind === 'old');
  let movedBack: Leftover | undefined;
  const present = await exists(repo);
  if (aside.length > 0 && present) {
    // A finished swap leaves an old repository but no restored copy: the copy is the live one.
    // A restored copy still waiting means the swap stopped between its renames, and whatever is
    // at the live path now was put there by someone else: neither may be thrown away.
    const unswapped = [];
    for (const leftover of found) {
      if (leftover.kind === 'restore' && (await exists(path.join(leftover.path, 'repository')))) unswapped.push(leftover);
    }
    if (unswapped.length > 0) {
      const names = (list: Leftover[]) => list.map((l) => l.path).join(', ');
      throw new OperationError(
        `an earlier restore of ${repo} stopped between its two renames (the previous repository is in ${names(aside)}, the restored copy in ${names(unswapped)}), and ${repo} has been created again since; nothing was removed: keep the right one at ${repo}, remove the others by hand, then run the operation again`,
        { plugin: PLUGIN_TYPE },
      );
    }
  }
  if (aside.length > 0 && !present) {
    if (aside.length > 1) {
      throw new OperationError(
        `${repo} is missing and there are several earlier versions beside it (${aside.map((a) => path.basename(a.path)).join(', ')}); move the right one to ${repo} by hand, then run the operation again`,
        { plugin: PLUGIN_TYPE },
      );
    }
    movedBack = aside[0]!;
    log.warn(`an earlier restore of ${repo} was interrupted during its swap; putting the previous repository back`);
    await rename(movedBack.path, repo);
    await fsyncDir(path.dirname(repo));
  }
  for (const leftover of found) {
    if (leftover === movedBack) continue;
    if (leftover.kind === 'old' && !(await untouchedSinceSwap(leftover.path))) {
      const kept = keptPath(repo, leftover.path);
      await rename(leftover.path, kept);
      await fsyncDir(path.dirname(repo));
      log.warn(
        `the previous repository of ${repo}, left by an interrupted restore, is kept at ${kept}: pushes may have reached it during that restore, and it cannot be shown they did not; fetch what you need from it, then remove it`,
      );
      continue;
    }
    const by = leftover.kind === 'old' ? 'restore' : leftover.kind;
    log.warn(`removing ${leftover.path}, left by an interrupted ${by}`);
    await rm(leftover.path, { recursive: true, force: true });
  }
  // A restore killed before its swap, or between its renames, left its record of the refs in the
  // repository that is live now. Not worth failing the operation for: a restore writes it anew.
  await rm(path.join(repo, AT_SWAP_FILE), { force: true }).catch(() => {});
}

/** Flushes a folder's entries (renames, new files) to disk. */
export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Flushes every file and folder under `dir` to disk, so a repository renamed into place survives
 * a power cut. Written by hand: Node has no recursive fsync and `sync -f` would flush the whole
 * file system, everyone's writes included.
 */
export async function fsyncTree(dir: string): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) await fsyncTree(file);
    else if (entry.isFile()) {
      const handle = await open(file, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
  }
  await fsyncDir(dir);
}

/**
 * Creates gitBaseDir if needed. A path that cannot be a folder is a configuration error (exit 2);
 * a folder we may not write is a problem of the environment (exit 1). Both name the file and key.
 */
export async function ensureBaseDir(options: GitRepositoryOptions): Promise<void> {
  try {
    await mkdir(options.baseDir, { recursive: true });
    const probe = path.join(options.baseDir, `${PROBE_PREFIX}${randomBytes(6).toString('hex')}`);
    await mkdir(probe);
    await rm(probe, { recursive: true, force: true });
    // A run killed between the two lines above left its probe: remove any. One that another run
    // is about to remove itself does no harm (its rm does not mind).
    for (const name of await readdir(options.baseDir)) {
      if (name.startsWith(PROBE_PREFIX)) await rm(path.join(options.baseDir, name), { recursive: true, force: true });
    }
  } catch (error) {
    throw baseDirError(options, error);
  }
}

/**
 * The part of ensureBaseDir that writes nothing: gitBaseDir, or the nearest folder above it that
 * exists, must be a folder (a file there is the ConfigError ensureBaseDir would give).
 */
export async function checkBaseDir(options: GitRepositoryOptions): Promise<void> {
  for (let dir = options.baseDir; ; dir = path.dirname(dir)) {
    const info = await stat(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw baseDirError(options, error);
    });
    if (info === undefined && dir !== path.dirname(dir)) continue;
    if (info !== undefined && !info.isDirectory()) {
      throw baseDirError(options, Object.assign(new Error(`${dir} is not a folder`), { code: 'ENOTDIR' }));
    }
    return;
  }
}

/** The name of the empty folder that shows gitBaseDir is writable, but for its random end. */
const PROBE_PREFIX = '.dysnomia-write-test-';

/** The error for a gitBaseDir we could not create or write. */
export function baseDirError(options: GitRepositoryOptions, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const where = { file: options.file, key: 'gitBaseDir', plugin: PLUGIN_TYPE, cause: error };
  if (code === 'ENOTDIR' || code === 'EEXIST') {
    return new ConfigError(`${options.baseDir} cannot be a folder: it, or a folder above it, is a file`, where);
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    const from = options.file ? ` (gitBaseDir in ${options.file})` : ' (gitBaseDir)';
    return new OperationError(
      `cannot write to ${options.baseDir}${from}: ${code === 'EROFS' ? 'read-only file system' : 'permission denied'}; run as a user who may write there, or change gitBaseDir`,
      { plugin: PLUGIN_TYPE, cause: error },
    );
  }
  return new OperationError(`cannot use gitBaseDir ${options.baseDir}: ${(error as Error).message}`, {
    plugin: PLUGIN_TYPE,
    cause: error,
  });
}
