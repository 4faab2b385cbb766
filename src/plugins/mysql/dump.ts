/** Snapshots of a MariaDB/MySQL database: one consistent mysqldump, streamed into the store. */
import type { SnapshotSink } from '../../core/plugin.js';
import { dumpWith, type ToolOptions } from '../sql/tool.js';
import { findMysqlTools, withToolAccess } from './client.js';
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
