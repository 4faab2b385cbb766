/**
 * Loading SQL into a (staging) database with psql: a component's initial scripts on activation,
 * and a snapshot's dump on restore. ON_ERROR_STOP makes psql stop, and fail, at the first error.
 * psql reads its input through C stdio, so it gets a 1 MiB input buffer (loadWith's bufferedInput).
 */
import { createReadStream } from 'node:fs';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { OperationError } from '../../core/errors.js';
import { loadWith, type ToolOptions } from '../sql/tool.js';
import { connectionArguments, findPgTools } from './client.js';
import { PLUGIN, type PostgresOptions } from './options.js';
import { knowsRestrict, RestrictGuard } from './restrict.js';

function psqlArguments(options: PostgresOptions, database: string): string[] {
  return [...connectionArguments(options, database), '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--file=-'];
}

/** Runs one SQL file into `database`; the file is read by us, so the server's user need not. */
export async function loadFile(options: PostgresOptions, database: string, file: string, tool: ToolOptions): Promise<void> {
  const { psql } = await findPgTools();
  await loadWith(psql, psqlArguments(options, database), `loading ${file}`, createReadStream(file), { ...tool, bufferedInput: true });
}

/** The last line pg_dump writes; a dump without it was cut short. */
const TRAILER = '-- PostgreSQL database dump complete';

/** Counts the bytes going through and keeps the last few, to check the dump's end. */
class TailKeeper extends Transform {
  bytes = 0;
  private tail = Buffer.alloc(0);

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.tail = Buffer.concat([this.tail, chunk.subarray(Math.max(0, chunk.length - 256))]).subarray(-256);
    callback(null, chunk);
  }

  get lastBytes(): string {
    return this.tail.toString('utf8');
  }
}

/**
 * Loads a plain pg_dump stream into `database` under a fresh `\restrict` guard (restrict.ts),
 * then checks that the whole stream arrived and ended with pg_dump's last line.
 */
export async function loadDump(
  options: PostgresOptions,
  database: string,
  input: Readable,
  expectedBytes: number | undefined,
  what: string,
  tool: ToolOptions,
): Promise<void> {
  const { psql } = await findPgTools();
  const keeper = new TailKeeper();
  const guard = (await knowsRestrict(psql, tool)) ? [new RestrictGuard()] : [];
  await loadWith(psql, psqlArguments(options, database), what, input, { ...tool, bufferedInput: true }, [keeper, ...guard]);
  if (expectedBytes !== undefined && keeper.bytes !== expectedBytes) {
    throw new OperationError(`${what}: read ${keeper.bytes} bytes of ${expectedBytes}; the snapshot stream ended early`, {
      plugin: PLUGIN,
    });
  }
  if (!keeper.lastBytes.includes(TRAILER)) {
    throw new OperationError(`${what}: the dump does not end with pg_dump's "${TRAILER}" line; it was cut short`, {
      plugin: PLUGIN,
    });
  }
}
