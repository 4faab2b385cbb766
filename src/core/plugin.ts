/**
 * The plugin contract: what a container type (Dysnomia calls it a module) implements.
 *
 * The core does everything that is the same for every type: resolving the container and
 * component, locking, the activated/garbage markers, generations and checksums, logging and
 * timing. A plugin only talks to its server or tool, and hands snapshot bytes to the store through
 * a {@link SnapshotSink} or reads them back through a {@link SnapshotSource}.
 */
import type { Readable } from 'node:stream';
import type { ContainerProperties } from './container-file.js';
import type { Logger } from './log.js';
import type { ComponentSpec, ContainerSpec } from './resolve.js';

/** Every operation of `dysnomia --operation`. */
export const OPERATIONS = [
  'activate',
  'deactivate',
  'lock',
  'unlock',
  'snapshot',
  'restore',
  'collect-garbage',
  'shell',
] as const;

export type Operation = (typeof OPERATIONS)[number];

export function isOperation(value: string): value is Operation {
  return (OPERATIONS as readonly string[]).includes(value);
}

/** What a plugin's restore may say: that it had nothing to do, and why. */
export interface PluginRestoreResult {
  restored: false;
  reason: string;
}

/** A progress report: which stage, and how many bytes of logical data have gone through. */
export interface ProgressEvent {
  operation: Operation;
  component: string;
  stage: string;
  bytes: number;
  /** Total bytes when known (a restore knows its size; a dump does not). */
  totalBytes?: number;
}

/** What every plugin call receives. `O` is the plugin's validated options. */
export interface PluginContext<O = unknown> {
  operation: Operation;
  component: ComponentSpec;
  container: ContainerSpec;
  /** The plugin's options, as returned by its `parseOptions`. */
  options: O;
  stateDir: string;
  log: Logger;
  signal?: AbortSignal;
  /** How long to wait for a lock another run holds (`--lock-timeout`); undefined: as long as it takes. */
  lockTimeoutMs?: number;
  /** Report progress; the core adds operation and component. */
  progress(stage: string, bytes: number, totalBytes?: number): void;
  /** Human output (stdout for the CLI); used by echo and by external modules' output. */
  print(text: string): void;
  /**
   * 1 when `print` writes straight to this process's stdout (the CLI without --json), so a child
   * may inherit that file descriptor instead of being piped; undefined for a caller's `print`.
   */
  printFd?: 1;
}

/** Where a plugin writes a snapshot: one or more named byte streams. */
export interface SnapshotSink {
  /**
   * Stores one named stream (e.g. `dump.sql`), consuming it with back-pressure. Resolves when the
   * stream has ended and its data is durable in the pool. Names are plain file names.
   *
   * A piece of `data` is used only until the next piece is asked for (the store copies it), so a
   * source may reuse a piece's memory from then on (sql/tool-output.ts does).
   */
  addStream(name: string, data: Readable | AsyncIterable<Uint8Array>): Promise<void>;
}

/** A stored snapshot, as a plugin reads it back. */
export interface SnapshotSource {
  /** The snapshot's identity (its folder name). */
  identity: string;
  /** The plugin type recorded when it was taken. */
  type: string;
  /** Absolute path of the snapshot folder. */
  path: string;
  /** Names of the streams in the order they were written. */
  streams: string[];
  /** Logical size of a stream in bytes, when known. */
  size(name: string): number | undefined;
  /**
   * Reads a stream back. Every chunk is verified as it is read; a mismatch makes the stream emit
   * an IntegrityError naming the snapshot and chunk, so a plugin never commits corrupted data.
   */
  open(name: string): Readable;
  /** Verifies every stream completely without handing data to anyone. */
  verify(): Promise<void>;
}

/** What a plugin's shell operation tells the user. */
export interface ShellInfo {
  /** Lines to print before the shell starts (how to reach the component; never a password). */
  help: string[];
  /** Extra environment for the shell (for example PGHOST, MYSQL_UNIX_PORT). */
  env?: Record<string, string>;
  /**
   * Bash lines the shell runs before the user's commands. External modules use this to be
   * sourced with `shell`, as Dysnomia does, so what they export reaches the session.
   */
  rc?: string;
  /** What `this_dysnomia_module` names in the shell (default: the type). */
  module?: string;
}

/** The result a plugin may give back from snapshot. */
export interface PluginSnapshotResult {
  /** A natural identity (git: hash of the refs). Default: SHA-256 of the logical streams. */
  identity?: string;
}

/**
 * A plugin. Required: type, parseOptions, activate, snapshot, restore, collectGarbage.
 * Optional operations get the core's defaults: deactivate only marks the component as garbage,
 * lock and unlock do nothing.
 */
export interface Plugin<O = unknown> {
  /** The container type this plugin serves, e.g. `mysql-database`. */
  readonly type: string;
  /**
   * Validates the container's properties and returns typed options. Throws a ConfigError naming
   * the file and key that are wrong. `file` is the container file, when there is one.
   */
  parseOptions(properties: ContainerProperties, file?: string): O;
  /**
   * The container properties parseOptions reads that share one prefix (`mysqlUsername`, ...). Any
   * other property with that prefix (`mysqlUser`) is most likely a typo that would be ignored in
   * silence, so the dispatcher warns about it.
   */
  readonly properties?: readonly string[];
  /**
   * The properties parseOptions reads that have no prefix (`timeout`). A property one or two
   * letters away from one of these (`timout`) is warned about too; anything further is taken as
   * someone else's property, as a container file may carry the deployer's own.
   */
  readonly unprefixedProperties?: readonly string[];
  /**
   * Checks the component for `ctx.operation` before the component lock is taken: a component the
   * operation would refuse anyway (a name that cannot be a database, a stray file among the
   * bundles) is then a ConfigError with nothing written, not even the lock in the state dir.
   * The dispatcher runs it before every operation, so the operation need not check again.
   */
  checkComponent?(ctx: PluginContext<O>): Promise<void>;
  activate(ctx: PluginContext<O>): Promise<void>;
  deactivate?(ctx: PluginContext<O>): Promise<void>;
  lock?(ctx: PluginContext<O>): Promise<void>;
  unlock?(ctx: PluginContext<O>): Promise<void>;
  /**
   * Computes a natural identity before any data is written. When the store already holds a
   * snapshot with this identity, `snapshot` is not called at all (an unchanged repository costs
   * almost nothing).
   */
  identify?(ctx: PluginContext<O>): Promise<string | undefined>;
  /**
   * A text read from the server that changes whenever the component may have changed (for
   * PostgreSQL, plugins/postgres/fingerprint.ts lists what it holds). It may change without a
   * change of the component (the dump then runs, as without one), but must never stay the same
   * across one. Undefined: always dump.
   *
   * The store reads it before the dump and again after it, and records it with the snapshot only
   * if it did not change in between. When a later snapshot reads the recorded text, and that
   * snapshot is whole in the store, `snapshot` is not called: the component is unchanged.
   */
  fingerprint?(ctx: PluginContext<O>): Promise<string | undefined>;
  /** Writes the component's logical state into the sink. Must throw if the dump failed. */
  snapshot(ctx: PluginContext<O>, sink: SnapshotSink): Promise<PluginSnapshotResult | void>;
  /**
   * Restores the given snapshot. Must be safe: stage, verify, then swap; on any failure the live
   * component stays exactly as it was. Returns `{ restored: false, reason }` when the component is
   * in the snapshot's state already and nothing was done (the operation is then `skipped`).
   */
  restore(ctx: PluginContext<O>, source: SnapshotSource): Promise<PluginRestoreResult | void>;
  /** Removes the component from the container. Called only when it is marked as garbage. */
  collectGarbage(ctx: PluginContext<O>): Promise<void>;
  /**
   * Where the component's data lives (server and database, or folder), the same text for two
   * containers that reach the same data. collect-garbage refuses a component whose location an
   * activated component of another container shares: it would remove that one's data.
   */
  location?(options: O, component: ComponentSpec): string;
  /**
   * Whether two containers' options reach one server, however each reaches it (a socket,
   * 127.0.0.1, a host name); throws when it cannot be told (a server does not answer).
   * collect-garbage asks it when another container's component of the same name has a different
   * location, since two such texts may name one server, and refuses when it cannot be told.
   */
  sameServer?(mine: O, theirs: O, log: Logger, signal?: AbortSignal): Promise<boolean>;
  /** Describes how to reach the component from a shell. */
  shell?(ctx: PluginContext<O>): Promise<ShellInfo>;
}

/**
 * A plugin that handles every operation itself, without the store: an external Dysnomia-protocol
 * executable (which keeps its own snapshots and markers in DYSNOMIA_STATEDIR, as Dysnomia's
 * modules do), or `echo`. The core passes every operation through, as Dysnomia does, except
 * collect-garbage, which it only passes on for a component marked as garbage.
 */
export interface PassThroughPlugin {
  readonly type: string;
  readonly passThrough: true;
  /** The module's executable, for an external module. */
  readonly modulePath?: string;
  run(ctx: PluginContext<unknown>): Promise<void>;
  /** Describes how to reach the component from a shell. */
  shell?(ctx: PluginContext<unknown>): Promise<ShellInfo>;
}

export type AnyPlugin = Plugin<any> | PassThroughPlugin;

export function isPassThrough(plugin: AnyPlugin): plugin is PassThroughPlugin {
  return (plugin as PassThroughPlugin).passThrough === true;
}
