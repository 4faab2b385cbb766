import type { Logger } from './log.js';

/** How to take a lock. */
export interface LockOptions {
  /** What the lock protects, for the "waiting for ..." message. */
  what: string;
  /** Give up after this many milliseconds (undefined: wait forever). */
  timeoutMs?: number;
  log?: Logger;
  signal?: AbortSignal;
}

/**
 * Runs `fn` while holding the lock file `file` in the given mode. Placeholder until the store
 * issue lands the real implementation (shared/exclusive, stale takeover, timeout).
 */
export async function withLock<T>(
  _file: string,
  _mode: 'shared' | 'exclusive',
  _options: LockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  return fn();
}
