/**
 * The dysnomia library: what a deployer imports instead of spawning the CLIs. The CLIs are thin
 * layers over these functions.
 *
 * ```ts
 * import { snapshot, restore } from 'dysnomia';
 * const result = await snapshot({ container: '/etc/dysnomia/containers/mysql-database', component: './testdb' });
 * console.log(result.snapshot?.identity, result.snapshot?.generation, result.bytesStored);
 * ```
 */

// One component.
export {
  activate,
  collectGarbage,
  type ComponentOperation,
  deactivate,
  describeComponentShell,
  lock,
  restore,
  run,
  snapshot,
  unlock,
} from './api/operations.js';
export type {
  CommonOptions,
  ComponentOptions,
  ContainerInput,
  NamedContainer,
  ProgressEvent,
} from './api/options.js';
export type { OperationResult } from './core/dispatcher.js';
export type {
  AnyPlugin,
  Operation,
  PassThroughPlugin,
  Plugin,
  PluginContext,
  PluginRestoreResult,
  PluginSnapshotResult,
  ShellInfo,
  SnapshotSink,
  SnapshotSource,
} from './core/plugin.js';
export { OPERATIONS } from './core/plugin.js';

// The machine: queries and actions over every component.
export {
  type AvailableComponent,
  type ContainerEntry,
  listActivatedComponents,
  listAvailableComponents,
  listContainers,
  listGarbageComponents,
  type MarkerQueryOptions,
  type QueryOptions,
} from './api/queries.js';
export {
  type BatchOptions,
  type BatchResult,
  collectAllGarbage,
  type ComponentOutcome,
  deploy,
  restoreAll,
  runOnActivated,
  snapshotAll,
} from './api/batch.js';
export {
  describeMachine,
  type MachineDescription,
  propertiesFile,
  readMachineProperties,
  toDotGraph,
  toNixExpression,
} from './api/machine.js';
export {
  type ErrorJson,
  formatBytes,
  formatFailures,
  formatOutcomeTable,
  type OutcomeJson,
  outcomesToJson,
} from './api/report.js';

// Moving state between containers and machines.
export {
  commandTransport,
  dysnomiaCommands,
  type DysnomiaCommandsOptions,
  migrate,
  type MigrateOptions,
  type MigrateResult,
  MigrationError,
  type MigrationSide,
  type MigrationSideName,
  type MigrationStep,
  type MigrationTransport,
  shellQuote,
  type TargetRestoreReport,
  type TransportCommands,
} from './api/migrate.js';

// The snapshot store.
export {
  allSnapshots,
  checkSnapshots,
  collectSnapshotGarbage,
  exportSnapshot,
  type ExportSnapshotOptions,
  importSnapshot,
  type ImportSnapshotOptions,
  latestSnapshots,
  listPacks,
  type SnapshotGcOptions,
  type SnapshotQueryOptions,
  type StoreCallOptions,
} from './api/snapshots.js';
export type { CheckResult, ExportOutcome, GcReport, ImportOutcome, SnapshotEntry } from './snapshot-store/index.js';

// Containers, components, state dir.
export type { ContainerProperties, PropertyValue } from './core/container-file.js';
export { parseContainerText, readContainerFile } from './core/container-file.js';
export type { ComponentSpec, ContainerSpec } from './core/resolve.js';
export { type ComponentKey, defaultStateDir } from './core/state-dir.js';

// Logging.
export { type Logger, silentLogger, streamLogger, type StreamLoggerOptions } from './core/log.js';

// Errors: every failure is one of these.
export {
  AbortedError,
  ChangedMeanwhileError,
  ConfigError,
  type ConfigErrorOptions,
  DysnomiaError,
  type DysnomiaErrorOptions,
  EXIT_FAILED,
  EXIT_OK,
  EXIT_USAGE,
  IntegrityError,
  LockTimeoutError,
  OperationError,
  PluginError,
  UsageError,
} from './core/errors.js';
