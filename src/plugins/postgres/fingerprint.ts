/**
 * The fingerprint of a database (core/plugin.ts): a text that stays the same only while nothing
 * the dump shows can have changed.
 *
 * - The server's current transaction snapshot (`xmin:xmax:in-progress`). A change to rows, large
 *   objects, the catalogs or roles is made by a transaction with an id, and no transaction with an
 *   id ends without moving this snapshot: its xmax is one past the last transaction that ended,
 *   and a transaction still running below it is listed. It covers the whole cluster, so a change
 *   in another database dumps this one again too: that is only slower.
 * - Every sequence's value and whether it was called, as pg_dump reads them: `nextval` and
 *   `setval` change a sequence outside any transaction, and an unlogged one without even taking an
 *   id.
 * - Where the write-ahead log ends and where its last checkpoint is. Whatever else changes what
 *   the dump shows goes through the log (a change made outside a transaction), and a crash, after
 *   which the server empties unlogged tables and may have lost the last commits made with
 *   `synchronous_commit` off, ends with a checkpoint of its own, without a restart.
 * - When the server started (a restart may bring back an older copy of the data), the database's
 *   OID (a restore or a re-created database has a new one), the role, and what shapes the dump's
 *   bytes: the row order, FORMAT below and this dysnomia's version (so the first snapshot after an
 *   upgrade dumps once).
 *
 * A standby has none: its state comes from the primary's log, not from its own transactions. Nor
 * has a server older than 10 (no pg_current_wal_insert_lsn), or one that cannot answer the query
 * (a server that only speaks PostgreSQL's protocol): their snapshots always dump. A session that
 * cannot be opened fails the snapshot before it dumps, with the message the dump would give (but
 * for a missing database, which the snapshot's own check reports).
 */
import { createHash } from 'node:crypto';
import { messageOf } from '../../core/errors.js';
import type { PluginContext } from '../../core/plugin.js';
import { packageVersion } from '../../core/version.js';
import { openSession } from './client.js';
import type { PostgresOptions } from './options.js';

/**
 * Raised whenever the dump gives other bytes for the same data (dump.ts, restrict.ts), so that a
 * database recorded before is dumped again in the new form.
 */
const FORMAT = 'postgresql-database/1';

const OLDEST = 100000;

/** One statement, so that every fact is read at one moment. */
function factsQuery(serverVersion: number): string {
  const current = serverVersion >= 130000 ? 'pg_catalog.pg_current_snapshot()' : 'pg_catalog.txid_current_snapshot()';
  // The catalog's functions and tables are named with their schema, though the session searches
  // pg_catalog first (fingerprint below).
  return `SELECT ${current}::text AS snapshot, pg_catalog.pg_current_wal_insert_lsn()::text AS wal,
                 (SELECT checkpoint_lsn::text FROM pg_catalog.pg_control_checkpoint()) AS checkpoint,
                 pg_catalog.pg_postmaster_start_time()::text AS started, current_user AS role,
                 (SELECT oid::text FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()) AS database,
                 (SELECT pg_catalog.string_agg(pg_catalog.format('%s=%s', s.oid, pg_catalog.query_to_xml(
                           pg_catalog.format('SELECT last_value, is_called FROM %I.%I', n.nspname, s.relname), false, false, '')), ','
                         ORDER BY s.oid)
                    FROM pg_catalog.pg_class s JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
                   WHERE s.relkind = 'S' AND NOT pg_catalog.pg_is_other_temp_schema(n.oid)) AS sequences`;
}

export async function fingerprint(ctx: PluginContext<PostgresOptions>, database: string): Promise<string | undefined> {
  const options = ctx.options;
  // One session, on the database itself: a snapshot reads this twice, and each session costs
  // about 15 ms to open and as much to close.
  let session;
  try {
    session = await openSession(options, ctx.log, ctx.signal, database);
  } catch (error) {
    // The snapshot says what is wrong with a missing database; the fingerprint leaves it to it.
    if (missingDatabase(error)) return undefined;
    // Anything else (no answer within timeout, a refused login, no CONNECT privilege) would fail
    // the snapshot's own sessions and pg_dump's alike: it fails the snapshot here, said once.
    throw error;
  }
  try {
    if (session.serverVersion < OLDEST) return undefined;
    // Objects or settings of the database itself must not stand in for the catalog's functions
    // (a shadowing format() would freeze the fingerprint); and a lock must not hold a snapshot.
    await session.query('SET search_path = pg_catalog, pg_temp');
    await session.query(`SET lock_timeout = ${Math.max(1000, options.timeoutMs)}`);
    await session.query(`SET statement_timeout = ${Math.max(1000, options.timeoutMs)}`);
    const [standby] = await session.query<{ recovery: boolean }>('SELECT pg_catalog.pg_is_in_recovery() AS recovery');
    if (standby?.recovery !== false) return undefined;
    const [facts] = await session.query(factsQuery(session.serverVersion));
    if (facts === undefined) return undefined;
    // This dysnomia's version too, so that a release's first snapshot of an unchanged database
    // dumps. Between releases (the version does not change), a change to the dump's bytes still
    // raises FORMAT.
    const text = JSON.stringify({ ...facts, rowOrder: options.rowOrder, dysnomia: packageVersion() });
    return `${FORMAT}:${createHash('sha256').update(text).digest('hex')}`;
  } catch (error) {
    // Without a fingerprint the snapshot dumps, as it always did: a query this server cannot
    // answer must not stop it.
    if (ctx.signal?.aborted) throw error;
    ctx.log.warn(`cannot read the fingerprint of ${database} (${messageOf(error)}); a snapshot without one dumps the database`);
    return undefined;
  } finally {
    // Not awaited: nothing waits for the server to see the session go.
    void session.end().catch(() => {});
  }
}

function missingDatabase(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown } }).cause;
  return cause?.code === '3D000' || /database ".*" does not exist/.test(messageOf(error));
}
