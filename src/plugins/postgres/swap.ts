/**
 * Swapping a loaded staging database in as the live one, on PostgreSQL: both renames run in ONE
 * transaction (ALTER DATABASE ... RENAME is transactional), so the live name always points at
 * the complete old or the complete new database; the old one is dropped only after the commit.
 * Other sessions on the live database must go first: they are terminated, with a log line
 * naming them. A killed run leaves at most the staging or the old database behind, never a
 * missing or half-loaded live one; the next restore, activation or collect-garbage drops them.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { messageOf, OperationError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { DatabaseNames } from '../sql/names.js';
import { databaseExists, type PgSession, quoteLiteral, quoteName } from './client.js';
import { tryLockDatabase } from './lock.js';
import { PLUGIN } from './options.js';

/** Terminates every other session on `database`; logs who they were. */
export async function terminateSessions(session: PgSession, database: string, why: string, log: Logger): Promise<void> {
  const rows = await session.query<{ pid: number; usename: string | null; application_name: string | null; terminated: boolean }>(
    `SELECT pid, usename, application_name, pg_terminate_backend(pid) AS terminated
       FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
    [database],
  );
  if (rows.length > 0) {
    const who = rows.map((r) => `pid ${r.pid} (${r.usename ?? '?'}${r.application_name ? `, ${r.application_name}` : ''})`);
    log.info(`terminating ${rows.length} session(s) connected to database ${database} ${why}: ${who.join(', ')}`);
  }
}

/** "database is being accessed by other users": someone connected between terminate and act. */
function isBusy(error: unknown): boolean {
  return (error as { code?: string }).code === '55006';
}

/** Runs `act` after terminating the sessions on `database`, retrying while new ones arrive. */
async function whileAlone(
  session: PgSession,
  database: string,
  why: string,
  timeoutMs: number,
  log: Logger,
  act: () => Promise<void>,
): Promise<void> {
  const deadline = performance.now() + Math.max(timeoutMs, 1000);
  for (;;) {
    await terminateSessions(session, database, why, log);
    try {
      return await act();
    } catch (error) {
      if (!isBusy(error) || performance.now() > deadline) throw error;
      await sleep(100);
    }
  }
}

/** Drops a database, terminating its sessions first. */
export async function dropDatabase(session: PgSession, database: string, why: string, timeoutMs: number, log: Logger): Promise<void> {
  await whileAlone(session, database, why, timeoutMs, log, async () => {
    await session.query(`DROP DATABASE IF EXISTS ${quoteName(database)}`);
  });
}

/**
 * Drops a copy of ours (a staging database, the replaced one, a leftover). A restore carries
 * IS_TEMPLATE over, and the server refuses to drop a template, so the mark is taken off first.
 */
export async function dropCopy(session: PgSession, database: string, why: string, timeoutMs: number, log: Logger): Promise<void> {
  if ((await session.query('SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate', [database])).length > 0) {
    await session.query(`ALTER DATABASE ${quoteName(database)} IS_TEMPLATE false`);
  }
  await dropDatabase(session, database, why, timeoutMs, log);
}

/** Drops what an interrupted run left behind. Returns true when there was something. */
export async function recoverSwap(session: PgSession, names: DatabaseNames, timeoutMs: number, log: Logger): Promise<boolean> {
  let found = false;
  let live: boolean | undefined;
  for (const leftover of [names.staging, names.old]) {
    if (!(await databaseExists(session, leftover))) continue;
    found = true;
    live ??= await databaseExists(session, names.live);
    // A rename is atomic: the live database is complete when it exists, and was never made when not.
    const state = live ? `${names.live} itself is complete` : `${names.live} does not exist: an activation that never finished, or a database dropped since`;
    log.warn(`dropping ${leftover}, left behind by an interrupted restore or activation of ${names.live} (${state})`);
    await dropCopy(session, leftover, 'to drop it', timeoutMs, log);
  }
  return found;
}

/**
 * Creates the staging database. With a live database, its encoding, locale, owner and tablespace
 * are kept (they are the database's, not the dump's; the load then writes into that tablespace);
 * otherwise the server's defaults apply, as with createdb. The rest of the database's own state
 * is carried over after the load (database-state.ts).
 */
export async function createStaging(session: PgSession, names: DatabaseNames): Promise<void> {
  // to_jsonb: the locale columns differ between server versions (daticulocale, datlocale).
  const [row] = await session.query<{ d: Record<string, unknown>; encoding: string; owner: string; tablespace: string }>(
    `SELECT to_jsonb(d) AS d, pg_encoding_to_char(encoding) AS encoding, pg_get_userbyid(datdba) AS owner,
            (SELECT spcname FROM pg_tablespace WHERE oid = d.dattablespace) AS tablespace
       FROM pg_database d WHERE datname = $1`,
    [names.live],
  );
  if (row === undefined) {
    await session.query(`CREATE DATABASE ${quoteName(names.staging)}`);
    return;
  }
  const d = row.d;
  const clauses = [
    'TEMPLATE template0',
    `ENCODING ${quoteLiteral(row.encoding)}`,
    `LC_COLLATE ${quoteLiteral(String(d.datcollate))}`,
    `LC_CTYPE ${quoteLiteral(String(d.datctype))}`,
    `OWNER ${quoteName(row.owner)}`,
  ];
  // pg_default is where template0 is anyway; naming it would need CREATE on it from a non-superuser.
  if (row.tablespace !== 'pg_default') clauses.push(`TABLESPACE ${quoteName(row.tablespace)}`);
  const locale = d.datlocale ?? d.daticulocale;
  if (d.datlocprovider === 'i') clauses.push('LOCALE_PROVIDER icu', `ICU_LOCALE ${quoteLiteral(String(locale))}`);
  if (d.datlocprovider === 'b') clauses.push('LOCALE_PROVIDER builtin', `BUILTIN_LOCALE ${quoteLiteral(String(locale))}`);
  await session.query(`CREATE DATABASE ${quoteName(names.staging)} ${clauses.join(' ')}`);
}

/** Runs `work` on a fresh control session (client.ts, withSession). */
export type Reconnect = <T>(work: (session: PgSession) => Promise<T>) => Promise<T>;

/** What the catalog says about a swap whose commit may or may not have happened. */
type Outcome = 'committed' | 'not committed' | 'unknown';

/** The databases of a swap, by oid: names can change hands, oids cannot. */
interface SwapOids {
  staging: number | undefined;
  /** The live database before the swap; undefined when there was none. */
  live: number | undefined;
}

async function oidOf(session: PgSession, database: string): Promise<number | undefined> {
  const [row] = await session.query<{ oid: number }>('SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1', [database]);
  return row === undefined ? undefined : Number(row.oid);
}

/**
 * Reads the outcome of an interrupted swap from the catalog: the live name on the staging
 * database's oid means the renames committed; on the old live database's oid (or on nothing, when
 * there was none) means they did not. Anything else is someone else's doing.
 */
async function outcomeOf(session: PgSession, names: DatabaseNames, oids: SwapOids): Promise<Outcome> {
  const live = await oidOf(session, names.live);
  if (live !== undefined && live === oids.staging) return 'committed';
  return live === oids.live ? 'not committed' : 'unknown';
}

/** Waits, at most `timeoutMs`, until server process `pid` has ended (a commit in flight with it). */
async function backendGone(session: PgSession, pid: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + Math.max(timeoutMs, 1000);
  while (performance.now() < deadline) {
    if ((await session.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).length === 0) return;
    await sleep(50);
  }
}

/**
 * Runs `work` on `session` if it still answers, otherwise on a fresh session once the old server
 * process has ended, and only while no other run holds the server lock (one that does cleans up
 * itself). Resolves to undefined when neither was possible.
 */
async function onLiveSession<T>(
  session: PgSession,
  reconnect: Reconnect | undefined,
  names: DatabaseNames,
  timeoutMs: number,
  work: (session: PgSession) => Promise<T>,
): Promise<T | undefined> {
  let alive = true;
  try {
    await session.query('SELECT 1');
  } catch {
    alive = false;
  }
  if (alive) return work(session);
  if (reconnect === undefined) return undefined;
  return reconnect(async (fresh) => {
    await backendGone(fresh, session.pid, timeoutMs);
    if (!(await tryLockDatabase(fresh, names.live))) return undefined;
    return work(fresh);
  });
}

/**
 * Makes the staging database the live one. If anything fails before the commit, the live
 * database is untouched and the staging database is dropped (a full copy must not linger). When
 * the connection dies while the commit is under way, `reconnect` finds out on a fresh session
 * whether it went through, so that the error says truly which data is live.
 */
export async function swapIn(session: PgSession, names: DatabaseNames, timeoutMs: number, log: Logger, reconnect?: Reconnect): Promise<void> {
  let sent = false;
  const oids: SwapOids = { staging: undefined, live: undefined };
  try {
    oids.staging = await oidOf(session, names.staging);
    oids.live = await oidOf(session, names.live);
    if (oids.live === undefined) {
      sent = true;
      await session.query(`ALTER DATABASE ${quoteName(names.staging)} RENAME TO ${quoteName(names.live)}`);
      return;
    }
    await whileAlone(session, names.live, 'to swap in the restored copy', timeoutMs, log, async () => {
      await session.query('BEGIN');
      try {
        await session.query(`ALTER DATABASE ${quoteName(names.live)} RENAME TO ${quoteName(names.old)}`);
        await session.query(`ALTER DATABASE ${quoteName(names.staging)} RENAME TO ${quoteName(names.live)}`);
        sent = true;
        await session.query('COMMIT');
      } catch (error) {
        await session.query('ROLLBACK').catch(() => {});
        throw error;
      }
    });
  } catch (error) {
    await failedSwap(session, reconnect, names, oids, timeoutMs, log, error, sent);
  }
  const dropOld = (on: PgSession) => dropCopy(on, names.old, 'to drop the replaced copy', timeoutMs, log);
  try {
    await dropOld(session);
  } catch (error) {
    // Again on a fresh session only if this one died; otherwise, or if that fails too, the error stands.
    const retried = await onLiveSession(session, reconnect, names, timeoutMs, async (live) => live !== session && (await dropOld(live), true)).catch(() => false);
    if (retried === true) return;
    throw new OperationError(
      `the restored ${names.live} is in place, but dropping the replaced copy ${names.old} failed: ${messageOf(error)}; the next activate or restore drops it`,
      { plugin: PLUGIN, cause: error },
    );
  }
}

/**
 * After the swap failed: finds out whether it went through if the commit may have been under way
 * (`maybeCommitted`), drops the copy that is not live (on a fresh session if this one is gone),
 * and throws an error that says which data is live.
 */
async function failedSwap(
  session: PgSession,
  reconnect: Reconnect | undefined,
  names: DatabaseNames,
  oids: SwapOids,
  timeoutMs: number,
  log: Logger,
  error: unknown,
  maybeCommitted: boolean,
): Promise<never> {
  const cause = messageOf(error);
  let outcome: Outcome = 'not committed';
  let cleaned = false;
  try {
    const settled = await onLiveSession(session, reconnect, names, timeoutMs, async (live) => {
      const found = maybeCommitted ? await outcomeOf(live, names, oids) : 'not committed';
      const leftover = found === 'committed' ? names.old : found === 'not committed' ? names.staging : undefined;
      if (leftover !== undefined) {
        await dropCopy(live, leftover, 'to drop it', timeoutMs, log).then(
          () => (cleaned = true),
          (dropError: unknown) => log.warn(`cannot drop ${leftover} (${messageOf(dropError)}); the next activate or restore drops it`),
        );
      }
      return found;
    });
    outcome = settled ?? (maybeCommitted ? 'unknown' : 'not committed');
  } catch {
    outcome = maybeCommitted ? 'unknown' : 'not committed';
  }
  const leftoverNote = cleaned ? '' : '; the next activate or restore drops the copy that is not live';
  if (outcome === 'committed') {
    throw new OperationError(
      `the swap of ${names.live} was interrupted (${cause}) after it had gone through: the restored data of ${names.live} is in place${leftoverNote}`,
      { plugin: PLUGIN, cause: error },
    );
  }
  if (outcome === 'unknown') {
    throw new OperationError(
      `the swap of ${names.live} was interrupted (${cause}), and whether it went through is not known here: ${names.live} holds its old data, its restored data or what another run has put there since, never a mix${leftoverNote}`,
      { plugin: PLUGIN, cause: error },
    );
  }
  throw new OperationError(
    `cannot swap the restored copy in as ${names.live}: ${cause}${leftoverNote}\nThe live database ${names.live} is unchanged: the swap did not happen.`,
    { plugin: PLUGIN, cause: error },
  );
}
