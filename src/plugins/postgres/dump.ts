/** Snapshots of a PostgreSQL database: one consistent pg_dump, streamed into the store. */
import { pipeline } from 'node:stream/promises';
import type { SnapshotSink } from '../../core/plugin.js';
import { dumpWith, type ToolOptions } from '../sql/tool.js';
import { connectionArguments, findPgTools } from './client.js';
import type { PostgresOptions } from './options.js';
import { knowsRestrict, RestrictRemover, restrictKey } from './restrict.js';

/** The stream name, as in Dysnomia's snapshots (`dump.pgsql.xz` there, uncompressed here). */
export const DUMP_STREAM = 'dump.pgsql';

/**
 * Dumps `database` (plain SQL, one snapshot for the whole dump) into the sink; throws if pg_dump
 * failed, so the truncated stream is discarded. pg_dump gives up on a table lock held longer than
 * the timeout instead of hanging behind it. The `\restrict` pair is left out (restrict.ts).
 */
export async function dumpDatabase(
  options: PostgresOptions,
  database: string,
  sink: SnapshotSink,
  tool: ToolOptions,
): Promise<void> {
  const { dump } = await findPgTools();
  const args = [...connectionArguments(options, database), `--lock-wait-timeout=${Math.max(1000, options.timeoutMs)}`];
  if (!(await knowsRestrict(dump, tool))) {
    await dumpWith(dump, args, `dumping ${database}`, (output) => sink.addStream(DUMP_STREAM, output), tool);
    return;
  }
  const key = restrictKey();
  await dumpWith(dump, [...args, `--restrict-key=${key}`], `dumping ${database}`, async (output) => {
    const remover = new RestrictRemover(key);
    await Promise.all([pipeline(output, remover), sink.addStream(DUMP_STREAM, remover)]);
  }, tool);
}
