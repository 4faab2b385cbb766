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
import { AbortedError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';

/** One engine's side of the lock. */
export interface ServerLock {
  /** Takes the lock if it is free; true when this session holds it now. */
  tryTake(): Promise<boolean>;
  /** Who holds it, for the message ("server session 42, root@localhost, for 12 s"), if known. */
  holder(): Promise<string | undefined>;
}

const POLL_MS = 200;

/**
 * Takes the lock on `database`, waiting as long as another run holds it (as the component lock
 * does), with one log line saying who it waits for. Stops when `signal` is aborted.
 */
export async function takeServerLock(
  lock: ServerLock,
  database: string,
  server: string,
  plugin: string,
  log: Logger,
  signal?: AbortSignal,
): Promise<void> {
  let told = false;
  for (;;) {
    if (await lock.tryTake()) return;
    if (!told) {
      const holder = await lock.holder();
      log.info(`waiting for another dysnomia run on database ${database} on ${server} to finish${holder === undefined ? '' : ` (${holder})`}`);
      told = true;
    }
    if (signal?.aborted) throw new AbortedError(`cancelled while waiting for another dysnomia run on database ${database}`, { plugin });
    await sleep(POLL_MS);
  }
}
