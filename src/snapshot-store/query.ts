/**
 * Queries over the generations (`--query-latest`, `--query-all`), `--check`, `--resolve` and
 * `--print-missing`: what dysnomia-snapshots answers without changing anything.
 */
import path from 'node:path';
import { damagedPackOf, IntegrityError, messageOf, OperationError, UsageError } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/log.js';
import { recordDamagedPack } from './damage.js';
import type { ComponentKey } from '../core/state-dir.js';
import { isDirectory, visibleNames } from './fs-util.js';
import { holdsSnapshot } from './incomplete.js';
import { type Generation, latestGeneration, listGenerations } from './generations.js';
import { checksumFile, relativePath, snapshotDir } from './layout.js';
import { readChecksum } from './legacy.js';
import { StoredSnapshot } from './reader.js';
import { SnapshotStore } from './store.js';

/** Which components a query covers; undefined means all. Names, not paths. */
export interface ComponentFilter {
  container?: string;
  component?: string;
}

/** One generation as the queries report it. */
export interface SnapshotEntry {
  container: string;
  component: string;
  generation: number;
  identity: string;
  /** `container/component/identity`, as Dysnomia prints it. */
  path: string;
}

/** The components that have generations, in name order, narrowed by the filter. */
export async function listComponents(stateDir: string, filter: ComponentFilter = {}): Promise<ComponentKey[]> {
  const root = path.join(stateDir, 'generations');
  const containers = filter.container !== undefined ? [filter.container] : await visibleNames(root);
  const keys: ComponentKey[] = [];
  for (const container of containers) {
    const components =
      filter.component !== undefined ? [filter.component] : await visibleNames(path.join(root, container));
    for (const component of components) keys.push({ container, component });
  }
  return keys;
}

function entryOf(key: ComponentKey, generation: Generation): SnapshotEntry {
  return {
    container: key.container,
    component: key.component,
    generation: generation.number,
    identity: generation.identity,
    path: relativePath(key, generation.identity),
  };
}

/** `--query-latest`: the latest generation of each component. */
export async function queryLatest(stateDir: string, filter: ComponentFilter = {}): Promise<SnapshotEntry[]> {
  const result: SnapshotEntry[] = [];
  for (const key of await listComponents(stateDir, filter)) {
    const latest = await latestGeneration(stateDir, key);
    if (latest !== undefined) result.push(entryOf(key, latest));
  }
  return result;
}

/** `--query-all`: every generation of each component, oldest first. */
export async function queryAll(stateDir: string, filter: ComponentFilter = {}): Promise<SnapshotEntry[]> {
  const result: SnapshotEntry[] = [];
  for (const key of await listComponents(stateDir, filter)) {
    for (const generation of await listGenerations(stateDir, key)) result.push(entryOf(key, generation));
  }
  return result;
}

/** The outcome of checking one snapshot. */
export interface CheckResult {
  path: string;
  ok: boolean;
  /**
   * `intact`; `damaged` (its data or metadata is wrong); or `unchecked`: the check itself could
   * not run (no lock, no xz, an I/O error), which says nothing about the snapshot.
   */
  status: 'intact' | 'damaged' | 'unchecked';
  /** What is wrong, when not ok. */
  problems: string[];
}

/**
 * Lists snapshots and checks them under one shared store lock. Listed first and locked per
 * snapshot, a gc that ran in between removed listed snapshots, and the check reported them as
 * damaged (exit 1 on an intact store).
 */
export async function listAndCheck(
  stateDir: string,
  list: () => Promise<SnapshotEntry[]>,
  options: { lockTimeoutMs?: number; log?: Logger; signal?: AbortSignal } = {},
): Promise<CheckResult[]> {
  const store = new SnapshotStore(stateDir, { log: options.log, lockTimeoutMs: options.lockTimeoutMs });
  return store.withReadLock('the snapshots to check', options.signal, async () => checkSnapshots(stateDir, await list(), options.log));
}

/**
 * `--check`: verifies each distinct snapshot the entries name: the manifest's own checksum, every
 * chunk, each stream's size and hash, and the checksum file. Dysnomia's folders: `xz -t` and its
 * folder checksum. An external module's folder: read in full, and its folder checksum.
 */
export async function checkSnapshots(stateDir: string, entries: SnapshotEntry[], log: Logger = silentLogger): Promise<CheckResult[]> {
  const store = new SnapshotStore(stateDir);
  const seen = new Set<string>();
  // A pack many generations link is recorded, and said so, once: the others name it only.
  const recordedNow = new Set<string>();
  const results: CheckResult[] = [];
  for (const entry of entries) {
    if (seen.has(entry.path)) continue;
    seen.add(entry.path);
    const key = { container: entry.container, component: entry.component };
    const problems: string[] = [];
    let damaged = true;
    try {
      const snapshot = await store.open(key, entry.identity, `generation ${entry.generation} of ${key.container}/${key.component}`);
      // The indexes first: a damaged index must not be taken for damage in the pack it points into.
      if (snapshot instanceof StoredSnapshot) await snapshot.verifyIndexes();
      await snapshot.verify();
      if (snapshot instanceof StoredSnapshot) {
        const recorded = await readChecksum(checksumFile(stateDir, key, entry.identity));
        const expected = `sha256:${snapshot.manifest.contentSha256}`;
        if (recorded !== undefined && recorded !== expected) {
          problems.push(`${entry.path}: its checksum file says ${recorded}, but the snapshot's content is ${expected}`);
        }
        if (snapshot.manifest.identity !== entry.identity) {
          problems.push(`${entry.path}: its manifest names the identity ${snapshot.manifest.identity}`);
        }
      }
    } catch (error) {
      problems.push(messageOf(error));
      damaged = error instanceof IntegrityError;
      const pack = damagedPackOf(error);
      if (pack !== undefined && !recordedNow.has(pack) && (await recordDamagedPack(stateDir, pack, log))) {
        recordedNow.add(pack);
        problems.push(`${entry.path}: pack ${pack} is now recorded as damaged: the next snapshot of any component that links it stores that data anew, and heals the pack where it makes it again`);
      }
    }
    const status = problems.length === 0 ? 'intact' : damaged ? 'damaged' : 'unchecked';
    results.push({ path: entry.path, ok: status === 'intact', status, problems });
  }
  return results;
}

/**
 * `container/component/identity` as `--query-all` prints it. Any name the store lists is taken:
 * an external module names its folders itself (`rev 42`, `ü1`), and refusing what the store lists
 * made a Disnix transfer of such a snapshot fail. What would leave the component's folder is
 * refused: an absolute path, `.` or `..`, a `/` inside a name, and a name starting with a dot
 * (the store's temporary and set-aside folders, which no query lists).
 */
function parseListedPath(rel: string): { key: ComponentKey; identity: string } {
  const parts = rel.replace(/\/+$/, '').split('/');
  if (path.isAbsolute(rel) || parts.includes('..')) {
    throw new UsageError(
      `${JSON.stringify(rel)} is not a relative snapshot path inside the store: expected CONTAINER/COMPONENT/ID as printed by --query-all`,
    );
  }
  if (parts.length !== 3 || parts.some((part) => part === '' || part.startsWith('.') || part.includes('\0'))) {
    throw new UsageError(
      `${JSON.stringify(rel)} is not a snapshot path: expected CONTAINER/COMPONENT/ID as printed by --query-all (no name empty or starting with a dot)`,
    );
  }
  const [container, component, identity] = parts as [string, string, string];
  return { key: { container, component }, identity };
}

/** `--resolve`: the absolute folder of each relative path. Usage error for anything else. */
export function resolvePaths(stateDir: string, rels: string[]): string[] {
  return rels.map((rel) => {
    const { key, identity } = parseListedPath(rel);
    return snapshotDir(stateDir, key, identity);
  });
}

/**
 * `--print-missing`: the relative paths that have no complete snapshot in the store: no folder, or
 * one that holds none (an empty folder, chunk indexes or packs without their manifest.json, a
 * manifest naming a file the folder lacks). Counted as present, such a folder was left out of a
 * Disnix transfer, and the restore on the other side failed. The data are not read (`--check`
 * does that); an error reading the folder is said, never taken for an answer.
 */
export async function printMissing(stateDir: string, rels: string[]): Promise<string[]> {
  const folders = resolvePaths(stateDir, rels);
  const missing: string[] = [];
  for (const [index, rel] of rels.entries()) {
    const folder = folders[index]!;
    let present: boolean;
    try {
      present = (await isDirectory(folder)) && (await holdsSnapshot(folder));
    } catch (error) {
      throw new OperationError(`cannot tell whether ${rel} is in the store: ${messageOf(error)}`, { cause: error });
    }
    if (!present) missing.push(rel);
  }
  return missing;
}
