/**
 * The snapshot store as a deployer uses it: what the state dir holds, checks, retention, and
 * moving snapshots (the library form of `dysnomia-snapshots`).
 */
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../core/log.js';
import { assertSafeName } from '../core/resolve.js';
import {
  type CheckResult,
  collectGarbage,
  exportSnapshot as exportFromStore,
  type ExportOutcome,
  type GcReport,
  importSnapshotFolder,
  importSnapshotStream,
  listAndCheck,
  type ImportOutcome,
  listPoolPacks,
  queryAll,
  queryLatest,
  type SnapshotEntry,
} from '../snapshot-store/index.js';
import { stateDirOf } from './options.js';

/** Where to look, and which components. */
export interface SnapshotQueryOptions {
  stateDir?: string;
  env?: NodeJS.ProcessEnv;
  /** Only this container (by name). */
  container?: string;
  /** Only this component (by name). */
  component?: string;
}

/** Options of the calls that lock the store. */
export interface StoreCallOptions extends SnapshotQueryOptions {
  log?: Logger;
  lockTimeoutMs?: number;
  signal?: AbortSignal;
}

/** The names a query is narrowed to, checked as the CLI checks -C and -c (`../..` is no name). */
const filterOf = (options: SnapshotQueryOptions) => ({
  container: options.container === undefined ? undefined : assertSafeName(options.container, 'container'),
  component: options.component === undefined ? undefined : assertSafeName(options.component, 'component'),
});

/** The latest generation of every component (`--query-latest`). */
export async function latestSnapshots(options: SnapshotQueryOptions = {}): Promise<SnapshotEntry[]> {
  return queryLatest(stateDirOf(options), filterOf(options));
}

/** Every generation of every component, oldest first (`--query-all`). */
export async function allSnapshots(options: SnapshotQueryOptions = {}): Promise<SnapshotEntry[]> {
  return queryAll(stateDirOf(options), filterOf(options));
}

/**
 * Verifies snapshots (`--check`): every chunk, the manifest and the checksum. By default the
 * latest of each component; `all` checks every generation.
 */
export async function checkSnapshots(options: StoreCallOptions & { all?: boolean } = {}): Promise<CheckResult[]> {
  return listAndCheck(stateDirOf(options), () => (options.all ? allSnapshots(options) : latestSnapshots(options)), options);
}

/** Options of {@link collectSnapshotGarbage}: restic-style retention. */
export interface SnapshotGcOptions extends StoreCallOptions {
  /** Keep the newest N generations of each component (default 1; 0 removes everything). */
  keep?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  /** Report what would go, change nothing. */
  dryRun?: boolean;
}

/** Removes generations beyond the kept ones, then unreferenced snapshots and pool data (`--gc`). */
export async function collectSnapshotGarbage(options: SnapshotGcOptions = {}): Promise<GcReport> {
  return collectGarbage(stateDirOf(options), {
    ...filterOf(options),
    policy: { last: options.keep ?? 1, daily: options.keepDaily, weekly: options.keepWeekly, monthly: options.keepMonthly },
    dryRun: options.dryRun,
    log: options.log,
    lockTimeoutMs: options.lockTimeoutMs,
    signal: options.signal,
  });
}

/** The hashes of the packs a store holds: what a receiver tells a sender it has. */
export async function listPacks(options: Pick<SnapshotQueryOptions, 'stateDir' | 'env'> = {}): Promise<string[]> {
  return listPoolPacks(stateDirOf(options));
}

/** Options of {@link exportSnapshot}. */
export interface ExportSnapshotOptions extends Omit<StoreCallOptions, 'container' | 'component'> {
  /** The snapshot, `container/component/identity` as the queries give it in `path`. */
  snapshot: string;
  /** Where the tar stream goes (it is ended). */
  to: Writable;
  /** Pack hashes the receiver has (its {@link listPacks}); they are left out. */
  have?: Iterable<string>;
  /** A snapshot the receiver has; its packs are left out. */
  base?: string;
}

/** Writes a snapshot as a tar stream (`--export`), for {@link importSnapshot} elsewhere. */
export async function exportSnapshot(options: ExportSnapshotOptions): Promise<ExportOutcome> {
  return exportFromStore(stateDirOf(options), options.snapshot, options.to, {
    have: options.have,
    base: options.base,
    log: options.log,
    lockTimeoutMs: options.lockTimeoutMs,
    signal: options.signal,
  });
}

/** Options of {@link importSnapshot}. */
export interface ImportSnapshotOptions extends StoreCallOptions {
  /** A snapshot folder (copied with cp -a, scp -r, tar), or a stream made by {@link exportSnapshot}. */
  from: string | Readable;
}

/**
 * Imports a snapshot (`--import`), verified before it is accepted; it becomes the latest
 * generation of its component. `container`/`component` file it under other names.
 */
export async function importSnapshot(options: ImportSnapshotOptions): Promise<ImportOutcome> {
  const importOptions = {
    ...filterOf(options),
    log: options.log,
    lockTimeoutMs: options.lockTimeoutMs,
    signal: options.signal,
  };
  const stateDir = stateDirOf(options);
  return typeof options.from === 'string'
    ? importSnapshotFolder(stateDir, options.from, importOptions)
    : importSnapshotStream(stateDir, options.from, importOptions);
}
