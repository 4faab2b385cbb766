/**
 * The snapshot store. Placeholder API until the store issue lands: the core codes against these
 * signatures.
 */
import type { Logger } from '../core/log.js';
import type { PluginSnapshotResult, SnapshotSink, SnapshotSource } from '../core/plugin.js';
import type { ComponentKey } from '../core/state-dir.js';
import { OperationError } from '../core/errors.js';

export interface StoreOptions {
  log?: Logger;
  /** Bound on waiting for locks, in milliseconds (undefined: wait forever). */
  lockTimeoutMs?: number;
}

export interface WriteParams {
  /** The plugin type, recorded in the manifest. */
  type: string;
  /** An identity computed before writing; when a snapshot with it exists, `fill` is skipped. */
  naturalIdentity?: string;
  signal?: AbortSignal;
  /** Called with the logical bytes consumed so far. */
  onProgress?: (bytes: number) => void;
}

/** What a snapshot did. */
export interface SnapshotOutcome {
  identity: string;
  /** The generation number now pointing at the snapshot. */
  generation: number;
  /** False when the latest generation already pointed at this identity (Dysnomia's rule). */
  newGeneration: boolean;
  /** False when a folder with this identity already existed. */
  newSnapshot: boolean;
  /** Logical bytes the plugin wrote. */
  bytesRead: number;
  /** Bytes newly added to the pool (after dedup and compression). */
  bytesStored: number;
  /** Absolute path of the snapshot folder. */
  path: string;
}

export class SnapshotStore {
  constructor(
    readonly stateDir: string,
    readonly options: StoreOptions = {},
  ) {}

  /**
   * Takes a snapshot of a component through `fill`, which writes its streams into the sink.
   * Resolves to undefined when `fill` wrote no stream and gave no identity (nothing to keep).
   */
  async write(
    _key: ComponentKey,
    _params: WriteParams,
    _fill: (sink: SnapshotSink) => Promise<PluginSnapshotResult | void>,
  ): Promise<SnapshotOutcome | undefined> {
    throw new OperationError('the snapshot store is not implemented yet');
  }

  /** The snapshot the latest generation points at, or undefined when there is none. */
  async latest(_key: ComponentKey): Promise<SnapshotSource | undefined> {
    return undefined;
  }
}
