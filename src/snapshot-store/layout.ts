/**
 * Where things live in the state dir (Dysnomia's layout plus `pool/` and `locks/`), and the rules
 * for the names that become path segments.
 */
import path from 'node:path';
import { UsageError } from '../core/errors.js';
import { assertSafeName } from '../core/resolve.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';

/** The store lock: shared for writers and readers, exclusive for gc. */
export function storeLockFile(stateDir: string): string {
  return path.join(stateLayout.locks(stateDir), 'store.lock');
}

/**
 * The component lock, the same file the dispatcher takes around every operation. `-` joins the two
 * names and is not encoded, so `a-b`/`c` and `a`/`b-c` share one lock: they only wait for each
 * other. The name is kept as it is because a process of an earlier version, still running during
 * an upgrade, takes this file; a new name would let the two work on one component at once.
 */
export function componentLockFile(stateDir: string, key: ComponentKey): string {
  return path.join(
    stateLayout.locks(stateDir),
    `component-${encodeURIComponent(key.container)}-${encodeURIComponent(key.component)}.lock`,
  );
}

/** The folder of one snapshot. */
export function snapshotDir(stateDir: string, key: ComponentKey, identity: string): string {
  return path.join(stateLayout.snapshots(stateDir, key), identity);
}

/**
 * Where a replacement of a damaged copy of a snapshot (an import's or a snapshot's) keeps that
 * copy until the new one has its name (damage.ts, replaceDamagedCopy); a kill in between leaves it there.
 */
export function damagedAsideDir(stateDir: string, key: ComponentKey, identity: string): string {
  return path.join(stateLayout.snapshots(stateDir, key), `.damaged-${identity}`);
}

/** The checksum file of one snapshot. */
export function checksumFile(stateDir: string, key: ComponentKey, identity: string): string {
  return path.join(stateLayout.checksums(stateDir, key), identity);
}

/** A pool file's path: `pool/<first two hex digits>/<hash>.pack`. */
export function poolPackPath(stateDir: string, pack: string): string {
  return path.join(stateLayout.pool(stateDir), pack.slice(0, 2), packFileName(pack));
}

/** The file name of a pack inside a snapshot folder and in the pool. */
export function packFileName(pack: string): string {
  return `${pack}.pack`;
}

const PACK_FILE = /^([0-9a-f]{64})\.pack$/;

/** The pack hash in a pack file name, or undefined for other files. */
export function packOfFileName(name: string): string | undefined {
  return PACK_FILE.exec(name)?.[1];
}

/** The relative path of a snapshot, as `--query-all` prints it. */
export function relativePath(key: ComponentKey, identity: string): string {
  return `${key.container}/${key.component}/${identity}`;
}

/** A snapshot named by its relative path. */
export interface SnapshotRef {
  key: ComponentKey;
  identity: string;
}

/** Parses `container/component/identity`; a usage error naming the path when it has another form. */
export function parseRelativePath(rel: string): SnapshotRef {
  const parts = rel.replace(/\/+$/, '').split('/');
  if (parts.length !== 3 || parts.some((part) => part === '')) {
    throw new UsageError(
      `${JSON.stringify(rel)} is not a snapshot path: expected CONTAINER/COMPONENT/ID as printed by --query-all`,
    );
  }
  const [container, component, identity] = parts as [string, string, string];
  try {
    return {
      key: { container: assertSafeName(container, 'container'), component: assertSafeName(component, 'component') },
      identity: assertIdentity(identity),
    };
  } catch (error) {
    throw new UsageError(`${JSON.stringify(rel)} is not a snapshot path: ${(error as Error).message}`);
  }
}

const IDENTITY = /^[A-Za-z0-9_+@=-][A-Za-z0-9._+@=-]*$/;

/** Checks that a snapshot identity is usable as a folder name (and is not a temporary name). */
export function assertIdentity(identity: string): string {
  if (!IDENTITY.test(identity) || identity.length > 200) {
    throw new UsageError(
      `${JSON.stringify(identity)} is not a usable snapshot identity (letters, digits and . _ - + @ =, not starting with a dot, at most 200 characters)`,
    );
  }
  return identity;
}

/** Checks a container and component name pair. */
export function assertKey(key: ComponentKey): ComponentKey {
  assertSafeName(key.container, 'container');
  assertSafeName(key.component, 'component');
  return key;
}
