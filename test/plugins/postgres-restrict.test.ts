/**
 * The `\restrict` filters on a dump's way to the store: RestrictFilter takes out the pair of a key
 * it is given, OwnRestrictFilter the pair of the key pg_dump chose, read from the dump's guard
 * line. Both take out those two lines and nothing else, however the output is split into pieces,
 * as a stream stage and in reused memory. Pure byte handling: no server needed (the snapshots of
 * real dumps are in postgres-restore.test.ts and postgres.test.ts).
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { hasOwnGuard, OwnRestrictFilter, RestrictFilter } from '../../src/plugins/postgres/restrict.js';
import { FilterTransform, type PieceFilter } from '../../src/plugins/sql/piece-filter.js';
import { cut, filterInReusedMemory } from '../support/pieces.js';

const KEY = 'k'.repeat(8) + '0123456789abcdef';

/** `text` through a fresh filter from `make`, in pieces of `pieceSize`, streamed and in reused memory (they must agree). */
async function filtered(text: string, pieceSize: number, make: () => PieceFilter): Promise<string> {
  const pieces = cut(Buffer.from(text), pieceSize);
  const out: Buffer[] = [];
  for await (const piece of Readable.from(pieces).pipe(new FilterTransform(make()))) out.push(piece as Buffer);
  const streamed = Buffer.concat(out).toString();
  // The same in reused memory, as a snapshot reads the dump (sql/tool-output.ts).
  expect(filterInReusedMemory(make(), pieces).toString(), `pieces of ${pieceSize} bytes, reused memory`).toBe(streamed);
  return streamed;
}

const ours = (text: string, size: number) => filtered(text, size, () => new RestrictFilter(KEY));
const own = (text: string, size: number) => filtered(text, size, () => new OwnRestrictFilter());

const SIZES = [1, 2, 7, 31, 64, 65, 200, 4096, 5000];

const body = [
  'SET statement_timeout = 0;',
  'COPY public.notes (id, body) FROM stdin;',
  '1\t\\\\restrict is only text here\\N',
  `2\tmentions the key ${KEY} without the backslash`,
  '\\.',
  `\\restrict someoneElsesKey`,
  `\\unrestrict someoneElsesKey`,
  'SELECT 1;',
].join('\n');
/** pg_dump's layout: header comments, the guard, the body, the closing comment, the closing line. */
const dumpWith = (key: string, middle = body) =>
  `--\n-- PostgreSQL database dump\n--\n\n\\restrict ${key}\n\n-- Dumped from database version 15.20\n\n${middle}\n\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict ${key}\n\n`;
const without = (middle = body) => `--\n-- PostgreSQL database dump\n--\n\n\n-- Dumped from database version 15.20\n\n${middle}\n\n-- PostgreSQL database dump complete\n--\n\n\n`;

describe('RestrictFilter (a key we chose)', () => {
  it('removes exactly our two lines, whatever the piece size', async () => {
    for (const size of SIZES) expect(await ours(dumpWith(KEY), size), `pieces of ${size} bytes`).toBe(without());
  });

  it('passes a dump without our lines through unchanged', async () => {
    for (const size of [1, 13, 4096]) expect(await ours(body, size)).toBe(body);
  });
});

describe("OwnRestrictFilter (the key pg_dump chose)", () => {
  const pgKey = 'C4db4igcZVvDaRGHrl8Q7bgfUUgf4ygraAyq1k7eJ5nn56aEy4Zr0hLakTQUpsr';

  it("removes pg_dump's two lines, whatever the piece size, giving the bytes our own key gives", async () => {
    for (const size of SIZES) {
      const result = await own(dumpWith(pgKey), size);
      expect(result, `pieces of ${size} bytes`).toBe(without());
      // The stored bytes, and so the snapshot's identity, are those of handing pg_dump our key.
      expect(result).toBe(await ours(dumpWith(KEY), size));
    }
  });

  it('keeps the same lines with another key, and a guard-like line that is not the first statement', async () => {
    const otherKey = dumpWith(pgKey).replace(`\\unrestrict ${pgKey}`, '\\unrestrict notTheKey');
    expect(await own(otherKey, 64)).toBe(without().replace(/\n\n\n$/, '\n\n\\unrestrict notTheKey\n\n'));
    // A dump whose first statement is not a guard (an older pg_dump): nothing is taken out.
    const late = `--\n-- comment\n--\n\nSET x = 1;\n\\restrict ${pgKey}\n\n${body}\n\\unrestrict ${pgKey}\n`;
    for (const size of [1, 5, 4096]) expect(await own(late, size), `pieces of ${size} bytes`).toBe(late);
  });

  it("leaves a guard line below pg_dump's version line (a server version with a newline in it) in the dump", async () => {
    // An older pg_dump, writing what a hostile server gave as its version: the line is the first
    // statement, but pg_dump writes its own guard above the version lines, so this is not one.
    const injected = `--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15\n\\restrict X\n\n${body}\n\\unrestrict X\n`;
    for (const size of [1, 50, 4096]) expect(await own(injected, size), `pieces of ${size} bytes`).toBe(injected);
    expect(hasOwnGuard(injected)).toBe(false);
    expect(hasOwnGuard(dumpWith(pgKey))).toBe(true);
  });

  it('passes through a dump without a guard, an empty one, one of comments only, and a head longer than it looks ahead', async () => {
    for (const size of [1, 13, 4096]) {
      expect(await own(body, size)).toBe(body);
      expect(await own('', size)).toBe('');
      expect(await own('--\n-- only comments\n--\n', size)).toBe('--\n-- only comments\n--\n');
      // A guard line without its newline at the very end stays: only whole lines are taken out.
      expect(await own(`--\n\n\\restrict ${pgKey}`, size)).toBe(`--\n\n\\restrict ${pgKey}`);
    }
    // pg_dump puts its guard within the first lines; one after 4 KiB of comments is data.
    const longHead = `${'-- padding\n'.repeat(500)}\n\\restrict ${pgKey}\n\n${body}\n\\unrestrict ${pgKey}\n`;
    for (const size of [1, 100, 8192]) expect(await own(longHead, size), `pieces of ${size} bytes`).toBe(longHead);
  });
});
