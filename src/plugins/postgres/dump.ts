/**
 * Snapshots of a PostgreSQL database: one consistent plain-SQL dump, streamed into the store.
 *
 * By default that is one plain pg_dump, rows in their physical order. That order moves with every
 * update and with every insert that reuses space VACUUM freed; with `postgresqlRowOrder=key`,
 * tables with a primary key have their rows copied in key order instead, all inside one snapshot
 * (docs/postgresql-database.md, "Snapshots"; options.ts says when that pays off):
 *
 * 1. a session on the database opens a REPEATABLE READ transaction and exports its snapshot;
 * 2. `pg_dump --snapshot --section=pre-data` writes the schema;
 * 3. `pg_dump --snapshot --section=data --exclude-table-data=<keyed tables>` writes everything
 *    else of the data section: tables without a key, sequence values, large objects;
 * 4. one psql, importing the same snapshot, locks the keyed tables and writes `COPY ... FROM
 *    stdin` blocks for them from `COPY (SELECT <columns pg_dump would copy> FROM ONLY t ORDER BY <key>)`;
 * 5. `pg_dump --snapshot --section=post-data` writes indexes, constraints and triggers.
 *
 * Steps 2 to 5 start together and take their locks at once (see keyOrderedDump for why); their
 * output is written in order.
 *
 * The result is a plain dump that psql loads like any other. Tables whose names are not plain
 * identifiers keep pg_dump's own copy, as do servers older than 12 (the whole database then).
 *
 * A change to the bytes this gives for the same data must raise FORMAT in fingerprint.ts, or a
 * quiet database keeps its snapshot in the old form.
 */
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, messageOf, OperationError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { SnapshotSink } from '../../core/plugin.js';
import { dumpPieces, dumpWith, isStreamEcho, type ToolOptions } from '../sql/tool.js';
import { connectionArguments, findPgTools, type PgSession, sessionOn } from './client.js';
import { PLUGIN, type PostgresOptions, type RowOrder } from './options.js';
import { OwnRestrictFilter, OwnRestrictRemover } from './restrict.js';

/** The stream name, as in Dysnomia's snapshots (`dump.pgsql.xz` there, uncompressed here). */
export const DUMP_STREAM = 'dump.pgsql';


/** A table whose rows we copy ourselves, in key order. */
interface KeyedTable {
  schema: string;
  table: string;
  columns: string[];
  key: string[];
}

const PLAIN = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Tables pg_dump would copy that have a primary key, in the exporting transaction. */
async function keyedTables(session: PgSession): Promise<KeyedTable[]> {
  const rows = await session.query<{ schema: string; table: string; columns: string[] | null; key: string[] | null }>(
    `SELECT n.nspname AS schema, c.relname AS table,
            (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '') AS columns,
            (SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i
               CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              WHERE i.indrelid = c.oid AND i.indisprimary) AS key
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
        AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'
        AND NOT EXISTS (SELECT 1 FROM pg_depend d
                         WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
      ORDER BY 1, 2`,
  );
  return rows
    .filter((row) => row.key !== null && row.columns !== null)
    .map((row) => ({ schema: row.schema, table: row.table, columns: row.columns!, key: row.key! }))
    .filter((t) => [t.schema, t.table, ...t.columns, ...t.key].every((name) => PLAIN.test(name)));
}

const q = (name: string) => `"${name}"`;

/**
 * What pg_dump sets in each of its sessions, so that a database or role setting cannot end ours:
 * no statement timeout (a copy may take long, and a session waits on its output while the store
 * is slow), no idle-in-transaction timeout (the exporting session sits idle in its transaction
 * while the tools read its snapshot, and a session that ends takes its snapshot with it) and, on
 * 17 and later, no transaction timeout. Lock waits are bounded by lockTimeout instead.
 */
function noTimeouts(serverVersion: number): string[] {
  return [
    'SET statement_timeout = 0',
    'SET idle_in_transaction_session_timeout = 0',
    ...(serverVersion >= 170000 ? ['SET transaction_timeout = 0'] : []),
  ];
}

/** How long our sessions wait for a table lock, in milliseconds: the timeout, at least 1 s. */
const lockTimeout = (options: PostgresOptions) => Math.max(1000, options.timeoutMs);

/** The psql script writing the keyed tables' COPY blocks from the exported snapshot. */
function copyScript(tables: KeyedTable[], snapshot: string, encoding: string, serverVersion: number, lockMs: number): string {
  const lines = [
    // First, before a database or role setting can cancel anything.
    ...noTimeouts(serverVersion).map((set) => `${set};`),
    `SET lock_timeout = ${lockMs};`,
    '\\pset format unaligned',
    '\\pset tuples_only on',
    `SET client_encoding = '${encoding}';`,
    // pg_dump's settings, so that values read back exactly.
    'SET DateStyle = ISO;',
    'SET IntervalStyle = postgres;',
    // As pg_dump does on every version: a role or database setting of 0 or less would round floats.
    'SET extra_float_digits = 3;',
    'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;',
    `SET TRANSACTION SNAPSHOT '${snapshot}';`,
    'SET row_security = off;',
  ];
  // Every table at once, before the first copy, as pg_dump does (see keyOrderedDump). A lock that
  // is not granted within lock_timeout fails, and psql then shows the statement, naming the table.
  lines.push('\\set ECHO errors');
  for (const t of tables) lines.push(`LOCK TABLE ${q(t.schema)}.${q(t.table)} IN ACCESS SHARE MODE;`);
  for (const t of tables) {
    const name = `${q(t.schema)}.${q(t.table)}`;
    const columns = t.columns.map(q).join(', ');
    lines.push(
      `SELECT E'--\\n-- Data for Name: ${t.table}; Type: TABLE DATA; Schema: ${t.schema} (in primary key order)\\n--\\n';`,
      `SELECT 'COPY ${name} (${columns}) FROM stdin;';`,
      `COPY (SELECT ${columns} FROM ONLY ${name} ORDER BY ${t.key.map(q).join(', ')}) TO STDOUT;`,
      `SELECT E'\\\\.\\n\\n';`,
    );
  }
  lines.push('COMMIT;', '');
  return lines.join('\n');
}

/**
 * Pipes one part of the dump into `out` without ending it; a pg_dump part (`guarded`) without its
 * `\restrict` pair.
 */
function part(out: PassThrough, guarded: boolean) {
  return async (output: Readable) => {
    if (guarded) await pipeline(output, new OwnRestrictRemover(), out, { end: false });
    else await pipeline(output, out, { end: false });
  };
}

/**
 * Like part, once `before` (the part before this one) is written. If that failed, the tool's
 * output is dropped, so the tool can be stopped (a pipe nobody reads would keep it waiting).
 */
function partAfter(before: Promise<unknown>, out: PassThrough, guarded: boolean) {
  return async (output: Readable) => {
    try {
      await before;
    } catch (error) {
      output.destroy();
      throw error;
    }
    await part(out, guarded)(output);
  };
}

/** Runs pg_dump and returns its whole output (without its `\restrict` pair). */
async function collect(tool: string, args: string[], what: string, options: ToolOptions): Promise<Buffer> {
  const pieces: Buffer[] = [];
  await dumpWith(
    tool,
    args,
    what,
    async (output) => {
      for await (const piece of output) pieces.push(piece as Buffer);
    },
    options,
    [new OwnRestrictRemover()],
  );
  return Buffer.concat(pieces);
}

/**
 * Dumps `database` into the sink; throws if any tool failed, so the stream is discarded. pg_dump
 * gives up on a table lock held longer than the timeout instead of hanging behind it.
 */
export async function dumpDatabase(
  options: PostgresOptions,
  control: PgSession,
  database: string,
  sink: SnapshotSink,
  tool: ToolOptions,
  log: Logger,
  order: RowOrder = options.rowOrder,
): Promise<void> {
  const { dump, psql } = await findPgTools();
  // pg_dump chooses its own `\restrict` key, and the filters learn it from the dump (restrict.ts).
  const common = [...connectionArguments(options, database), `--lock-wait-timeout=${Math.max(1000, options.timeoutMs)}`];
  if (order === 'physical' || control.serverVersion < 120000) {
    // One tool: its output goes to the store as borrowed pieces (dumpPieces), without its pair.
    const filters = [new OwnRestrictFilter()];
    const debug = (message: string) => log.debug(message);
    await dumpPieces(dump, common, `dumping ${database}`, (pieces) => sink.addStream(DUMP_STREAM, pieces), { ...tool, debug }, filters);
    return;
  }
  const out = new PassThrough({ highWaterMark: 1024 * 1024 });
  const stored = sink.addStream(DUMP_STREAM, out);
  // A store that gives up stops reading: end the pipes, so the tools are stopped, not stuck.
  // Without an error: the store's error is reported (see causeOf), and a stream it never began
  // to read has no listener for one.
  stored.catch(() => out.destroy());
  try {
    await keyOrderedDump(options, control, database, { dump, psql, common, out, tool, log });
    out.end();
  } catch (error) {
    out.destroy(error as Error);
    throw await causeOf(error, stored);
  }
  await stored;
}

/**
 * What to report when the dump failed. A store that gives up (a full disk) destroys the stream
 * it reads, and the dump's pipes then fail with an abort or a premature close that only echoes
 * it; the store's own error, which settles a moment later, says what happened. Any other dump
 * error (the tool's exit status, a failed query) is its own cause.
 */
async function causeOf(error: unknown, stored: Promise<void>): Promise<unknown> {
  if (!isStreamEcho(error)) return error;
  const storeError = await stored.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  return storeError === undefined || isStreamEcho(storeError) ? error : storeError;
}


interface DumpParts {
  dump: string;
  psql: string;
  common: string[];
  out: PassThrough;
  tool: ToolOptions;
  log: Logger;
}

async function keyOrderedDump(options: PostgresOptions, control: PgSession, database: string, p: DumpParts): Promise<void> {
  const exporter = await sessionOn(control, options, database);
  // The tools run side by side; whatever happens they end before the snapshot does.
  const running: Promise<unknown>[] = [];
  const started = <T>(work: Promise<T>): Promise<T> => {
    work.catch(() => {}); // awaited below, or settled in finally
    running.push(work);
    return work;
  };
  try {
    for (const set of noTimeouts(exporter.serverVersion)) await exporter.query(set);
    await exporter.query('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    const [exported] = await exporter.query<{ id: string; encoding: string }>(
      'SELECT pg_export_snapshot() AS id, pg_encoding_to_char(encoding) AS encoding FROM pg_database WHERE datname = current_database()',
    );
    if (exported === undefined) throw new OperationError(`cannot export a snapshot of ${database}`, { plugin: PLUGIN });
    const tables = await keyedTables(exporter);
    // As pg_dump does: ACCESS SHARE locks until the end, so a TRUNCATE or a rewriting ALTER TABLE
    // cannot commit while the rows are copied (the exported snapshot would then see the table empty).
    if (tables.length > 0) {
      await exporter.query(`SET LOCAL lock_timeout = ${lockTimeout(options)}`);
      try {
        await exporter.query(`LOCK TABLE ${tables.map((t) => `${q(t.schema)}.${q(t.table)}`).join(', ')} IN ACCESS SHARE MODE`);
      } catch (error) {
        throw new OperationError(`cannot lock the ${tables.length} table(s) of ${database} to copy in key order within ${lockTimeout(options) / 1000} s: ${messageOf(error)}`, {
          plugin: PLUGIN,
          cause: error,
        });
      }
    }
    p.log.debug(`dumping ${tables.length} table(s) of ${database} in primary key order`);
    const inSnapshot = [...p.common, `--snapshot=${exported.id}`];
    const what = `dumping ${database}`;
    // These locks do not cover the tools' sessions: an ALTER TABLE that waits for them is queued
    // ahead of a tool's own lock on that table, and waits for our snapshot while the tool waits
    // for it, which the server cannot see as a deadlock. So every tool starts now and takes its
    // locks at once, as pg_dump takes them all at its start (an ALTER that comes later waits for
    // the whole snapshot), and each waits at most the timeout for them (pg_dump's
    // --lock-wait-timeout, psql's lock_timeout). Their output goes into the dump in order, each
    // part waiting, with back-pressure on its tool, for the one before it.
    // The schema parts are small: kept in memory.
    const preData = started(collect(p.dump, [...inSnapshot, '--section=pre-data'], what, p.tool));
    const postData = started(collect(p.dump, [...inSnapshot, '--section=post-data'], what, p.tool));
    const preWritten = started(preData.then((dumped) => void p.out.write(dumped)));
    const excluded = tables.map((t) => `--exclude-table-data=${q(t.schema)}.${q(t.table)}`);
    const dataWritten = started(
      dumpWith(p.dump, [...inSnapshot, '--section=data', ...excluded], what, partAfter(preWritten, p.out, true), p.tool),
    );
    let rowsWritten = dataWritten;
    if (tables.length > 0) {
      const script = copyScript(tables, exported.id, exported.encoding, exporter.serverVersion, lockTimeout(options));
      const args = [...connectionArguments(options, database), '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--file=-'];
      rowsWritten = started(
        dumpWith(p.psql, args, `${what} (rows in primary key order)`, partAfter(dataWritten, p.out, false), { ...p.tool, input: script }),
      );
    }
    await rowsWritten;
    p.out.write(await postData);
    await exporter.query('COMMIT');
  } catch (error) {
    throw await explained(error, exporter, database, options);
  } finally {
    await Promise.allSettled(running);
    await exporter.end().catch(() => {});
  }
}

/** A session holding or waiting for an ACCESS EXCLUSIVE lock on a table of the database. */
interface Conflict {
  pid: number;
  role: string | null;
  application: string | null;
  query: string | null;
  table: string;
  granted: boolean;
  /** It waits for a lock the session holding the snapshot has. */
  waits_for_us: boolean;
}

/**
 * The locks that keep ACCESS SHARE waiting: ACCESS EXCLUSIVE ones on tables (not their indexes)
 * of this database, held or asked for by other sessions. Our own sessions ask for none.
 */
const CONFLICTS = `SELECT a.pid, a.usename AS role, a.application_name AS application, left(a.query, 300) AS query,
       l.relation::regclass::text AS table, l.granted, pg_backend_pid() = ANY (pg_blocking_pids(a.pid)) AS waits_for_us
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND a.pid <> pg_backend_pid()
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = l.relation AND c.relkind IN ('r', 'p', 'm'))
 ORDER BY l.granted DESC, a.pid`;

/**
 * `query` on `session`, or undefined when it fails or gives no answer within `ms` (a server that
 * is gone without closing the connection must not make a failed dump hang).
 */
async function answer<T>(session: PgSession, sql: string, ms: number): Promise<T[] | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([session.query<T>(sql).catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The error to report for a failed key-order dump, with what the tools' own errors hide:
 * - the session holding the snapshot is gone (an administrator or a server-side timeout ended
 *   it): the tools then fail with `invalid snapshot identifier` or a lost connection;
 * - a lock wait of ours timed out: who holds the table, or waits for it ahead of us. One that
 *   waits for a lock the snapshot holds (an ALTER TABLE) made a cycle the server cannot see as a
 *   deadlock: our tool asked for the same table after it and queued behind it.
 * Errors from the store's side are left as they are (causeOf picks the store's own).
 */
async function explained(error: unknown, exporter: PgSession, database: string, options: PostgresOptions): Promise<unknown> {
  if (isStreamEcho(error) || error instanceof AbortedError) return error;
  const holder = `the session holding the snapshot of ${database} (server process ${exporter.pid})`;
  const ms = lockTimeout(options);
  let conflicts = await answer<Conflict>(exporter, CONFLICTS, ms);
  if (conflicts === undefined) {
    // A failed statement of its own (its lock wait timed out) leaves the session alive, outside
    // its transaction once rolled back.
    if ((await answer(exporter, 'ROLLBACK', ms)) === undefined) {
      const why = exporter.lost?.();
      return new OperationError(
        `${holder} ended before the dump was complete${why === undefined ? '' : ` (${why})`}, so its parts cannot be shown to ` +
          `read one snapshot; nothing was stored (${messageOf(error)})`,
        { plugin: PLUGIN, cause: error },
      );
    }
    conflicts = (await answer<Conflict>(exporter, CONFLICTS, ms)) ?? [];
  }
  // Only a lock wait of ours that timed out (pg_dump's --lock-wait-timeout is a statement timeout).
  if (conflicts.length === 0 || !/canceling statement due to (lock|statement) timeout/.test(messageOf(error))) return error;
  const session = (c: Conflict) =>
    `server process ${c.pid} (role ${c.role ?? '?'}, application ${c.application || '?'})`;
  const statement = (c: Conflict) => (c.query ?? '').replace(/\s+/g, ' ').trim();
  const cycle = conflicts.filter((c) => !c.granted && c.waits_for_us);
  const others = conflicts.filter((c) => c.granted || !c.waits_for_us);
  const parts = others.map((c) =>
    c.granted
      ? `${session(c)} holds table ${c.table} (ACCESS EXCLUSIVE) for: ${statement(c)}`
      : `${session(c)} waits to lock ${c.table}, ahead of the dump, for: ${statement(c)}`,
  );
  if (cycle.length > 0) {
    parts.push(
      `${cycle.map((c) => `${session(c)} waits to lock ${c.table} for: ${statement(c)}`).join('; ')}. It waits for ${holder}, ` +
        `and a lock the dump asked for later on the same table queued behind it: neither could go on, a wait the server ` +
        `does not see as a deadlock, so the dump gave up after timeout (${ms / 1000} s) rather than hang`,
    );
  }
  return new OperationError(
    `${messageOf(error)}\n${parts.join('; ')}. Take the snapshot again once ${conflicts.length === 1 ? 'that statement is' : 'those statements are'} done.`,
    { plugin: PLUGIN, cause: error },
  );
}
