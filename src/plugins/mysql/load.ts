/**
 * Loading SQL into a (staging) database with the mysql client: a component's initial scripts on
 * activation, and a snapshot's dump on restore.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { lastLine, OperationError, PluginError } from '../../core/errors.js';
import { loadWith, type ToolOptions } from '../sql/tool.js';
import { findMysqlTools, toolHasOption, withToolAccess } from './client.js';
import type { MysqlOptions } from './options.js';
import { PLUGIN } from './options.js';
import { LongestLine, raisePacket, tooLong } from './packet.js';

/**
 * Client arguments shared by every load (after the option file's): stop at the first error (the client's default). The
 * mariadb client (10.11 on) echoes a failed statement whole, which for a row of many megabytes
 * makes an error message of that size, cut off at its end, where the error is; so it is told not
 * to, where it can be (MySQL's client does not echo).
 */
async function clientArguments(client: string, database: string, binary: boolean, tool: ToolOptions): Promise<string[]> {
  const quiet = await toolHasOption(client, '--print-query-on-error', tool);
  return [
    ...(binary ? ['--binary-mode'] : []),
    ...(quiet ? ['--skip-print-query-on-error'] : []),
    '--max-allowed-packet=1073741824',
    `--database=${database}`,
  ];
}

/** Runs one SQL file into `database`; a failure names the file and carries the server's error. */
export async function loadFile(options: MysqlOptions, database: string, file: string, tool: ToolOptions): Promise<void> {
  const { client } = await findMysqlTools();
  const args = await clientArguments(client, database, false, tool);
  await withToolAccess(options, (defaults) => loadWith(client, [defaults, ...args], `loading ${file}`, createReadStream(file), tool));
}

/** What a dump load saw, to check that the staging database got everything. */
export interface LoadReport {
  /** Bytes read from the snapshot stream. */
  bytes: number;
  /** The tables (and sequences) the dump creates. */
  tables: Set<string>;
}

/**
 * Loads a dump stream into `database`, merging single-row INSERTs on the way (see InsertMerger).
 * `maxPacket`: the server's max_allowed_packet; a failed load that passed a longer statement says
 * that this is why (the client only says the server has gone away).
 */
export async function loadDump(
  options: MysqlOptions,
  database: string,
  input: Readable,
  what: string,
  tool: ToolOptions,
  maxPacket = Number.POSITIVE_INFINITY,
): Promise<LoadReport> {
  const { client } = await findMysqlTools();
  const merger = new InsertMerger();
  const args = await clientArguments(client, database, true, tool);
  try {
    await withToolAccess(options, (defaults) => loadWith(client, [defaults, ...args], what, input, tool, [merger]));
  } catch (error) {
    if (!(error instanceof PluginError) || !tooLong(merger.longest.length, maxPacket)) throw error;
    const said = lastLine(error.stderr ?? '');
    throw new OperationError(
      `${what}: the snapshot holds a statement longer than the server's max_allowed_packet, which the server refuses (${said === '' ? 'the client stopped' : `the client said: ${said}`}): ${merger.longest.describe()}. ${raisePacket(merger.longest.length, maxPacket)}; then restore again`,
      { plugin: PLUGIN, cause: error },
    );
  }
  return { bytes: merger.bytes, tables: merger.tables };
}

const NEWLINE = 0x0a;
/** Merged INSERT statements stay below this size, as mysqldump's own (net_buffer_length). */
const STATEMENT_LIMIT = 1024 * 1024;
const LOCK_PREFIX = Buffer.from('LOCK TABLES ');
const LOCK_SUFFIX = Buffer.from(' WRITE;');
const UNLOCK = Buffer.from('UNLOCK TABLES;');
const DELIMITER = Buffer.from('DELIMITER ');
const CREATE_TABLE = Buffer.from('CREATE TABLE `');
const CREATE_SEQUENCE = Buffer.from('CREATE SEQUENCE `');
const ROW_END = Buffer.from(');');
const NEXT_ROW = Buffer.from(',\n');
const END = Buffer.from(';\n');
const NL = Buffer.from('\n');

function startsWith(line: Buffer, prefix: Buffer): boolean {
  return line.length >= prefix.length && line.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

function endsWith(line: Buffer, suffix: Buffer): boolean {
  return line.length >= suffix.length && line.compare(suffix, 0, suffix.length, line.length - suffix.length) === 0;
}

/** The name in a line starting with CREATE TABLE `name`, backquotes undoubled. */
function createdName(line: Buffer, prefixLength: number): string | undefined {
  const text = line.subarray(prefixLength, Math.min(line.length, prefixLength + 200)).toString('utf8');
  const match = /^((?:[^`]|``)*)`/.exec(text);
  return match?.[1]?.replaceAll('``', '`');
}

/**
 * Our snapshots are dumped with one INSERT per row (`--skip-extended-insert`), so that a changed
 * row changes one line and the store keeps the rest; multi-row INSERTs would shift every
 * statement boundary after a change. Loading one row per statement is slow, so this transform
 * joins consecutive single-row INSERTs of a table's data section (between mysqldump's
 * `LOCK TABLES t WRITE;` and `UNLOCK TABLES;`, outside DELIMITER blocks) into multi-row INSERTs
 * of at most 1 MiB: the same rows, as fast as mysqldump's own extended inserts. Every other line
 * passes through unchanged. In dumps of other shapes (Dysnomia's multi-row INSERTs) neighbouring
 * INSERT lines of a table are joined the same way, which is still the same rows in valid SQL.
 *
 * Written by hand: it is a line filter over mysqldump's fixed output format, which no library
 * covers, and it must not parse (or buffer) the rows themselves.
 */
export class InsertMerger extends Transform {
  /** Bytes read. */
  bytes = 0;
  /** Names of the tables and sequences the dump creates (at its top level, not in a DELIMITER block). */
  readonly tables = new Set<string>();
  /** The longest line read: a row's statement, as the dump has it. */
  readonly longest = new LongestLine();
  private carry: Buffer = Buffer.alloc(0);
  private insertPrefix: Buffer | undefined;
  private inDelimiterBlock = false;
  /** Bytes of the INSERT statement being built, 0 when none is open. */
  private open = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk;
    const out: Buffer[] = [];
    let start = 0;
    for (let end = data.indexOf(NEWLINE, start); end >= 0; end = data.indexOf(NEWLINE, start)) {
      this.line(data.subarray(start, end), out);
      start = end + 1;
    }
    this.carry = Buffer.from(data.subarray(start));
    if (out.length > 0) this.push(Buffer.concat(out));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const out: Buffer[] = [];
    if (this.carry.length > 0) this.line(this.carry, out, false);
    this.close(out);
    if (out.length > 0) this.push(Buffer.concat(out));
    callback();
  }

  private close(out: Buffer[]): void {
    if (this.open > 0) out.push(END);
    this.open = 0;
  }

  private line(line: Buffer, out: Buffer[], newline = true): void {
    this.longest.offer(line.length, line);
    const prefix = this.insertPrefix;
    if (prefix !== undefined && !this.inDelimiterBlock && startsWith(line, prefix) && endsWith(line, ROW_END)) {
      const row = line.subarray(prefix.length - 1, line.length - 1);
      if (this.open > 0 && this.open + row.length < STATEMENT_LIMIT) {
        out.push(NEXT_ROW, row);
        this.open += row.length + 2;
      } else {
        this.close(out);
        out.push(line.subarray(0, prefix.length - 1), row);
        this.open = prefix.length + row.length;
      }
      return;
    }
    this.close(out);
    if (startsWith(line, DELIMITER)) {
      this.inDelimiterBlock = line.toString('utf8').trim() !== 'DELIMITER ;';
    } else if (startsWith(line, LOCK_PREFIX) && endsWith(line, LOCK_SUFFIX)) {
      const table = line.subarray(LOCK_PREFIX.length, line.length - LOCK_SUFFIX.length);
      this.insertPrefix = Buffer.concat([Buffer.from('INSERT INTO '), table, Buffer.from(' VALUES (')]);
    } else if (startsWith(line, UNLOCK)) {
      this.insertPrefix = undefined;
    } else if (this.inDelimiterBlock) {
      // A routine's, trigger's or event's body, written as its author wrote it: a line of it
      // starting with CREATE TABLE is a statement the routine runs when called, not a table of
      // the dump, and counting it would make the load check refuse every restore of the snapshot.
    } else if (startsWith(line, CREATE_TABLE)) {
      const name = createdName(line, CREATE_TABLE.length);
      if (name !== undefined) this.tables.add(name);
    } else if (startsWith(line, CREATE_SEQUENCE)) {
      const name = createdName(line, CREATE_SEQUENCE.length);
      if (name !== undefined) this.tables.add(name);
    }
    out.push(line);
    if (newline) out.push(NL);
  }
}

/** Checks that every table the dump creates is in the staging database. */
export function checkLoaded(report: LoadReport, loaded: string[], expectedBytes: number | undefined, what: string): void {
  if (expectedBytes !== undefined && report.bytes !== expectedBytes) {
    throw new OperationError(`${what}: read ${report.bytes} bytes of ${expectedBytes}; the snapshot stream ended early`, {
      plugin: PLUGIN,
    });
  }
  const present = new Set(loaded);
  const missing = [...report.tables].filter((table) => !present.has(table));
  if (missing.length > 0) {
    throw new OperationError(`${what}: the dump creates ${missing.slice(0, 5).join(', ')}, but the loaded database lacks them`, {
      plugin: PLUGIN,
    });
  }
}
