/**
 * One operation on one component: the library form of `dysnomia --operation OP`.
 */
import { describeShell, type OperationResult, runOperation } from '../core/dispatcher.js';
import { AbortedError, UsageError } from '../core/errors.js';
import type { Operation, ShellInfo } from '../core/plugin.js';
import { type ComponentOptions, toRequest } from './options.js';

/** The operations {@link run} accepts: every operation except `shell`. */
export type ComponentOperation = Exclude<Operation, 'shell'>;

/**
 * Runs `operation` on one component and returns what it did. Throws the typed errors of
 * dysnomia (ConfigError, OperationError, PluginError, LockTimeoutError, AbortedError, ...).
 */
export async function run(operation: ComponentOperation, options: ComponentOptions): Promise<OperationResult> {
  if ((operation as Operation) === 'shell') {
    throw new UsageError('the shell operation has no library form; use describeComponentShell');
  }
  return whenAborted(options.signal, operation, runOperation(await toRequest(operation, options)));
}

/**
 * A call whose signal fired rejects with AbortedError, whatever a tool or stream threw on the
 * way out (Node's AbortError, a killed process), so callers can tell cancellation apart.
 */
export async function whenAborted<T>(signal: AbortSignal | undefined, what: string, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (signal?.aborted && !(error instanceof AbortedError)) {
      throw new AbortedError(`${what} cancelled`, { cause: error });
    }
    throw error;
  }
}

/** Deploys the component into the container (creates the database with its initial state). */
export function activate(options: ComponentOptions): Promise<OperationResult> {
  return run('activate', options);
}

/** Marks the component as garbage; its data stays until {@link collectGarbage}. */
export function deactivate(options: ComponentOptions): Promise<OperationResult> {
  return run('deactivate', options);
}

/** Asks the component to stop accepting writes (plugin specific; a no-op by default). */
export function lock(options: ComponentOptions): Promise<OperationResult> {
  return run('lock', options);
}

/** Undoes {@link lock}. */
export function unlock(options: ComponentOptions): Promise<OperationResult> {
  return run('unlock', options);
}

/** Takes a snapshot into the store; an unchanged component makes no new generation. */
export function snapshot(options: ComponentOptions): Promise<OperationResult> {
  return run('snapshot', options);
}

/** Restores the latest snapshot safely: staged, checked, then swapped in. */
export function restore(options: ComponentOptions): Promise<OperationResult> {
  return run('restore', options);
}

/** Removes a component marked as garbage from its container; skipped when it is not garbage. */
export function collectGarbage(options: ComponentOptions): Promise<OperationResult> {
  return run('collect-garbage', options);
}

/** How to reach a component from a shell (help lines and environment; never a password). */
export async function describeComponentShell(
  options: ComponentOptions,
): Promise<ShellInfo & { module: string }> {
  return describeShell(await toRequest('shell', options));
}
