/** Snapshots of a PostgreSQL database: one consistent pg_dump, streamed into the store. */
import type { SnapshotSink } from '../../core/plugin.js';
import { dumpWith, type ToolOptions } from '../sql/tool.js';
import { connectionArguments, findPgTools } from './client.js';
import type { PostgresOptions } from './options.js';

/** The stream name, as in Dysnomia's snapshots (`dump.pgsql.xz` there, uncompressed here). */
export const DUMP_STREAM = 'dump.pgsql';

/**
 * Dumps `database` (plain SQL, one snapshot for the whole dump) into the sink; throws if pg_dump
 * failed, so the truncated stream is discarded. pg_dump gives up on a table lock held longer than
 * the timeout instead of hanging behind it.
 */
export async function dumpDatabase(
  options: PostgresOptions,
  database: string,
  sink: SnapshotSink,
  tool: ToolOptions,
): Promise<void> {
  const { dump } = await findPgTools();
  const args = [...connectionArguments(options, database), `--lock-wait-timeout=${Math.max(1000, options.timeoutMs)}`];
  await dumpWith(dump, args, `dumping ${database}`, (output) => sink.addStream(DUMP_STREAM, output), tool);
}
