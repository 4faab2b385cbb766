/** Snapshots of a MariaDB/MySQL database: one consistent mysqldump, streamed into the store. */
import path from 'node:path';
import type { Logger } from '../../core/log.js';
import type { SnapshotSink } from '../../core/plugin.js';
import { FilterTransform, type PieceFilter } from '../sql/piece-filter.js';
import { dumpPieces, type ToolOptions } from '../sql/tool.js';
import { findMysqlTools, type MysqlConnection, query, toolHasOption, withToolAccess } from './client.js';
import type { MysqlOptions } from './options.js';
import { LineMeter, type LongestLine } from './packet.js';

/** The stream name, as in Dysnomia's snapshots (`dump.sql.xz` there, uncompressed here). */
export const DUMP_STREAM = 'dump.sql';

/**
 * The dump's options. Consistency: one transaction (InnoDB), no table locks. Completeness:
 * routines, events and triggers; binary strings in hex, so no byte is lost to a character set.
 * Identity: no dump date, so an unchanged database gives identical bytes. Dedup: rows in primary
 * key order and one INSERT per row, so a changed row changes one line (load.ts merges them back).
 */
export const DUMP_ARGUMENTS = [
  '--single-transaction',
  '--quick',
  '--routines',
  '--events',
  '--triggers',
  '--skip-dump-date',
  '--hex-blob',
  '--order-by-primary',
  '--skip-extended-insert',
  '--no-autocommit',
  '--default-character-set=utf8mb4',
  '--max-allowed-packet=1073741824',
];

/**
 * Dumps `database` into the sink; throws if the dump tool failed (the snapshot is discarded).
 * `extra`: arguments for this database (see {@link historyArguments}). Returns the dump's longest
 * line (see packet.ts).
 */
export async function dumpDatabase(
  options: MysqlOptions,
  database: string,
  sink: SnapshotSink,
  tool: ToolOptions,
  extra: string[] = [],
): Promise<LongestLine> {
  const { dump } = await findMysqlTools();
  const meter = new LineMeter();
  await withToolAccess(options, (defaults) =>
    dumpPieces(
      dump,
      [defaults, ...DUMP_ARGUMENTS, ...extra, database],
      `dumping ${database}`,
      (pieces) => sink.addStream(DUMP_STREAM, pieces),
      tool,
      [new HostLineFilter(), meter],
    ),
  );
  return meter.longest;
}

/** The host line is among the dump's first lines: the fourth of mariadb-dump's, the third of mysqldump's. */
const HEADER_LINES = 6;
/** Those lines are short; a stream that has not given them within this many bytes has no such header. */
const HEADER_LIMIT = 4096;
const HOST_LINE = Buffer.from('-- Host: ');

/**
 * Leaves out the line `-- Host: localhost    Database: testdb` of the dump's header. It names
 * how the tool reached the server (`localhost` over the socket, `127.0.0.1` or a host name over
 * TCP), not anything in the database, and the snapshot identity is the hash of the dump: with it,
 * an unchanged database got a new generation when mysqlHost or mysqlSocket changed. mariadb-dump
 * has no option for just this line (`--skip-comments` would drop every comment). Only the header
 * is looked at: the first few lines, each a comment (`--`, or mariadb-dump's `/*M!` sandbox line),
 * and only a whole line is left out; the same text anywhere else (in a routine's body) is data.
 */
export class HostLineFilter implements PieceFilter {
  /** The start of the stream so far (a copy), until the header is seen. */
  private head: Buffer = Buffer.alloc(0);
  private done = false;

  write(piece: Buffer): Buffer[] {
    if (this.done) return [piece];
    this.head = Buffer.concat([this.head, piece]);
    if (this.head.length >= HEADER_LIMIT || newlines(this.head, HEADER_LINES) >= HEADER_LINES) return [this.release()];
    return [];
  }

  end(): Buffer[] {
    return this.done ? [] : [this.release()];
  }

  /** The buffered start of the stream, without its host line when its header has one. */
  private release(): Buffer {
    const head = this.head;
    this.head = Buffer.alloc(0);
    this.done = true;
    let start = 0;
    for (let line = 0; line < HEADER_LINES && start < head.length; line++) {
      const end = head.indexOf(0x0a, start);
      if (end < 0) break; // a line not whole yet is left as it is
      if (head.subarray(start, start + HOST_LINE.length).equals(HOST_LINE)) {
        return Buffer.concat([head.subarray(0, start), head.subarray(end + 1)]);
      }
      const first = head.subarray(start, start + 2).toString('latin1');
      if (first !== '--' && first !== '/*') break;
      start = end + 1;
    }
    return head;
  }
}

/** {@link HostLineFilter} as a stream stage. */
export class HostLineRemover extends FilterTransform {
  constructor() {
    super(new HostLineFilter());
  }
}

/** How many newlines `buffer` holds, counting no further than `limit`. */
function newlines(buffer: Buffer, limit: number): number {
  let count = 0;
  for (let at = buffer.indexOf(0x0a); at >= 0 && count < limit; at = buffer.indexOf(0x0a, at + 1)) count++;
  return count;
}

/**
 * The dump arguments that keep the history of `database`'s system-versioned tables: a plain dump
 * holds only their current rows, and a restore would silently drop the rest. `--dump-history`
 * dumps every row with its row_start and row_end, and the dump itself turns on
 * system_versioning_insert_history for the load. It does not change the dump of other tables, so
 * a database without versioned tables keeps its snapshot identity. The option came with mariadb-dump
 * 10.11 (MySQL's mysqldump has none), so the tool's --help decides. mariadb-dump refuses it for a
 * table with transaction-precise history (row start/end as transaction ids): then, or when the
 * tool lacks the option, the snapshot is taken without history and the warning names the tables.
 */
export async function historyArguments(connection: MysqlConnection, database: string, log: Logger, tool: ToolOptions): Promise<string[]> {
  const rows = await query(
    connection,
    `SELECT t.TABLE_NAME AS name,
            EXISTS (SELECT 1 FROM information_schema.COLUMNS c
                     WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
                       AND c.GENERATION_EXPRESSION = 'ROW START' AND c.DATA_TYPE = 'bigint') AS precise
       FROM information_schema.TABLES t
      WHERE t.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'SYSTEM VERSIONED'
      ORDER BY t.TABLE_NAME`,
    [database],
  );
  if (rows.length === 0) return [];
  const tables = rows.map((row) => String(row.name));
  const precise = rows.filter((row) => Number(row.precise) === 1).map((row) => String(row.name));
  const { dump } = await findMysqlTools();
  const why =
    precise.length > 0
      ? `${precise.join(', ')} keep${precise.length === 1 ? 's' : ''} transaction-precise history, which ${path.basename(dump)} cannot dump`
      : !(await toolHasOption(dump, '--dump-history', tool))
        ? `${path.basename(dump)} has no --dump-history (mariadb-dump has it from MariaDB 10.11)`
        : undefined;
  if (why === undefined) return ['--dump-history'];
  log.warn(
    `the snapshot of ${database} keeps only the current rows of its system-versioned tables, not their history: ${tables.join(', ')} (${why}); a restore of it starts their history anew`,
  );
  return [];
}

/**
 * Warns about tables whose default takes the next value of a sequence (`DEFAULT NEXT VALUE FOR
 * seq`): mariadb-dump writes them so that its own output does not load again (`Table 'seq' was
 * not locked with LOCK TABLES`). The snapshot is still taken, and holds every row; but no restore
 * of it loads, which must not come as a surprise on the day it is needed.
 */
export async function warnSequenceDefaults(connection: MysqlConnection, database: string, log: Logger): Promise<void> {
  const rows = await query(
    connection,
    `SELECT DISTINCT TABLE_NAME AS name FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = ? AND LOWER(COLUMN_DEFAULT) LIKE '%nextval(%' ORDER BY TABLE_NAME`,
    [database],
  );
  if (rows.length === 0) return;
  log.warn(
    `tables of ${database} take a default from a sequence (DEFAULT NEXT VALUE FOR): ${rows.map((row) => String(row.name)).join(', ')}. mariadb-dump's output of such a table does not load again, so no restore of this snapshot will work; give the column its values another way (the application, or AUTO_INCREMENT)`,
  );
}

/** Storage engines whose tables `--single-transaction` reads as of one moment. */
const CONSISTENT_ENGINES = ['INNODB', 'ROCKSDB'];

/**
 * Warns when tables of `database` use an engine that `--single-transaction` cannot read as of one
 * moment (MyISAM, Aria, MEMORY, ...): their rows in the snapshot may be from a later moment than
 * the rest. The snapshot is still taken, as Dysnomia takes it.
 */
export async function warnInconsistentTables(connection: MysqlConnection, database: string, log: Logger): Promise<void> {
  const rows = await query(
    connection,
    `SELECT TABLE_NAME AS name, ENGINE AS engine FROM information_schema.TABLES
      WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' AND UPPER(ENGINE) NOT IN (${CONSISTENT_ENGINES.map(() => '?').join(', ')})
      ORDER BY TABLE_NAME`,
    [database, ...CONSISTENT_ENGINES],
  );
  if (rows.length === 0) return;
  const listed = rows.slice(0, 5).map((row) => `${String(row.name)} (${String(row.engine)})`).join(', ');
  const more = rows.length > 5 ? ` and ${rows.length - 5} more` : '';
  log.warn(
    `tables of ${database} use a storage engine without transactions: ${listed}${more}. The snapshot reads them as they change, so their rows may not match the other tables' (convert them with ALTER TABLE ... ENGINE=InnoDB)`,
  );
}
