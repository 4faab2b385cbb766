/**
 * Runs one operation on one component: load the plugin, validate the container's properties, lock
 * the component, call the plugin, keep the markers, and report what happened.
 */
import path from 'node:path';
import { PassThrough, pipeline, Readable, Transform } from 'node:stream';
import { distance } from 'fastest-levenshtein';
import { exists } from '../snapshot-store/fs-util.js';
import { componentLockFile } from '../snapshot-store/layout.js';
import { SnapshotStore } from '../snapshot-store/index.js';
import { AbortedError, ChangedMeanwhileError, ConfigError, DysnomiaError, messageOf, OperationError, PluginError, UsageError } from './errors.js';
import { withLock } from './lock.js';
import { type Logger, silentLogger } from './log.js';
import {
  type AnyPlugin,
  isOperation,
  isPassThrough,
  type Operation,
  OPERATIONS,
  type PassThroughPlugin,
  type Plugin,
  type PluginContext,
  type ProgressEvent,
  type ShellInfo,
  type SnapshotSink,
  type SnapshotSource,
} from './plugin.js';
import { builtInTypes, loadPlugin } from './registry.js';
import { type ComponentSpec, type ContainerSpec, findContainerFile, loadContainerFile } from './resolve.js';
import {
  type ComponentKey,
  clearGarbage,
  isActivated,
  isGarbage,
  listMarked,
  markActive,
  markGarbage,
  stateLayout,
} from './state-dir.js';

/** Everything one operation needs. */
export interface OperationRequest {
  operation: Operation;
  container: ContainerSpec;
  component: ComponentSpec;
  stateDir: string;
  log?: Logger;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  /** Bound on waiting for the component lock, in milliseconds. */
  lockTimeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  /** Human output of plugins (echo, external modules). Default: process.stdout. */
  print?: (text: string) => void;
  /** Use this plugin instead of looking the container's type up (a library caller's own plugin). */
  plugin?: AnyPlugin;
}

/** What an operation did. */
export interface OperationResult {
  operation: Operation;
  container: string;
  component: string;
  /** `done`, or `skipped` when there was nothing to do (already activated, not garbage, ...). */
  status: 'done' | 'skipped';
  /** A one-line account of what happened, for people. */
  message: string;
  /** The snapshot taken or restored, if any. */
  snapshot?: {
    identity: string;
    generation?: number;
    newGeneration?: boolean;
    newSnapshot?: boolean;
    /** True when the plugin's fingerprint showed the component unchanged, and nothing was dumped. */
    byFingerprint?: boolean;
  };
  /** Logical bytes read from or written to the component. */
  bytesRead: number;
  /** Bytes newly stored in the pool. */
  bytesStored: number;
  durationMs: number;
}

/** A plugin ready to use: loaded, options validated. */
export interface PreparedOperation {
  plugin: AnyPlugin;
  ctx: PluginContext<unknown>;
}

/** Loads the plugin for the container and validates its properties (a ConfigError if bad). */
export async function prepare(request: OperationRequest): Promise<PreparedOperation> {
  const env = request.env ?? process.env;
  const plugin = request.plugin ?? (await loadPlugin(request.container.type, env, request.container.file));
  const log = (request.log ?? silentLogger).child(plugin.type);
  if (isPassThrough(plugin) && plugin.modulePath !== undefined && builtInTypes.includes(request.container.type)) {
    // Pointing DYSNOMIA_MODULES_PATH at Dysnomia's own modules folder brings its mysql-database
    // and postgresql-database too, whose restore loads straight into the live database: said every time.
    log.warn(
      `the module ${plugin.modulePath} (found in DYSNOMIA_MODULES_PATH) handles ${request.container.type} instead of the built-in plugin, whose restore keeps the live data until the new copy is verified, and whose snapshots are deduplicated; to use the built-in one, take ${path.dirname(plugin.modulePath)} out of DYSNOMIA_MODULES_PATH, or give the modules you need a folder of their own (links to them)`,
    );
  }
  refuseUndecodable(plugin, request.container);
  const options = isPassThrough(plugin) || isDefaultNoOp(plugin, request.operation)
    ? undefined
    : plugin.parseOptions(request.container.properties, request.container.file);
  if (!isPassThrough(plugin) && options !== undefined) warnUnknownProperties(plugin, request.container, log);
  let progressFailed = false;
  const ctx: PluginContext<unknown> = {
    operation: request.operation,
    component: request.component,
    container: request.container,
    options,
    stateDir: request.stateDir,
    lockTimeoutMs: request.lockTimeoutMs,
    log,
    signal: request.signal,
    progress: (stage, bytes, totalBytes) => {
      if (request.onProgress === undefined || progressFailed) return;
      // The caller's callback runs inside a plugin's streams: one that throws there would escape
      // as an uncaught exception and leave the operation hanging. It is told once and not called
      // again; the operation goes on.
      try {
        request.onProgress({ operation: request.operation, component: request.component.name, stage, bytes, totalBytes });
      } catch (error) {
        progressFailed = true;
        log.warn(`the onProgress callback threw (${messageOf(error)}); it is not called again for this operation`);
      }
    },
    print: request.print ?? ((text) => process.stdout.write(text)),
    printFd: request.print === undefined ? 1 : undefined,
  };
  return { plugin, ctx };
}

/**
 * Refuses to run when a variable the plugin would get from the environment (`--environment`) is
 * not UTF-8: Node has replaced its bytes, so the plugin would get another value than the one set
 * (a password that then fails, a path that is not there), without a word. An external module gets
 * the whole environment; a built-in plugin only the properties it reads; echo none.
 */
function refuseUndecodable(plugin: AnyPlugin, container: ContainerSpec): void {
  const undecodable = container.undecodable ?? [];
  if (undecodable.length === 0) return;
  // echo shows only the type of an environment container.
  const affected = isPassThrough(plugin)
    ? plugin.modulePath === undefined ? [] : undecodable
    : undecodable.filter((name) => propertiesRead(plugin).includes(name));
  if (affected.length === 0) return;
  const which = affected.length === 1 ? `variable ${affected[0]} is` : `variables ${affected.join(', ')} are`;
  throw new ConfigError(
    `the environment ${which} not UTF-8 text, and ${plugin.type} would get another value than the one set (Node reads the environment as UTF-8); set it in UTF-8, or unset it. Nothing was done`,
  );
}

/** The container properties a built-in plugin reads: its own prefixed ones and the shared ones. */
function propertiesRead(plugin: Plugin<unknown>): readonly string[] {
  return [...(plugin.properties ?? []), ...(plugin.unprefixedProperties ?? [])];
}

/**
 * Warns about each property with the plugin's prefix that the plugin does not read: a misspelt
 * `mysqlUser` would otherwise leave the client to log in as the default user without a word.
 */
function warnUnknownProperties(plugin: Plugin<unknown>, container: ContainerSpec, log: Logger): void {
  const prefixed = plugin.properties ?? [];
  const unprefixed = plugin.unprefixedProperties ?? [];
  const known = propertiesRead(plugin);
  const prefix = /^[a-z]+/.exec(prefixed[0] ?? '')?.[0];
  // A library caller's object of properties has neither a file nor the environment behind it.
  const where = container.file ?? (container.fromEnvironment ? 'the environment' : `the properties of container ${container.name}`);
  for (const key of Object.keys(container.properties)) {
    if (known.includes(key)) continue;
    const meant = prefix === undefined ? undefined : prefixedTypo(key, prefix, prefixed);
    const near = meant ?? nearMiss(key, unprefixed);
    if (near === undefined) continue;
    log.warn(
      `${where}: the property ${key} is not one ${plugin.type} reads, so it is ignored; did you mean ${near}? (it reads ${known.join(', ')})`,
    );
  }
}

/**
 * The prefixed name `key` most likely stands for, or undefined when it is no typo of one. A known
 * name in the wrong case (mysqlport, postgresqlusername) is the likeliest typo of all, though a
 * lowercase continuation (mysqlish) is otherwise taken as someone else's property.
 */
function prefixedTypo(key: string, prefix: string, prefixed: readonly string[]): string | undefined {
  const wrongCase = prefixed.some((name) => name.toLowerCase() === key.toLowerCase());
  if (!wrongCase && (!key.startsWith(prefix) || !/^[A-Z]/.test(key.slice(prefix.length)))) return undefined;
  return likeliest(key, prefixed);
}

/**
 * The unprefixed name `key` is at most two edits from, letter case aside (`timout`, `Timeout`,
 * `timeuot`), or undefined. Names this short that lie further off (`time`, `timer`) are more likely
 * someone else's than ours.
 */
function nearMiss(key: string, unprefixed: readonly string[]): string | undefined {
  return unprefixed.find((name) => distance(key.toLowerCase(), name.toLowerCase()) <= 2);
}

/**
 * The known name that begins most like `key`, letter case aside (`mysqlUser`: `mysqlUsername`;
 * `mysqlPasword`: `mysqlPassword`). A typo keeps the start of a name far more often than not, and
 * the plugins' few names differ early, so this is enough without an edit distance.
 */
function likeliest(key: string, known: readonly string[]): string {
  const shared = (name: string) => {
    let at = 0;
    while (at < name.length && at < key.length && name[at]!.toLowerCase() === key[at]!.toLowerCase()) at++;
    return at;
  };
  return known.reduce((best, name) => (shared(name) > shared(best) ? name : best));
}

/**
 * lock and unlock of a plugin without them are no-ops, and need no properties: Disnix runs them
 * with `--environment` but without the container's properties (Dysnomia's modules ignore them), so
 * requiring `gitBaseDir` there would stop every deployment at its lock step.
 */
function isDefaultNoOp(plugin: Plugin<unknown>, operation: Operation): boolean {
  return (operation === 'lock' && plugin.lock === undefined) || (operation === 'unlock' && plugin.unlock === undefined);
}

function keyOf(request: OperationRequest): ComponentKey {
  return { container: request.container.name, component: request.component.name };
}

/**
 * Runs an operation (not `shell`, see {@link describeShell}). Throws a DysnomiaError on failure;
 * the component's markers change only when the plugin succeeded.
 */
export async function runOperation(request: OperationRequest): Promise<OperationResult> {
  const started = performance.now();
  // The library's callers are not held to the type: an unknown operation would otherwise take
  // the lock and come back looking like a success.
  if (!isOperation(String(request.operation))) {
    throw new UsageError(`unknown operation ${JSON.stringify(request.operation)}: expected one of ${OPERATIONS.join(', ')}`);
  }
  const { plugin, ctx } = await prepare(request);
  if (!isPassThrough(plugin) && ctx.options !== undefined) await plugin.checkComponent?.(ctx);
  const key = keyOf(request);
  const lockFile = componentLockFile(request.stateDir, key);
  if (request.signal?.aborted) {
    throw new AbortedError(`${request.operation} of ${key.container}/${key.component} cancelled before it started; nothing was changed`, {
      cause: request.signal.reason,
    });
  }
  const partial = await withLock(
    lockFile,
    'exclusive',
    {
      what: `component ${key.container}/${key.component} (${request.operation})`,
      timeoutMs: request.lockTimeoutMs,
      log: ctx.log,
      signal: request.signal,
    },
    () =>
      dispatch(request, plugin, ctx, key).catch((error: unknown) => {
        throw asPluginError(error, plugin.type, `${request.operation} of ${key.container}/${key.component}`);
      }),
  );
  return {
    operation: request.operation,
    container: key.container,
    component: key.component,
    ...partial,
    durationMs: Math.round(performance.now() - started),
  };
}

/**
 * A driver's or the system's error that escaped a plugin (a lost connection, EPIPE) becomes a
 * PluginError naming the operation, so the user gets a clear message and exit 1, not an
 * "unexpected error". Errors without a code (a bug) stay as they are.
 */
function asPluginError(error: unknown, plugin: string, what: string): unknown {
  if (error instanceof DysnomiaError || !(error instanceof Error)) return error;
  if (typeof (error as { code?: unknown }).code !== 'string') return error;
  return new PluginError(`${what} failed: ${error.message}`, { plugin, cause: error });
}

/** What a step returns; runOperation adds the names and the duration. */
type StepResult = Omit<OperationResult, 'operation' | 'container' | 'component' | 'durationMs'>;

async function dispatch(
  request: OperationRequest,
  plugin: AnyPlugin,
  ctx: PluginContext<unknown>,
  key: ComponentKey,
): Promise<StepResult> {
  const { stateDir } = request;
  const done = (message: string): StepResult => ({ status: 'done', message, bytesRead: 0, bytesStored: 0 });
  const skipped = (message: string): StepResult => ({
    status: 'skipped',
    message,
    bytesRead: 0,
    bytesStored: 0,
  });
  const name = `${key.container}/${key.component}`;

  switch (request.operation) {
    case 'activate': {
      await call(plugin, ctx, 'activate');
      await recordMarker(request, 'activate', name, () => markActive(stateDir, key));
      return done(`activated ${name}`);
    }
    case 'deactivate': {
      // A module keeps its own state, and Dysnomia always calls it (a service activated by a
      // module that keeps no markers must still be stopped); a built-in plugin is called only
      // for an activated component.
      if (!isPassThrough(plugin)) {
        if (await isGarbage(stateDir, key)) {
          return skipped(`${name} is already deactivated (marked as garbage); nothing to do`);
        }
        if (!(await isActivated(stateDir, key))) {
          return skipped(`${name} is not activated; nothing to do`);
        }
      }
      await call(plugin, ctx, 'deactivate');
      const marked = await recordMarker(request, 'deactivate', name, () => markGarbage(stateDir, key));
      return marked
        ? done(`deactivated ${name}; it is marked as garbage until collect-garbage`)
        : done(`deactivated ${name} (module ${plugin.type}); it was not marked as activated, so no garbage mark was set`);
    }
    case 'lock':
    case 'unlock': {
      // Disnix runs lock and unlock on every component, so a plugin without them succeeds; the
      // message says that nothing was held, rather than claim a lock.
      if (!isPassThrough(plugin) && isDefaultNoOp(plugin, request.operation)) {
        return done(`nothing to ${request.operation} for ${name} (the ${plugin.type} plugin has no ${request.operation} step)`);
      }
      await call(plugin, ctx, request.operation);
      return done(`${request.operation === 'lock' ? 'locked' : 'unlocked'} ${name}`);
    }
    case 'collect-garbage': {
      if (!(await isGarbage(stateDir, key))) {
        return skipped(`${name} is not marked as garbage; nothing collected`);
      }
      if (!isPassThrough(plugin)) await refuseShared(request, plugin, ctx, key);
      await call(plugin, ctx, 'collect-garbage');
      await recordMarker(request, 'collect-garbage', name, () => clearGarbage(stateDir, key));
      return done(`collected ${name}`);
    }
    case 'snapshot': {
      if (isPassThrough(plugin)) {
        await asModuleInStore(request, plugin, ctx, 'snapshot', name);
        return done(`snapshot of ${name} taken by module ${plugin.type}`);
      }
      return snapshot(request, plugin, ctx, key);
    }
    case 'restore': {
      if (isPassThrough(plugin)) {
        await asModuleInStore(request, plugin, ctx, 'restore', name);
        return done(`restore of ${name} done by module ${plugin.type}`);
      }
      return restore(request, plugin, ctx, key);
    }
    case 'shell':
      throw new OperationError('the shell operation is run through describeShell, not runOperation');
  }
}

/**
 * Refuses to collect a component whose data an activated component of another container uses: two
 * containers that reach the same server (or gitBaseDir) give a component name the same database.
 * A deployment that moved `shop` from one such container to the other leaves the old one marked
 * as garbage, and collecting it would remove the live data. The other containers are found in
 * DYSNOMIA_CONTAINERS_PATH or beside this one's file. One that is not found (Disnix runs every
 * operation with --environment, so its containers have no files) cannot be compared: when it has
 * a component of the same name activated, nothing is removed.
 */
async function refuseShared(request: OperationRequest, plugin: Plugin<unknown>, ctx: PluginContext<unknown>, key: ComponentKey): Promise<void> {
  if (plugin.location === undefined) return;
  const mine = plugin.location(ctx.options, request.component);
  const env = request.env ?? process.env;
  const found = new Map<string, OtherContainer>();
  const keep = `if ${key.container}/${key.component}'s data is not garbage after all, remove the marker ${stateLayout.garbage(request.stateDir, key)}`;
  for (const other of await listMarked(request.stateDir, 'activated')) {
    if (other.container === key.container) continue;
    if (!found.has(other.container)) found.set(other.container, await containerOptions(request, plugin, other.container, env));
    const container = found.get(other.container)!;
    if (container.kind === 'other-type') continue;
    if (container.kind === 'unknown') {
      if (other.component !== key.component) continue;
      throw new OperationError(
        `not collecting ${key.container}/${key.component}: ${other.container}/${other.component} is activated, and whether it keeps its data in the same place (${mine}) cannot be told: ${container.why}. Nothing was removed. Put ${other.container}'s container file in DYSNOMIA_CONTAINERS_PATH (or beside this container's file) so that the two can be compared, or, if its data is garbage too, deactivate ${other.container}/${other.component} first; ${keep}`,
      );
    }
    const { options } = container;
    const theirs = plugin.location(options, { ...request.component, name: other.component });
    let place: Place;
    try {
      place = await comparePlaces(plugin, { options: ctx.options, location: mine }, { options, location: theirs }, other.component === key.component, ctx.log, ctx.signal);
    } catch (error) {
      // When the servers cannot say, nothing is removed.
      if (error instanceof AbortedError) throw error;
      throw new OperationError(
        `not collecting ${key.container}/${key.component}: ${other.container}/${other.component} is activated with a database of the same name at ${theirs}, and whether that is this container's server (${mine}) cannot be told: ${messageOf(error)}. Nothing was removed. Run collect-garbage again when both servers answer; if ${other.container} uses another server that is gone for good, deactivate ${other.container}/${other.component} first; ${keep}`,
        { cause: error },
      );
    }
    if (place === 'apart') continue;
    const where = place === 'same' ? `the same place (${mine})` : `the same place, reached another way (${theirs} and ${mine} are one server)`;
    throw new OperationError(
      `not collecting ${key.container}/${key.component}: ${other.container}/${other.component} is activated and keeps its data in ${where}, so removing it would remove that component's data. Nothing was removed. If the data really is garbage, deactivate ${other.container}/${other.component} first; ${keep}`,
    );
  }
}

/** Where two containers keep a component's data, compared; see {@link comparePlaces}. */
export type Place = 'same' | 'one-server' | 'apart';

/**
 * Compares where two containers keep a component's data: `same` when their locations are one text;
 * `one-server` when they differ but the plugin finds the two servers are one (the same database
 * name reached another way: a socket and 127.0.0.1), which only components of one name
 * (`sameName`) can share; else `apart`. Throws what sameServer throws when the servers cannot
 * tell; the caller says what that stops.
 */
export async function comparePlaces(
  plugin: Plugin<unknown>,
  mine: { options: unknown; location: string },
  theirs: { options: unknown; location: string },
  sameName: boolean,
  log: Logger,
  signal?: AbortSignal,
): Promise<Place> {
  if (mine.location === theirs.location) return 'same';
  if (!sameName || plugin.sameServer === undefined) return 'apart';
  return (await plugin.sameServer(mine.options, theirs.options, log, signal)) ? 'one-server' : 'apart';
}

/** Another container, as collect-garbage can know it. */
type OtherContainer =
  | { kind: 'found'; options: unknown }
  /** Of another type: its components' data is not this plugin's. */
  | { kind: 'other-type' }
  /** Not found or not readable; `why` says which. */
  | { kind: 'unknown'; why: string };

/** Another container's options, looked up by name in DYSNOMIA_CONTAINERS_PATH and beside this container's file. */
async function containerOptions(request: OperationRequest, plugin: Plugin<unknown>, name: string, env: NodeJS.ProcessEnv): Promise<OtherContainer> {
  const files = [await findContainerFile(name, env).catch(() => undefined)];
  if (request.container.file !== undefined) files.push(path.join(path.dirname(request.container.file), name));
  const problems: string[] = [];
  for (const file of files) {
    if (file === undefined || !(await exists(file))) continue;
    try {
      const spec = await loadContainerFile(file, env);
      return spec.type === plugin.type ? { kind: 'found', options: plugin.parseOptions(spec.properties, spec.file) } : { kind: 'other-type' };
    } catch (error) {
      problems.push(messageOf(error));
    }
  }
  // Without a file, a container named after another built-in type (as --environment names one
  // when no --container is given) is of that type.
  if (problems.length === 0 && builtInTypes.includes(name) && name !== plugin.type) return { kind: 'other-type' };
  return {
    kind: 'unknown',
    why: problems.length > 0 ? `its container file cannot be read (${problems.join('; ')})` : `no container file named ${name} was found (with --environment, as Disnix runs dysnomia, only this container's properties are known)`,
  };
}

/**
 * Updates a marker after the plugin succeeded. A failure here is reported as such: the work was
 * done, only its record in the state dir is missing.
 */
async function recordMarker<T>(
  request: OperationRequest,
  operation: Operation,
  name: string,
  update: () => Promise<T>,
): Promise<T> {
  try {
    return await update();
  } catch (error) {
    throw new OperationError(
      `${operation} of ${name} succeeded, but recording it in the state dir ${request.stateDir} failed (${messageOf(error)}); check that the state dir is a writable folder, then run the operation again`,
      { cause: error },
    );
  }
}

async function call(
  plugin: AnyPlugin,
  ctx: PluginContext<unknown>,
  operation: 'activate' | 'deactivate' | 'lock' | 'unlock' | 'collect-garbage',
): Promise<void> {
  if (isPassThrough(plugin)) return plugin.run(ctx);
  switch (operation) {
    case 'activate':
      return plugin.activate(ctx);
    case 'deactivate':
      return plugin.deactivate?.(ctx);
    case 'lock':
      return plugin.lock?.(ctx);
    case 'unlock':
      return plugin.unlock?.(ctx);
    case 'collect-garbage':
      return plugin.collectGarbage(ctx);
  }
}

/**
 * Runs a module's snapshot or restore under the store lock, shared as for ours: the module writes
 * its snapshot folder before it links its generation, and reads the folder a generation names;
 * a gc in between would remove the one or the other.
 */
function asModuleInStore(
  request: OperationRequest,
  plugin: PassThroughPlugin,
  ctx: PluginContext<unknown>,
  operation: 'snapshot' | 'restore',
  name: string,
): Promise<void> {
  const what = `the snapshot store (${operation} of ${name} by module ${plugin.type})`;
  return storeFor(request, ctx.log).withStoreLock('shared', what, request.signal, () => plugin.run(ctx));
}

function storeFor(request: OperationRequest, log: Logger): SnapshotStore {
  return new SnapshotStore(request.stateDir, { log, lockTimeoutMs: request.lockTimeoutMs });
}

/** What an unchanged snapshot adds when the plugin's fingerprint told, and nothing was dumped. */
const UNCHANGED_BY_FINGERPRINT = ' (the server reports no change since that snapshot was taken, so nothing was dumped)';

/** How often a snapshot is taken before a component that keeps changing under it is reported. */
const SNAPSHOT_ATTEMPTS = 3;

async function snapshot(
  request: OperationRequest,
  plugin: Plugin<unknown>,
  ctx: PluginContext<unknown>,
  key: ComponentKey,
): Promise<StepResult> {
  const name = `${key.container}/${key.component}`;
  let outcome;
  try {
    for (let attempt = 1; ; attempt += 1) {
      try {
        const naturalIdentity = await plugin.identify?.(ctx);
        outcome = await storeFor(request, ctx.log).write(
          key,
          {
            type: plugin.type,
            naturalIdentity,
            fingerprint: plugin.fingerprint && (() => plugin.fingerprint!(ctx)),
            signal: request.signal,
            onProgress: (bytes) => ctx.progress('snapshot', bytes),
          },
          (sink) => plugin.snapshot(ctx, readingAtOnce(sink)),
        );
        break;
      } catch (error) {
        // A busy component (a repository pushed to) may well be quiet a moment later.
        if (!(error instanceof ChangedMeanwhileError) || attempt >= SNAPSHOT_ATTEMPTS) throw error;
        ctx.log.warn(`${error.message}; nothing was stored, taking the snapshot again (attempt ${attempt + 1} of ${SNAPSHOT_ATTEMPTS})`);
      }
    }
  } catch (error) {
    // What a failed dump left is gone (the store discards it): the message says so, as a failed
    // restore says the live data is unchanged.
    if (error instanceof DysnomiaError && !/No generation was added/.test(error.message)) {
      error.message += `\nNo snapshot of ${name} was stored; its generations are as they were.`;
    }
    throw error;
  }
  if (outcome === undefined) {
    return {
      status: 'skipped',
      message: `${plugin.type} wrote no data for ${name}; no snapshot taken`,
      bytesRead: 0,
      bytesStored: 0,
    };
  }
  const message = outcome.newGeneration
    ? `snapshot of ${name}: ${outcome.identity} (generation ${outcome.generation}${outcome.newSnapshot ? '' : ', existing snapshot'})`
    : `snapshot of ${name} unchanged: ${outcome.identity} is already generation ${outcome.generation}${outcome.byFingerprint ? UNCHANGED_BY_FINGERPRINT : ''}`;
  return {
    status: outcome.newGeneration ? 'done' : 'skipped',
    message,
    snapshot: {
      identity: outcome.identity,
      generation: outcome.generation,
      newGeneration: outcome.newGeneration,
      newSnapshot: outcome.newSnapshot,
      ...(outcome.byFingerprint ? { byFingerprint: true } : {}),
    },
    bytesRead: outcome.bytesRead,
    bytesStored: outcome.bytesStored,
  };
}

/**
 * A sink that starts reading each stream the moment the plugin hands it over. The store may take
 * streams one after the other, and Node discards what a child process wrote to a stdout nobody
 * reads when the process exits: a dump that ends before its turn would be stored truncated.
 */
function readingAtOnce(sink: SnapshotSink): SnapshotSink {
  return {
    addStream: (name, data) => {
      if (!(data instanceof Readable)) return sink.addStream(name, data);
      // pipeline (not pipe) passes a failing source's error on, so the store never waits forever.
      // Object mode on the reading side hands the store each piece as it was written: a byte-mode
      // stream joins everything buffered into a new buffer on every read (a copy of the dump).
      const pieces = new PassThrough({ readableObjectMode: true, readableHighWaterMark: 16 });
      return sink.addStream(name, pipeline(data, pieces, () => {}));
    },
  };
}

async function restore(
  request: OperationRequest,
  plugin: Plugin<unknown>,
  ctx: PluginContext<unknown>,
  key: ComponentKey,
): Promise<StepResult> {
  const name = `${key.container}/${key.component}`;
  // The store's shared lock is held through the whole restore, before the plugin takes any lock
  // of its own (store.ts, withLatest).
  return storeFor(request, ctx.log).withLatest(key, async (source): Promise<StepResult> => {
    if (source === undefined) {
      return {
        status: 'skipped',
        message: `no snapshot of ${name} in ${request.stateDir}; nothing restored`,
        bytesRead: 0,
        bytesStored: 0,
      };
    }
    const outcome = await plugin.restore(ctx, reportingReads(source, ctx));
    if (outcome?.restored === false) {
      return {
        status: 'skipped',
        message: `${name} is in the state of ${source.identity} already (${outcome.reason}); nothing restored`,
        snapshot: { identity: source.identity },
        bytesRead: 0,
        bytesStored: 0,
      };
    }
    const bytesRead = source.streams.reduce((sum, stream) => sum + (source.size(stream) ?? 0), 0);
    return {
      status: 'done',
      message: `restored ${name} from ${source.identity}`,
      snapshot: { identity: source.identity },
      bytesRead,
      bytesStored: 0,
    };
  }, request.signal);
}

/**
 * The snapshot as the plugin reads it, reporting the bytes read so far (of all its streams) as
 * the restore's progress: every plugin reports the same way, without code of its own.
 */
function reportingReads(source: SnapshotSource, ctx: PluginContext<unknown>): SnapshotSource {
  const sizes = source.streams.map((stream) => source.size(stream));
  const total = sizes.every((size) => size !== undefined) ? sizes.reduce<number>((sum, size) => sum + size!, 0) : undefined;
  let bytes = 0;
  return {
    identity: source.identity,
    type: source.type,
    path: source.path,
    streams: source.streams,
    size: (name) => source.size(name),
    verify: () => source.verify(),
    open(name) {
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          bytes += chunk.length;
          ctx.progress('restore', bytes, total);
          callback(null, chunk);
        },
      });
      // pipeline: an error of the snapshot's stream (damage) reaches the reader, and a reader
      // that stops (a cancel) stops the snapshot's stream.
      pipeline(source.open(name), counter, () => {});
      return counter;
    },
  };
}

/** For `--shell`: how to reach the component, and the environment for the shell. */
export async function describeShell(request: OperationRequest): Promise<ShellInfo & { module: string }> {
  const { plugin, ctx } = await prepare({ ...request, operation: 'shell' });
  const info = (await plugin.shell?.(ctx)) ?? { help: [] };
  return { ...info, module: info.module ?? plugin.type };
}

/** Re-export for callers that want to tell expected errors apart. */
export { DysnomiaError };
