/**
 * The snapshot store: content-defined chunks, compressed, packed into a shared pool and hard-linked
 * from self-contained snapshot folders. See docs/snapshot-store.md.
 */
export {
  mkdirOrExplain,
  type SnapshotOutcome,
  SnapshotStore,
  type StoreOptions,
  type WriteParams,
} from './store.js';
export type { WriteTuning } from './writer.js';
export { chunkingFor, type ChunkingOptions, DEFAULT_CHUNKING } from './chunker.js';
export { StoredSnapshot } from './reader.js';
export { LegacySnapshot } from './legacy.js';
export { ModuleFolder } from './module-folder.js';
export { parseRelativePath, relativePath, type SnapshotRef } from './layout.js';
export {
  checkSnapshots,
  type CheckResult,
  listAndCheck,
  type ComponentFilter,
  listComponents,
  printMissing,
  queryAll,
  queryLatest,
  resolvePaths,
  type SnapshotEntry,
} from './query.js';
export { collectGarbage, type GcOptions, type GcReport } from './gc.js';
export { generationsToKeep, type RetentionPolicy } from './retention.js';
export {
  type ExportOptions,
  type ExportOutcome,
  exportSnapshot,
  type ImportOptions,
  type ImportOutcome,
  importSnapshotFolder,
  importSnapshotStream,
  listPoolPacks,
} from './transfer.js';
export { listGenerations, type Generation } from './generations.js';
