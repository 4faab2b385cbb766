/**
 * A lock on the database server, per live database, held by a run's control session for as long
 * as it may create, swap or drop the database or its helpers.
 *
 * The component lock in the state dir serializes runs that share a state dir and a container
 * name. Runs that do not (another state dir, a second container file for the same server, another
 * host) would otherwise take each other's staging database for a leftover of a killed run and
 * drop it mid-load. The server's own session locks (PostgreSQL advisory locks, MariaDB GET_LOCK)
 * are released by the server when the session ends, so a killed run never leaves one behind.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { AbortedError, LockTimeoutError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';

/** One engine's side of the lock. */
export interface ServerLock {
  /** Takes the lock if it is free; true when this session holds it now. */
  tryTake(): Promise<boolean>;
  /** Who holds it, for the message ("server connection 42, root@localhost"), if known. */
  holder(): Promise<string | undefined>;
}

/** How to wait for the lock. */
export interface ServerLockWait {
  /** The database, for the messages. */
  database: string;
  /** The server, for the messages. */
  server: string;
  plugin: string;
  log: Logger;
  signal?: AbortSignal;
  /** Give up after this many milliseconds (undefined: wait as long as it takes, as the component lock does). */
  timeoutMs?: number;
}

const POLL_MS = 200;

/**
 * Takes the lock on a database, waiting while another run holds it, with one log line saying who
 * it waits for. Stops when the signal is aborted, and after `timeoutMs` with a LockTimeoutError
 * naming the holder.
 */
export async function takeServerLock(lock: ServerLock, wait: ServerLockWait): Promise<void> {
  const deadline = wait.timeoutMs === undefined ? undefined : performance.now() + wait.timeoutMs;
  let told = false;
  for (;;) {
    if (await lock.tryTake()) return;
    if (!told) {
      const holder = await lock.holder();
      wait.log.info(`waiting for another dysnomia run on database ${wait.database} on ${wait.server} to finish${holder === undefined ? '' : ` (${holder})`}`);
      told = true;
    }
    if (wait.signal?.aborted) throw new AbortedError(`cancelled while waiting for another dysnomia run on database ${wait.database}`, { plugin: wait.plugin });
    if (deadline !== undefined && performance.now() >= deadline) {
      const holder = await lock.holder();
      throw new LockTimeoutError(
        `gave up after ${Math.round(wait.timeoutMs! / 100) / 10} s waiting for another dysnomia run on database ${wait.database} on ${wait.server}${holder === undefined ? '' : ` (${holder})`}; nothing was changed: try again when it has finished`,
        { plugin: wait.plugin },
      );
    }
    await sleep(POLL_MS);
  }
}
