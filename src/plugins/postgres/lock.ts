/**
 * The server lock of a database (sql/server-lock.ts) on PostgreSQL: a session-level advisory
 * lock. Its two 32-bit keys are a fixed word for dysnomia and the first 32 bits of the SHA-256 of
 * the database name, computed here so that the holder can be found in pg_locks. Advisory locks
 * belong to the database the session is on; every control session is on the same maintenance
 * database (client.ts, openSession). Two names that share a key only wait for each other.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../core/log.js';
import { takeServerLock } from '../sql/server-lock.js';
import type { PgSession } from './client.js';
import { describeServer, PLUGIN, type PostgresOptions } from './options.js';

/** "Dys1" as a 32-bit word: the first key of every dysnomia advisory lock. */
const DYSNOMIA_KEY = 0x44797331;

function keyOf(database: string): number {
  return createHash('sha256').update(database).digest().readInt32BE(0);
}

/** The lock as an engine gives it: try once, and say who holds it. */
function advisoryLock(session: PgSession, database: string) {
  const key = keyOf(database);
  return {
    tryTake: async () => {
      const [row] = await session.query<{ taken: boolean }>('SELECT pg_try_advisory_lock($1::int, $2::int) AS taken', [DYSNOMIA_KEY, key]);
      return row?.taken === true;
    },
    holder: async () => {
      // pg_locks shows the two keys as oids, that is unsigned.
      const [row] = await session.query<{ pid: number; usename: string | null; client: string | null; seconds: number | null }>(
        `SELECT a.pid, a.usename,
                CASE WHEN a.client_addr IS NOT NULL THEN host(a.client_addr) WHEN a.client_port = -1 THEN 'local socket' ELSE 'an address hidden from this role' END AS client,
                round(extract(epoch FROM now() - a.backend_start))::int AS seconds
           FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
          WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
            AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid`,
        [DYSNOMIA_KEY, key >>> 0],
      );
      return row === undefined ? undefined : `server process ${row.pid}, role ${row.usename ?? '?'} over ${row.client}, connected ${row.seconds ?? '?'} s ago`;
    },
  };
}

/**
 * Takes the server lock of `database` for the rest of the session, waiting while another run holds
 * it. The session may then sit idle through a long load; the server must not close it for that
 * (idle_session_timeout, from PostgreSQL 14), or the lock goes with it.
 */
export async function lockDatabase(
  session: PgSession,
  options: PostgresOptions,
  database: string,
  log: Logger,
  signal?: AbortSignal,
  timeoutMs?: number,
): Promise<void> {
  if (session.serverVersion >= 140000) await session.query('SET idle_session_timeout = 0');
  return takeServerLock(advisoryLock(session, database), { database, server: describeServer(options), plugin: PLUGIN, log, signal, timeoutMs });
}

/** Takes the server lock of `database` if it is free; false when another run holds it. */
export function tryLockDatabase(session: PgSession, database: string): Promise<boolean> {
  return advisoryLock(session, database).tryTake();
}
