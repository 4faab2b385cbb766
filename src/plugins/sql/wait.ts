/** Waiting for a database server that may still be starting. */
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, messageOf, OperationError } from '../../core/errors.js';

export interface WaitOptions {
  /** How long to keep trying, in milliseconds. */
  timeoutMs: number;
  /** True for errors worth retrying (refused, no socket yet, starting up). */
  isTransient(error: unknown): boolean;
  /** The server, for the message: `MariaDB at /run/mysqld/mysqld.sock`. */
  what: string;
  /** What to check when the server never answered. */
  hint: string;
  plugin: string;
  signal?: AbortSignal;
}

const RETRY_MS = 200;

/**
 * Calls `attempt` with the time left until it succeeds, fails with a non-transient error, or the
 * time is up; then throws an OperationError saying how long we waited and the last error.
 */
export async function waitForServer<T>(attempt: (remainingMs: number) => Promise<T>, options: WaitOptions): Promise<T> {
  const deadline = performance.now() + options.timeoutMs;
  for (;;) {
    if (options.signal?.aborted) throw new AbortedError('cancelled while waiting for the server', { plugin: options.plugin });
    const remaining = Math.max(1, deadline - performance.now());
    try {
      return await attempt(remaining);
    } catch (error) {
      if (!options.isTransient(error)) throw error;
      if (performance.now() + RETRY_MS >= deadline) {
        const seconds = Math.round(options.timeoutMs / 100) / 10;
        throw new OperationError(
          `${options.what} did not answer within ${seconds} s (${messageOf(error)}); ${options.hint}`,
          { plugin: options.plugin, cause: error },
        );
      }
      await sleep(RETRY_MS);
    }
  }
}
