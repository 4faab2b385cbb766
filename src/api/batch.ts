/**
 * Operations over every component of a machine: `dysnomia-containers --deploy`, `--snapshot`,
 * `--restore`, `--collect-garbage`, `--operation OP`. Each goes on past a failing component and
 * reports every outcome, so a nightly run never stops silently at the first bad database.
 */
import { existsSync } from 'node:fs';
import { type OperationResult, runOperation } from '../core/dispatcher.js';
import { AbortedError, messageOf, UsageError } from '../core/errors.js';
import { silentLogger } from '../core/log.js';
import { isOperation, OPERATIONS } from '../core/plugin.js';
import { assertSafeName, type ComponentSpec, type ContainerSpec, findContainerFile, loadContainerFile } from '../core/resolve.js';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { type ComponentOperation, whenAborted } from './operations.js';
import { type CommonOptions, requestSettings, stateDirOf } from './options.js';
import {
  type ComponentsSurvey,
  listActivatedComponents,
  listAvailableComponents,
  listGarbageComponents,
  surveyComponents,
} from './queries.js';

/** Options of the machine-wide actions. */
export interface BatchOptions extends CommonOptions {
  /** Only the components of this container (by name), as `-C` does. */
  container?: string;
  /**
   * Called after each component, e.g. to print a line as the run goes. A callback that throws (or
   * returns a promise that rejects) is reported once through `log.warn` and not called again; the
   * run goes on.
   */
  onOutcome?: (outcome: ComponentOutcome) => void;
}

/** What happened to one component in a machine-wide action. */
export interface ComponentOutcome extends ComponentKey {
  operation: ComponentOperation;
  /** `failed`: it threw (see `error`); `cancelled`: stopped or never started because the signal fired. */
  status: 'done' | 'skipped' | 'failed' | 'cancelled';
  /** The operation's result, when it did not fail. */
  result?: OperationResult;
  /** What went wrong, when it failed. */
  error?: unknown;
  durationMs: number;
}

/** The outcome of a machine-wide action. */
export interface BatchResult {
  outcomes: ComponentOutcome[];
  /** The outcomes that failed or were cancelled; empty when everything went well. */
  failures: ComponentOutcome[];
}

interface Job {
  operation: ComponentOperation;
  key: ComponentKey;
  /** The component's folder; for components no longer available, its marker (as Dysnomia passes). */
  componentPath: string;
}

/** Loads containers by name once per batch; a container that cannot be loaded fails its components. */
function containerLoader(env: NodeJS.ProcessEnv): (name: string) => Promise<ContainerSpec> {
  const cache = new Map<string, Promise<ContainerSpec>>();
  return (name) => {
    let loaded = cache.get(name);
    if (loaded === undefined) {
      loaded = findContainerFile(name, env).then((file) => loadContainerFile(file, env));
      // The rejection is handled by each awaiting job; this keeps Node from reporting it early.
      loaded.catch(() => {});
      cache.set(name, loaded);
    }
    return loaded;
  };
}

async function runJobs(jobs: Job[], options: BatchOptions): Promise<BatchResult> {
  const env = options.env ?? process.env;
  const log = options.log ?? silentLogger;
  const loadContainer = containerLoader(env);
  const outcomes: ComponentOutcome[] = [];
  let outcomeFailed = false;
  for (const job of jobs) {
    const started = performance.now();
    const base = { ...job.key, operation: job.operation };
    let outcome: ComponentOutcome;
    if (options.signal?.aborted) {
      outcome = { ...base, status: 'cancelled', error: new AbortedError(`${job.operation} not started: cancelled`), durationMs: 0 };
    } else {
      log.info(`${VERBS[job.operation]} ${keyString(job.key)}`);
      try {
        const container = await loadContainer(job.key.container);
        const component: ComponentSpec = { name: componentName(job), path: job.componentPath };
        const result = await whenAborted(
          options.signal,
          job.operation,
          runOperation({ operation: job.operation, container, component, ...requestSettings(options) }),
        );
        outcome = { ...base, status: result.status, result, durationMs: result.durationMs };
      } catch (error) {
        const durationMs = Math.round(performance.now() - started);
        const cancelled = error instanceof AbortedError;
        outcome = { ...base, status: cancelled ? 'cancelled' : 'failed', error, durationMs };
        if (!cancelled) {
          log.warn(`${job.operation} of ${job.key.container}/${job.key.component} failed: ${messageOf(error)}`);
        }
      }
    }
    outcomes.push(outcome);
    if (options.onOutcome !== undefined && !outcomeFailed) {
      // A bug in the caller's callback must not stop a nightly run after its first component:
      // it is told once, as onProgress is, and the other components are still done.
      const callbackFailed = (error: unknown) => {
        if (outcomeFailed) return;
        outcomeFailed = true;
        log.warn(`the onOutcome callback threw (${messageOf(error)}); it is not called again for this run`);
      };
      try {
        // An async callback's rejection would otherwise end the process as an unhandled one.
        const returned: unknown = options.onOutcome(outcome);
        if (returned instanceof Promise) returned.catch(callbackFailed);
      } catch (error) {
        callbackFailed(error);
      }
    }
  }
  return { outcomes, failures: outcomes.filter((o) => o.status === 'failed' || o.status === 'cancelled') };
}

/**
 * The component's name, checked as `dysnomia` checks it before activating: a folder of the tree
 * named `shop~` or `ünï` would otherwise be created and marked activated, then refused by every
 * snapshot (the store takes only usable names), failing each night. Other operations take the
 * name as it is, so a marker made before is still deactivated and collected.
 */
function componentName(job: Job): string {
  if (job.operation !== 'activate') return job.key.component;
  return assertSafeName(job.key.component, 'component', job.componentPath);
}

function keyString(key: ComponentKey): string {
  return `${key.container}/${key.component}`;
}

/**
 * The folders of the available components by `container/component`. An unreadable components tree
 * must not stop a nightly snapshot: the components then get their marker paths, with a warning.
 */
async function availablePaths(options: BatchOptions): Promise<Map<string, string>> {
  try {
    const available = await listAvailableComponents({ ...options, log: silentLogger });
    return new Map(available.map((a) => [keyString(a), a.path]));
  } catch (error) {
    (options.log ?? silentLogger).warn(`cannot read the components tree (${messageOf(error)}); using marker paths`);
    return new Map();
  }
}

const VERBS: Record<ComponentOperation, string> = {
  activate: 'activating',
  deactivate: 'deactivating',
  lock: 'locking',
  unlock: 'unlocking',
  snapshot: 'snapshotting',
  restore: 'restoring',
  'collect-garbage': 'collecting garbage of',
};

/**
 * Makes the machine match its components tree: deactivates every activated component that is no
 * longer available (first, as Dysnomia does), then activates every available one not activated.
 */
export async function deploy(options: BatchOptions = {}): Promise<BatchResult> {
  const stateDir = stateDirOf(options);
  let survey: ComponentsSurvey;
  try {
    survey = await surveyComponents(options);
  } catch (error) {
    throw new UsageError(`cannot read the components tree (${messageOf(error)}); --deploy changed nothing`, { cause: error });
  }
  const { available, gaps } = survey;
  const activated = await listActivatedComponents({ ...options, stateDir });
  const availableKeys = new Set(available.map(keyString));
  const activatedKeys = new Set(activated.map(keyString));
  const jobs: Job[] = [];
  const leaving = activated.filter((key) => !availableKeys.has(keyString(key)));
  // A tree that is missing or broken must not look like "these components left": their data
  // would go at the next --collect-garbage.
  if (leaving.length > 0 && gaps.length > 0) {
    throw new UsageError(
      `${gaps.join('; ')}; so --deploy cannot tell whether ${leaving.map(keyString).join(', ')} really left the tree, and deactivating them would let --collect-garbage remove their data. Nothing was changed. Create the missing folders (an empty one will do) or take them out of DYSNOMIA_COMPONENTS_PATH, and fix or remove the dangling links`,
    );
  }
  for (const key of leaving) {
    jobs.push({ operation: 'deactivate', key, componentPath: stateLayout.activated(stateDir, key) });
  }
  for (const component of available) {
    if (activatedKeys.has(keyString(component))) continue;
    jobs.push({ operation: 'activate', key: component, componentPath: component.path });
  }
  return runJobs(jobs, { ...options, stateDir });
}

/**
 * Runs `operation` on every activated component (of `options.container`, when given). Components
 * still in the components tree get their folder; others get their marker path, as in Dysnomia.
 */
export async function runOnActivated(
  operation: ComponentOperation,
  options: BatchOptions = {},
): Promise<BatchResult> {
  if (!isOperation(operation) || (operation as string) === 'shell') {
    // Checked once here: per component, each would fail alike, and 'shell' with an internal message.
    throw new UsageError(`${JSON.stringify(operation)} is not an operation runOnActivated can run (one of ${OPERATIONS.filter((o) => o !== 'shell').join(', ')})`);
  }
  const stateDir = stateDirOf(options);
  const paths = await availablePaths(options);
  const jobs = (await listActivatedComponents({ ...options, stateDir })).map((key) => ({
    operation,
    key,
    componentPath: paths.get(keyString(key)) ?? stateLayout.activated(stateDir, key),
  }));
  if (jobs.length === 0 && !existsSync(stateDir)) {
    // A nightly cron as another user, or a typo in DYSNOMIA_STATEDIR, would back up nothing in silence.
    (options.log ?? silentLogger).warn(
      `the state dir ${stateDir} does not exist, so no component is activated in it; if that is not expected, check DYSNOMIA_STATEDIR and the user this runs as (root's default is /var/state/dysnomia)`,
    );
  }
  return runJobs(jobs, { ...options, stateDir });
}

/** Snapshots every activated component: the nightly backup. */
export function snapshotAll(options: BatchOptions = {}): Promise<BatchResult> {
  return runOnActivated('snapshot', options);
}

/** Restores every activated component from its latest snapshot. */
export function restoreAll(options: BatchOptions = {}): Promise<BatchResult> {
  return runOnActivated('restore', options);
}

/** Removes every component marked as garbage from its container. */
export async function collectAllGarbage(options: BatchOptions = {}): Promise<BatchResult> {
  const stateDir = stateDirOf(options);
  const paths = await availablePaths(options);
  const jobs = (await listGarbageComponents({ ...options, stateDir })).map((key) => ({
    operation: 'collect-garbage' as const,
    key,
    componentPath: paths.get(keyString(key)) ?? stateLayout.garbage(stateDir, key),
  }));
  return runJobs(jobs, { ...options, stateDir });
}
