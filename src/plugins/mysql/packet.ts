/**
 * Statements longer than the server's max_allowed_packet. mariadb-dump writes a row as one
 * statement however large (--hex-blob doubles a blob), and the server refuses a statement longer
 * than max_allowed_packet by ending the session ("Server has gone away"): the snapshot is taken,
 * but no restore of it loads until the limit is raised. So the dump's and the load's longest line
 * (one statement: a dump's rows are one line each) is measured and compared with the limit.
 */
import type { Logger } from '../../core/log.js';
import type { PieceFilter } from '../sql/piece-filter.js';
import { type MysqlConnection, query } from './client.js';

/** How much of a statement a message shows. */
const SHOWN = 200;
/** The largest max_allowed_packet a MariaDB or MySQL server takes. */
const PACKET_CEILING = 1024 * 1024 * 1024;
const NEWLINE = 0x0a;

/** The longest line seen, and its beginning. */
export class LongestLine {
  length = 0;
  head: Buffer = Buffer.alloc(0);

  offer(length: number, head: Buffer): void {
    if (length <= this.length) return;
    this.length = length;
    this.head = Buffer.from(head.subarray(0, SHOWN));
  }

  /** The line as a message shows it: its length and its first bytes. */
  describe(): string {
    const more = this.length > this.head.length ? `… (${this.length - this.head.length} more bytes)` : '';
    return `${this.length} bytes: ${this.head.toString('utf8')}${more}`;
  }
}

/**
 * Passes a stream through unchanged, measuring its longest line: a filter that removes nothing,
 * and keeps only copies. A dump has a line per row, so this runs for millions of lines per
 * snapshot: a line costs one search and one comparison, and its first bytes are copied only when
 * it is the longest yet (and once per piece for the line that runs on into the next piece).
 * Copying every line's head took 0.7 s of CPU per 289 MB.
 */
export class LineMeter implements PieceFilter {
  readonly longest = new LongestLine();
  /** Bytes of the line that runs on from earlier pieces, and its first bytes. */
  private current = 0;
  private currentHead: Buffer = Buffer.alloc(0);

  write(chunk: Buffer): Buffer[] {
    let start = 0;
    for (let newline = chunk.indexOf(NEWLINE); newline >= 0; newline = chunk.indexOf(NEWLINE, start)) {
      const length = this.current + newline - start;
      if (length > this.longest.length) {
        const rest = chunk.subarray(start, newline);
        this.longest.offer(length, this.current > 0 ? Buffer.concat([this.currentHead, rest.subarray(0, SHOWN)]) : rest);
      }
      this.current = 0;
      start = newline + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.current === 0) this.currentHead = Buffer.from(rest.subarray(0, SHOWN));
      else if (this.currentHead.length < SHOWN) this.currentHead = Buffer.concat([this.currentHead, rest.subarray(0, SHOWN - this.currentHead.length)]);
      this.current += rest.length;
    }
    return [chunk];
  }

  end(): Buffer[] {
    if (this.current > this.longest.length) this.longest.offer(this.current, this.currentHead);
    this.current = 0;
    return [];
  }
}

/** The server's max_allowed_packet, as new sessions (the client tools') get it. */
export async function maxAllowedPacket(connection: MysqlConnection): Promise<number> {
  const [row] = await query(connection, 'SELECT @@GLOBAL.max_allowed_packet AS packet');
  return Number(row?.packet);
}

/** True when the server refuses a statement of `length` bytes (its packet has one byte more). */
export function tooLong(length: number, maxPacket: number): boolean {
  return Number.isFinite(maxPacket) && length + 1 > maxPacket;
}

const MiB = 1024 * 1024;

/** What to do about a statement of `length` bytes, for a server whose limit is `maxPacket`. */
export function raisePacket(length: number, maxPacket: number): string {
  const current = `The server's max_allowed_packet is ${maxPacket} bytes (${(maxPacket / MiB).toFixed(1)} MiB)`;
  if (length + 1 > PACKET_CEILING) {
    return `${current}, and no MariaDB or MySQL server takes more than 1 GiB: this row cannot be loaded as one statement`;
  }
  const needed = Math.min(PACKET_CEILING, Math.ceil((length + 1) / MiB) * MiB);
  return (
    `${current}; raise it to at least ${needed} bytes (${needed / MiB} MiB): SET GLOBAL max_allowed_packet = ${needed}; ` +
    `and, to keep it after a restart, max_allowed_packet = ${needed / MiB}M under [mysqld] in the server's configuration`
  );
}

/** Warns when a snapshot holds a statement the server would refuse to load. */
export function warnLongStatement(longest: LongestLine, maxPacket: number, database: string, log: Logger): void {
  if (!tooLong(longest.length, maxPacket)) return;
  log.warn(
    `the snapshot of ${database} holds a statement longer than the server's max_allowed_packet, so no restore of it loads on this server as it is set: ${longest.describe()}. ${raisePacket(longest.length, maxPacket)}`,
  );
}
