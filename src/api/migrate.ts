/**
 * Moving a component's state from one container (and state dir) to another, the deployer's
 * migration step, as Disnix does it: lock the source, snapshot it, send the snapshot, import it
 * on the target, activate the component there if it is not yet, restore, unlock the source.
 *
 * The target is either on this machine (a container and a state dir) or reached through a
 * {@link MigrationTransport}, such as {@link commandTransport} running
 * `ssh host dysnomia-snapshots --import -`. Packs the target already has are not sent, so a second
 * migration after a small change sends little. Whatever fails, the source stays activated and
 * unchanged, and the error says which side failed.
 */
import { PassThrough, type Readable, Transform } from 'node:stream';
import { execa } from 'execa';
import { comparePlaces, type OperationResult, type Place, runOperation } from '../core/dispatcher.js';
import { AbortedError, DysnomiaError, OperationError, PluginError, UsageError, messageOf } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/log.js';
import { isPassThrough } from '../core/plugin.js';
import { loadPlugin } from '../core/registry.js';
import { type ComponentSpec, type ContainerSpec, nameFromPath, resolveComponent } from '../core/resolve.js';
import { isActivated } from '../core/state-dir.js';
import {
  exportSnapshot,
  type ExportOutcome,
  type ImportOutcome,
  importSnapshotStream,
  listPoolPacks,
  relativePath,
} from '../snapshot-store/index.js';
import { whenAborted } from './operations.js';
import { type ContainerInput, type ProgressEvent, stateDirOf, toContainerSpec } from './options.js';

/** One end of a migration on this machine: a container and its state dir. */
export interface MigrationSide {
  container: ContainerInput;
  /** Default: DYSNOMIA_STATEDIR, else /var/state/dysnomia as root, else ~/.dysnomia. */
  stateDir?: string;
}

/** What a transport's restore step reports, when it can tell. */
export interface TargetRestoreReport {
  /** The activation done first because the component was not activated on the target. */
  activated?: OperationResult;
  restored?: OperationResult;
}

/**
 * How migrate reaches a target that is not on this machine. Each method runs on the target.
 * {@link commandTransport} builds one from shell commands.
 */
export interface MigrationTransport {
  /** Names the target in messages, e.g. `ssh db2`. */
  readonly description: string;
  /** The pack hashes the target store has (they are not sent); undefined sends everything. */
  listPacks(signal?: AbortSignal): Promise<Iterable<string> | undefined>;
  /**
   * Imports the export stream on the target; resolves once the target has accepted it. A target
   * that sets {@link locksFirst} calls `onLocked` once it holds its locks, before it reads.
   */
  receive(stream: Readable, signal?: AbortSignal, onLocked?: () => void): Promise<ImportOutcome | void>;
  /**
   * Whether `receive` takes its locks before it reads and says so through `onLocked`; the export
   * then starts only after that. A target on this machine does: in the source's state dir, its
   * wait for the component lock while the export held the store's lock could close a circle with
   * a gc and a run holding that component lock (docs/snapshot-store.md, "Locks").
   */
  readonly locksFirst?: boolean;
  /** Activates the component on the target if it is not yet, then restores the imported snapshot. */
  restore(signal?: AbortSignal): Promise<TargetRestoreReport | void>;
}

/** Options of {@link migrate}. */
export interface MigrateOptions {
  /** The component (a folder path, or a name in DYSNOMIA_COMPONENTS_PATH/<source container>/). */
  component: string;
  /** Where the state is now. */
  from: MigrationSide;
  /** Where it goes: a container and state dir on this machine, or a transport. */
  to: MigrationSide | MigrationTransport;
  /** Lock the source component while its state moves, as Disnix does (default true). */
  lockSource?: boolean;
  signal?: AbortSignal;
  /** Progress of every step: the snapshot, the transfer (`operation: 'migrate'`), the restore. */
  onProgress?: (event: ProgressEvent) => void;
  lockTimeoutMs?: number;
  log?: Logger;
  env?: NodeJS.ProcessEnv;
  /** Human output of plugins (echo, external modules). */
  print?: (text: string) => void;
}

/** What a migration did. */
export interface MigrateResult {
  component: string;
  /** The identity of the snapshot that moved. */
  identity: string;
  /** The snapshot on the source. */
  snapshot: OperationResult;
  /** What the transfer sent. */
  transfer: Pick<ExportOutcome, 'packsSent' | 'packsOmitted' | 'bytesSent'>;
  /** The import on the target, when the target reports it. */
  import?: ImportOutcome;
  /** The activation on the target, when it was needed (and the target reports it). */
  activated?: OperationResult;
  /** The restore on the target, when the target reports it. */
  restore?: OperationResult;
  durationMs: number;
}

/** Which end of a migration failed. */
export type MigrationSideName = 'source' | 'target';

/** The step of a migration that failed. */
export type MigrationStep = 'prepare' | 'lock' | 'snapshot' | 'list-packs' | 'export' | 'import' | 'restore' | 'unlock';

/**
 * A migration failed. `side` and `step` say where; `cause` is the underlying error. The exit code
 * is the cause's (2 for a configuration error, else 1).
 */
export class MigrationError extends OperationError {
  override readonly exitCode: number;
  readonly side: MigrationSideName;
  readonly step: MigrationStep;

  constructor(message: string, side: MigrationSideName, step: MigrationStep, cause: unknown) {
    super(message, { cause, plugin: cause instanceof DysnomiaError ? cause.plugin : undefined });
    this.side = side;
    this.step = step;
    this.exitCode = cause instanceof DysnomiaError ? cause.exitCode : 1;
  }
}

function isTransport(to: MigrationSide | MigrationTransport): to is MigrationTransport {
  return typeof (to as MigrationTransport).receive === 'function';
}

/** Runs one step, turning its failure into a MigrationError naming the side and the step. */
async function step<T>(side: MigrationSideName, name: MigrationStep, what: string, after: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof MigrationError) throw error;
    throw new MigrationError(`${what} failed on the ${side}: ${messageOf(error)}; ${after}`, side, name, error);
  }
}

/**
 * Moves a component's state from `from` to `to`; see the module comment for the steps. Throws a
 * {@link MigrationError}; the source is left activated and unchanged whatever happens.
 */
export function migrate(options: MigrateOptions): Promise<MigrateResult> {
  return whenAborted(options.signal, `migration of ${options.component} (the source is unchanged and still activated)`, migrateSteps(options));
}

async function migrateSteps(options: MigrateOptions): Promise<MigrateResult> {
  const started = performance.now();
  const env = options.env ?? process.env;
  const log = options.log ?? silentLogger;
  const sourceStateDir = stateDirOf({ stateDir: options.from.stateDir, env });
  const common = {
    log,
    signal: options.signal,
    lockTimeoutMs: options.lockTimeoutMs,
    env,
    print: options.print,
    stateDir: sourceStateDir,
  };
  const unchanged = 'the source is unchanged and still activated';

  const { container, component } = await step('source', 'prepare', 'preparing the migration', unchanged, async () => {
    const spec = await toContainerSpec(options.from.container, env);
    return { container: spec, component: await resolveComponent(options.component, spec.name, env) };
  });
  const name = `${container.name}/${component.name}`;
  const target = isTransport(options.to)
    ? options.to
    : await step('target', 'prepare', `preparing the target of ${name}`, unchanged, () =>
        localTarget(options.to as MigrationSide, component, options, sourceStateDir, container),
      );
  const onSource = (operation: 'lock' | 'unlock' | 'snapshot') =>
    runOperation({
      operation,
      container,
      component,
      ...common,
      // A cancelled migration must still unlock the source: the unlock ignores the signal.
      ...(operation === 'unlock' ? { signal: undefined } : {}),
      onProgress: options.onProgress,
    });

  const lockSource = options.lockSource ?? true;
  if (lockSource) await step('source', 'lock', `locking ${name}`, unchanged, () => onSource('lock'));
  try {
    const have = await step('target', 'list-packs', `asking ${target.description} which packs it has`, unchanged, () =>
      target.listPacks(options.signal),
    );
    const snapshot = await step('source', 'snapshot', `the snapshot of ${name}`, unchanged, () => onSource('snapshot'));
    const identity = snapshot.snapshot?.identity;
    if (identity === undefined) {
      throw new MigrationError(
        `migrate ${name}: the ${container.type} plugin keeps no snapshot in the store (${snapshot.message}); nothing to move. ${unchanged}`,
        'source',
        'snapshot',
        new UsageError(snapshot.message),
      );
    }
    const move = (packsTheTargetHas: Iterable<string> | undefined) =>
      transfer(sourceStateDir, relativePath({ container: container.name, component: component.name }, identity), target, {
        have: packsTheTargetHas,
        log,
        signal: options.signal,
        lockTimeoutMs: options.lockTimeoutMs,
        onBytes: (bytes) => options.onProgress?.({ operation: 'migrate', component: component.name, stage: 'transfer', bytes }),
        name,
        unchanged,
      });
    const { exported, imported } = await move(have).catch((error: unknown) => {
      // The target's copy of a pack it said it has is damaged, so only a transfer that carries
      // every pack can repair it (the import says so in these words, locally or over a command).
      if (have === undefined || !(error instanceof MigrationError) || !/is damaged, and the stream leaves it out/.test(error.message)) throw error;
      log.warn(`${target.description} has a damaged copy of a pack the transfer left out; sending ${name} again with every pack`);
      return move(undefined);
    });
    // From here on the target has the snapshot: a migration stopped now is finished by running it again.
    const afterImport = `${unchanged}; the target holds the imported snapshot (its latest generation), and the component there may be activated but not restored: run the migration again to finish it (nothing new is sent)`;
    const report = await step('target', 'restore', `restoring ${name} on ${target.description}`, afterImport, () => target.restore(options.signal));
    const restoredIdentity = report?.restored?.snapshot?.identity;
    if (report?.restored !== undefined && restoredIdentity === undefined) {
      throw new MigrationError(
        `restoring ${name} on ${target.description} restored nothing (${report.restored.message}); the snapshot was imported under another name than the target restores from? ${unchanged}`,
        'target',
        'restore',
        new OperationError('nothing restored'),
      );
    }
    if (restoredIdentity !== undefined && restoredIdentity !== identity) {
      throw new MigrationError(
        `restoring ${name} on ${target.description} restored snapshot ${restoredIdentity}, not the migrated ${identity} (did something else snapshot it meanwhile?); ${unchanged}`,
        'target',
        'restore',
        new OperationError('identity mismatch'),
      );
    }
    return {
      component: component.name,
      identity,
      snapshot,
      transfer: { packsSent: exported.packsSent, packsOmitted: exported.packsOmitted, bytesSent: exported.bytesSent },
      import: imported ?? undefined,
      activated: report?.activated,
      restore: report?.restored,
      durationMs: Math.round(performance.now() - started),
    };
  } finally {
    if (lockSource) {
      await onSource('unlock').catch((error: unknown) => log.warn(`unlocking ${name} on the source failed: ${messageOf(error)}`));
    }
  }
}

interface TransferOptions {
  have: Iterable<string> | undefined;
  log: Logger;
  signal?: AbortSignal;
  lockTimeoutMs?: number;
  onBytes: (bytes: number) => void;
  name: string;
  unchanged: string;
}

function noop(): void {}

/** A broken pipe: the reading end went away, which says nothing about the writing end. */
function isPipeError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED';
}

/**
 * Streams the export of `rel` into the target's receive. Both run at once; the side whose failure
 * came first is the one reported (the other usually fails only because its peer went away).
 */
async function transfer(
  stateDir: string,
  rel: string,
  target: MigrationTransport,
  options: TransferOptions,
): Promise<{ exported: ExportOutcome; imported: ImportOutcome | void }> {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      options.onBytes(bytes);
      callback(null, chunk);
    },
  });
  const stream = new PassThrough();
  counter.pipe(stream);
  // Stops the export when the receiver fails (or the caller cancels): the export notices between
  // files, and what it writes until then is read and dropped, so it never blocks on a dead pipe.
  const stopExport = new AbortController();
  const cancel = () => stopExport.abort(options.signal?.reason);
  options.signal?.addEventListener('abort', cancel, { once: true });
  const failures: { side: MigrationSideName; error: unknown }[] = [];
  let locked!: () => void;
  const targetLocked = new Promise<void>((resolve) => {
    locked = resolve;
  });
  const receiving = Promise.resolve()
    .then(() => target.receive(stream, options.signal, locked))
    .catch((error: unknown) => {
      failures.push({ side: 'target', error });
      stopExport.abort(error);
      counter.unpipe(stream);
      counter.resume();
      stream.destroy();
      throw error;
    });
  // A receiver that finished without reading to the end (a command that exits 0 early) left the
  // export blocked for good on a stream nobody reads. What is left is drained instead; any of it
  // that is not the archive's closing zeros was never received, and the transfer fails.
  let unreceived = false;
  receiving.then(
    () => {
      counter.unpipe(stream);
      const missed = (chunk: Buffer) => {
        if (chunk.some((byte) => byte !== 0)) unreceived = true;
      };
      for (let chunk = stream.read() as Buffer | null; chunk !== null; chunk = stream.read() as Buffer | null) missed(chunk);
      counter.on('data', missed);
      counter.resume(); // paused by the pipe's back-pressure, a 'data' listener alone does not restart it
    },
    noop,
  );
  // The export takes the source store's lock: for a target that locks first, only once it has.
  if (target.locksFirst === true) await Promise.race([targetLocked, receiving.then(noop, noop)]);
  const exporting = (
    stopExport.signal.aborted
      ? Promise.reject(stopExport.signal.reason)
      : exportSnapshot(stateDir, rel, counter, {
          have: options.have,
          log: options.log,
          signal: stopExport.signal,
          lockTimeoutMs: options.lockTimeoutMs,
        })
  ).catch((error: unknown) => {
    failures.push({ side: 'source', error });
    stream.destroy(error as Error);
    throw error;
  });
  const [exported, imported] = await Promise.allSettled([exporting, receiving]);
  options.signal?.removeEventListener('abort', cancel);
  if (exported.status === 'fulfilled' && imported.status === 'fulfilled') {
    if (unreceived) {
      throw new MigrationError(
        `the import of ${options.name} on ${target.description} failed: it stopped reading the snapshot before the end and reported success; ${options.unchanged}`,
        'target',
        'import',
        undefined,
      );
    }
    return { exported: exported.value, imported: imported.value };
  }
  if (options.signal?.aborted) {
    throw new AbortedError(`migration of ${options.name} cancelled during the transfer; ${options.unchanged}`, { cause: options.signal.reason });
  }
  // A receiver that stopped reading makes the export fail with a broken pipe: that is the target's doing.
  const first = failures.find((f) => !(f.side === 'source' && isPipeError(f.error))) ?? { side: 'target' as const, error: failures[0]!.error };
  const what =
    first.side === 'target'
      ? `the import of ${options.name} on ${target.description} (the target refused it)`
      : `the export of ${options.name}`;
  throw new MigrationError(`${what} failed: ${messageOf(first.error)}; ${options.unchanged}`, first.side, first.side === 'target' ? 'import' : 'export', first.error);
}

/**
 * Refuses a target container that reaches the source's own data: the same server and database
 * (however each container reaches the server), or the same git repository. Restoring there would
 * put the snapshot over the live source, and lose what was written to it since. When the plugin
 * cannot tell (a server does not answer), the migration is refused too: it needs both anyway.
 */
async function refuseSourceData(source: ContainerSpec, target: ContainerSpec, component: ComponentSpec, options: MigrateOptions): Promise<void> {
  if (source.type !== target.type) return;
  const env = options.env ?? process.env;
  const plugin = await loadPlugin(source.type, env, source.file);
  if (isPassThrough(plugin) || plugin.location === undefined) return;
  const mine: unknown = plugin.parseOptions(source.properties, source.file);
  const theirs: unknown = plugin.parseOptions(target.properties, target.file);
  const here = plugin.location(mine, component);
  const there = plugin.location(theirs, component);
  let place: Place;
  try {
    place = await comparePlaces(plugin, { options: mine, location: here }, { options: theirs, location: there }, true, options.log ?? silentLogger, options.signal);
  } catch (error) {
    if (error instanceof AbortedError) throw error;
    throw new OperationError(
      `cannot tell whether the target container ${target.name} (${there}) reaches the source's own data (${here}): ${messageOf(error)}; nothing was moved`,
      { cause: error },
    );
  }
  if (place !== 'apart') {
    throw new UsageError(
      `the target container ${target.name} reaches the source's own data (${place === 'same' ? here : `${there}, the same server as ${here}`}): restoring there would overwrite the live ${source.name}/${component.name} with its snapshot and lose what was written since; give a target container on another server${source.type === 'git-repository' ? ' or gitBaseDir' : ''}`,
    );
  }
}

/** A target on this machine: a container and a state dir, served by this process. */
async function localTarget(
  side: MigrationSide,
  component: ComponentSpec,
  options: MigrateOptions,
  sourceStateDir: string,
  sourceContainer: ContainerSpec,
): Promise<MigrationTransport> {
  const env = options.env ?? process.env;
  const stateDir = stateDirOf({ stateDir: side.stateDir, env });
  const container = await toContainerSpec(side.container, env);
  if (stateDir === sourceStateDir && container.name === sourceContainer.name) {
    throw new UsageError(
      `the source and the target are the same (container ${container.name} in state dir ${stateDir}); give another container or state dir`,
    );
  }
  await refuseSourceData(sourceContainer, container, component, options);
  const request = (operation: 'activate' | 'restore', signal?: AbortSignal) => ({
    operation,
    container,
    component,
    stateDir,
    log: options.log,
    signal,
    onProgress: options.onProgress,
    lockTimeoutMs: options.lockTimeoutMs,
    env,
    print: options.print,
  });
  return {
    description: `${container.name} in ${stateDir}`,
    listPacks: () => listPoolPacks(stateDir),
    locksFirst: true,
    receive: (stream, signal, onLocked) =>
      importSnapshotStream(stateDir, stream, {
        container: container.name,
        component: component.name,
        log: options.log,
        lockTimeoutMs: options.lockTimeoutMs,
        signal,
        onLocked,
      }),
    async restore(signal) {
      const activated = (await isActivated(stateDir, { container: container.name, component: component.name }))
        ? undefined
        : await runOperation(request('activate', signal));
      const restored = await runOperation(request('restore', signal));
      return { activated, restored };
    },
  };
}

/** The shell commands of a {@link commandTransport}. Each runs with `sh -c`. */
export interface TransportCommands {
  /**
   * Names the target in messages, e.g. `db2 over ssh` (default: `the target of the receiving
   * command \`...\``, which says that the words are a command, not the target's name).
   */
  description?: string;
  /** Prints the target store's pack hashes, one a line (`dysnomia-snapshots --list-packs`); omit to send every pack. */
  listPacks?: string;
  /** Reads the export stream on stdin and imports it (`dysnomia-snapshots --import -C C -c c -`). */
  receive: string;
  /** Activates the component on the target if needed and restores it (`dysnomia --operation ...`). */
  restore: string;
  /** Extra environment for the commands. */
  env?: Record<string, string>;
}

/** Runs a transport command; a non-zero exit is a PluginError with the command's stderr. */
async function runCommand(
  command: string,
  what: string,
  commands: TransportCommands,
  signal: AbortSignal | undefined,
  input?: Readable,
): Promise<string> {
  const result = await execa('sh', ['-c', command], {
    env: commands.env,
    input,
    stdin: input === undefined ? 'ignore' : undefined,
    reject: false,
    cancelSignal: signal,
    stripFinalNewline: true,
  });
  if (result.isCanceled) throw new AbortedError(`${what} cancelled`);
  if (result.failed) {
    const how =
      result.exitCode === undefined
        ? `could not run (${result.shortMessage})`
        : result.exitCode === 0
          ? 'stopped reading its input before the end'
          : `exited with status ${result.exitCode}`;
    throw new PluginError(`${what}: \`${command}\` ${how}`, { stderr: String(result.stderr ?? ''), cause: result.cause });
  }
  return String(result.stdout ?? '');
}

/**
 * A transport made of shell commands, e.g. over ssh:
 *
 * ```ts
 * commandTransport({
 *   listPacks: 'ssh db2 dysnomia-snapshots --list-packs',
 *   receive: 'ssh db2 dysnomia-snapshots --import -C mysql-production -c shopdb -',
 *   restore: 'ssh db2 dysnomia --operation activate -C mysql-production -c shopdb && ssh db2 dysnomia --operation restore -C mysql-production -c shopdb',
 * })
 * ```
 *
 * {@link dysnomiaCommands} writes these for the dysnomia programs.
 */
export function commandTransport(commands: TransportCommands): MigrationTransport {
  return {
    // Bare, the command read as if it were the target: "asking `cat >/dev/null` which packs it has".
    description: commands.description ?? `the target of the receiving command \`${commands.receive}\``,
    async listPacks(signal) {
      if (commands.listPacks === undefined) return undefined;
      const output = await runCommand(commands.listPacks, 'listing the packs of the target', commands, signal);
      const packs = output.split('\n').map((line) => line.trim()).filter((line) => line !== '');
      const bad = packs.find((pack) => !/^[0-9a-f]{64}$/.test(pack));
      if (bad !== undefined) {
        throw new OperationError(`\`${commands.listPacks}\` printed ${JSON.stringify(bad)}, which is not a pack hash`);
      }
      return packs;
    },
    async receive(stream, signal) {
      await runCommand(commands.receive, 'importing the snapshot on the target', commands, signal, stream);
    },
    async restore(signal) {
      const output = await runCommand(commands.restore, 'restoring on the target', commands, signal);
      return restoreReport(output);
    },
  };
}

/**
 * The result `dysnomia --operation restore --json` printed last on stdout (what dysnomiaCommands
 * runs), so that migrate can check which snapshot the target restored; undefined for a command
 * that prints something else.
 */
function restoreReport(output: string): TargetRestoreReport | undefined {
  const start = output.startsWith('{\n') ? 0 : output.lastIndexOf('\n{\n');
  if (start < 0) return undefined;
  try {
    const result = JSON.parse(output.slice(start)) as OperationResult;
    return result.operation === 'restore' ? { restored: result } : undefined;
  } catch {
    return undefined;
  }
}

/** What {@link dysnomiaCommands} needs to know about the target. */
export interface DysnomiaCommandsOptions {
  /** A command prefix that runs a command on the target, e.g. `ssh deploy@db2` (default: none, this machine). */
  via?: string;
  /**
   * Whether `via` hands the words to a shell on the target, as ssh does (it joins them with
   * spaces and the remote shell splits them again): then every word is quoted once more, for that
   * shell. Default true; false for a prefix that runs the words itself (`sudo -u dysnomia`).
   */
  viaShell?: boolean;
  /** The target container, as `dysnomia --container` takes it there (a name or a path). */
  container: string;
  /** The component, as `dysnomia --component` takes it there (a name or a path). */
  component: string;
  /** Environment on the target (e.g. DYSNOMIA_STATEDIR), set with `env` in each command. */
  env?: Record<string, string>;
  /** The programs on the target (default: `dysnomia` and `dysnomia-snapshots` on its PATH). */
  programs?: { dysnomia?: string[]; dysnomiaSnapshots?: string[] };
}

/** Quotes a word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}

/**
 * The commands of a {@link commandTransport} that runs the dysnomia programs on the target:
 * `--list-packs`, `--import -`, then `activate` (a no-op when activated) and `restore`.
 * Every word is shell-quoted, and with `via` (unless `viaShell: false`) quoted once more for the
 * shell on the target that ssh hands them to, so names with spaces arrive as one word.
 */
export function dysnomiaCommands(options: DysnomiaCommandsOptions): TransportCommands {
  const prefix = options.via === undefined || options.via.trim() === '' ? '' : `${options.via.trim()} `;
  const env = Object.entries(options.env ?? {}).map(([key, value]) => `${key}=${value}`);
  const envWords = env.length > 0 ? ['env', ...env] : [];
  // Quoted for `sh -c` here, and with a via that goes through a shell there, once more for it.
  const quote = prefix !== '' && options.viaShell !== false ? (word: string) => shellQuote(shellQuote(word)) : shellQuote;
  const line = (program: string[], args: string[]) => `${prefix}${[...envWords, ...program, ...args].map(quote).join(' ')}`;
  const dysnomia = options.programs?.dysnomia ?? ['dysnomia'];
  const snapshots = options.programs?.dysnomiaSnapshots ?? ['dysnomia-snapshots'];
  const target = ['--container', options.container, '--component', options.component];
  return {
    description: `${prefix === '' ? 'this machine' : prefix.trim()} (${nameFromPath(options.container)})`,
    listPacks: line(snapshots, ['--list-packs']),
    receive: line(snapshots, ['--import', '-C', options.container, '-c', options.component, '-']),
    // --json: migrate reads back which snapshot the target restored.
    restore: `${line(dysnomia, ['--operation', 'activate', ...target])} && ${line(dysnomia, ['--operation', 'restore', '--json', ...target])}`,
  };
}
