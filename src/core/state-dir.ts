import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { visibleNames } from '../snapshot-store/fs-util.js';
import { messageOf, OperationError } from './errors.js';

/** The state dir: `DYSNOMIA_STATEDIR`, else `/var/state/dysnomia` for root and `~/.dysnomia` otherwise. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DYSNOMIA_STATEDIR !== undefined && env.DYSNOMIA_STATEDIR !== '') {
    return path.resolve(env.DYSNOMIA_STATEDIR);
  }
  const uid = typeof process.getuid === 'function' ? process.getuid() : -1;
  return uid === 0 ? '/var/state/dysnomia' : path.join(env.HOME ?? os.homedir(), '.dysnomia');
}

/** Where a component lives in the state dir: `<kind>/<container>/<component>`. */
export interface ComponentKey {
  container: string;
  component: string;
}

/** Paths of the state dir, in Dysnomia's layout. */
export const stateLayout = {
  activated: (stateDir: string, key: ComponentKey) =>
    path.join(stateDir, 'activated', key.container, key.component),
  garbage: (stateDir: string, key: ComponentKey) =>
    path.join(stateDir, 'garbage', key.container, key.component),
  snapshots: (stateDir: string, key: ComponentKey) =>
    path.join(stateDir, 'snapshots', key.container, key.component),
  generations: (stateDir: string, key: ComponentKey) =>
    path.join(stateDir, 'generations', key.container, key.component),
  checksums: (stateDir: string, key: ComponentKey) =>
    path.join(stateDir, 'checksums', key.container, key.component),
  /** Not Dysnomia's: what a plugin's fingerprint said before a dump (snapshot-store/fingerprint.ts). */
  fingerprints: (stateDir: string, key: ComponentKey) =>
    path.join(stateDir, 'fingerprints', key.container, key.component),
  locks: (stateDir: string) => path.join(stateDir, 'locks'),
  pool: (stateDir: string) => path.join(stateDir, 'pool'),
};

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/** True when the component carries the `activated` marker. */
export function isActivated(stateDir: string, key: ComponentKey): Promise<boolean> {
  return isFile(stateLayout.activated(stateDir, key));
}

/** True when the component carries the `garbage` marker. */
export function isGarbage(stateDir: string, key: ComponentKey): Promise<boolean> {
  return isFile(stateLayout.garbage(stateDir, key));
}

/** Activate: mark active and clear any garbage mark (Dysnomia moves the garbage file back). */
export async function markActive(stateDir: string, key: ComponentKey): Promise<void> {
  const activated = stateLayout.activated(stateDir, key);
  const garbage = stateLayout.garbage(stateDir, key);
  await mkdir(path.dirname(activated), { recursive: true });
  if (await isFile(garbage)) {
    await rename(garbage, activated);
  } else {
    await writeFile(activated, '', { flag: 'a' });
  }
}

/**
 * Deactivate: move the activated mark to garbage. Returns false (and changes nothing) when the
 * component is already garbage or was never activated.
 */
export async function markGarbage(stateDir: string, key: ComponentKey): Promise<boolean> {
  const activated = stateLayout.activated(stateDir, key);
  const garbage = stateLayout.garbage(stateDir, key);
  if (await isFile(garbage)) return false;
  if (!(await isFile(activated))) return false;
  await mkdir(path.dirname(garbage), { recursive: true });
  await rename(activated, garbage);
  return true;
}

/** After collect-garbage: the component is no longer deployed. */
export async function clearGarbage(stateDir: string, key: ComponentKey): Promise<void> {
  await rm(stateLayout.garbage(stateDir, key), { force: true });
}

/**
 * The components that carry a marker of `kind` (`activated/<container>/<component>`), of one
 * container or all. Only files count; an entry that cannot be looked at is an error, not "none".
 */
export async function listMarked(stateDir: string, kind: 'activated' | 'garbage', container?: string): Promise<ComponentKey[]> {
  const keys: ComponentKey[] = [];
  const base = path.join(stateDir, kind);
  await assertFolderOrMissing(stateDir, 'the state dir');
  await assertFolderOrMissing(base, 'the marker folder');
  for (const name of await markerNames(base)) {
    if (container !== undefined && name !== container) continue;
    // A file beside the container folders (a README dropped there) lists as empty: skipped.
    for (const component of await markerNames(path.join(base, name))) {
      if (await isMarkerFile(path.join(base, name, component))) keys.push({ container: name, component });
    }
  }
  return keys;
}

/**
 * The visible entries of a marker folder; [] when it does not exist or is a file. A folder we may
 * not read is an error naming it: "no components" would make a nightly backup save nothing and
 * exit 0 (so would a state dir or `activated/` that is a file, which listMarked checks first).
 */
async function markerNames(dir: string): Promise<string[]> {
  try {
    return await visibleNames(dir);
  } catch (error) {
    throw unreadable(dir, 'the marker folder', error);
  }
}

async function assertFolderOrMissing(dir: string, what: string): Promise<void> {
  let info;
  try {
    info = await stat(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw unreadable(dir, what, error);
  }
  if (!info.isDirectory()) {
    throw new OperationError(`${what} ${dir} is not a folder; check DYSNOMIA_STATEDIR, or move the file away`);
  }
}

function unreadable(dir: string, what: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = code === 'EACCES' || code === 'EPERM' ? 'permission denied; run as the user that owns the state dir' : messageOf(error);
  return new OperationError(`cannot read ${what} ${dir}: ${reason}`, { cause: error });
}

async function isMarkerFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return false;
    throw error;
  }
}
