/**
 * Private temporary files for secrets (a MariaDB option file holding the password): created in a
 * fresh 0700 folder with mode 0600, and removed when the work is done, whatever happened. A run
 * killed (SIGKILL) in between cannot remove its folder; its name carries the pid and a tag of the
 * host, and the next run on this host removes the folders of runs that are gone. The dump tools'
 * output folders (tool-output.ts) are swept the same way.
 */
import { chmod, chown, lstat, mkdtemp, readdir, rm, rmdir, stat, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { leftByGoneProcess, ownedName } from '../../core/lock.js';

const PREFIX = 'dysnomia-secret-';
/**
 * When each kind of folder (its prefix) was last swept from each temp dir (once an hour: a
 * deployer's process may run for days).
 */
const lastSweep = new Map<string, number>();
const SWEEP_EVERY_MS = 60 * 60 * 1000;

/**
 * Sweeps `tmp` for the folders named `prefix` that killed runs left (see removeFoldersOfDeadRuns),
 * unless this process did within the hour.
 */
export async function sweepDeadRuns(tmp: string, prefix: string): Promise<void> {
  const key = `${prefix}\0${tmp}`;
  if (Date.now() - (lastSweep.get(key) ?? -Infinity) <= SWEEP_EVERY_MS) return;
  lastSweep.set(key, Date.now());
  await removeFoldersOfDeadRuns(tmp, prefix);
}

/** The owner of the private folder, when a tool runs as another OS user. */
export interface FileOwner {
  uid: number;
  gid: number;
}

/**
 * Runs `work` with a private folder, removed afterwards. With `owner`, the files in it go to that
 * OS user, but the folder stays this user's (0711: the owner reaches its file by name, nobody
 * lists or adds): then only this user can put anything in it, and removing it cannot be led
 * elsewhere by the other user.
 */
export async function withPrivateDir<T>(work: (dir: string) => Promise<T>, owner?: FileOwner): Promise<T> {
  const tmp = os.tmpdir();
  await sweepDeadRuns(tmp, PREFIX);
  const dir = await mkdtemp(path.join(tmp, ownedName(PREFIX)));
  try {
    if (owner !== undefined) await chmod(dir, 0o711);
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes a 0600 file in a private folder and returns its path. */
export async function writePrivateFile(dir: string, name: string, content: string, owner?: FileOwner): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, content, { mode: 0o600, flag: 'wx' });
  if (owner !== undefined) await chown(file, owner.uid, owner.gid);
  return file;
}

/** Removes the secret folders that killed runs on this host left in `tmp`. */
export function removeSecretsOfDeadRuns(tmp: string): Promise<void> {
  return removeFoldersOfDeadRuns(tmp, PREFIX);
}

/**
 * Removes the private folders named `prefix` (then ownedName's maker) that killed runs on this
 * host left in `tmp`. Only a real folder (not a link) owned by this user, of a process on this
 * host that is gone, is removed, and only the plain files and sockets in it, one by one, never
 * recursively: anyone may create a folder of that name in /tmp, and a recursive removal as root
 * through a folder another user can change could be led elsewhere. Folders of live runs, other
 * hosts (a shared /tmp), older versions (no pid in the name) and other users stay. A folder whose
 * file went to the OS user of peer authentication is still this user's (see withPrivateDir), so it
 * goes too. Nothing is swept in a temp dir that others may write and that is not sticky.
 */
async function removeFoldersOfDeadRuns(tmp: string, prefix: string): Promise<void> {
  let names: string[];
  try {
    // In a temp dir that others may write and that is not sticky, they could swap a folder for a
    // link between the checks below and the removal: no sweep there.
    const mode = (await stat(tmp)).mode;
    if ((mode & 0o022) !== 0 && (mode & 0o1000) === 0) return;
    names = await readdir(tmp);
  } catch {
    return;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    if (!leftByGoneProcess(name, prefix)) continue;
    const dir = path.join(tmp, name);
    try {
      const info = await lstat(dir);
      if (!info.isDirectory() || (uid !== undefined && info.uid !== uid)) continue;
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        if (entry.isFile() || entry.isSocket()) await unlink(path.join(dir, entry.name));
      }
      await rmdir(dir);
    } catch {
      // Gone meanwhile, or not ours to remove: left as it is.
    }
  }
}
