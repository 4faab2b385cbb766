/** Snapshots of a MariaDB/MySQL database: one consistent mysqldump, streamed into the store. */
import type { Logger } from '../../core/log.js';
import type { SnapshotSink } from '../../core/plugin.js';
import { dumpWith, type ToolOptions } from '../sql/tool.js';
import { findMysqlTools, type MysqlConnection, query, withToolAccess } from './client.js';
import type { MysqlOptions } from './options.js';

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

/** Dumps `database` into the sink; throws if the dump tool failed (the snapshot is discarded). */
export async function dumpDatabase(options: MysqlOptions, database: string, sink: SnapshotSink, tool: ToolOptions): Promise<void> {
  const { dump } = await findMysqlTools();
  await withToolAccess(options, (defaults) =>
    dumpWith(dump, [defaults, ...DUMP_ARGUMENTS, database], `dumping ${database}`, (output) => sink.addStream(DUMP_STREAM, output), tool),
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
