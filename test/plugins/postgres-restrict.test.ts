/**
 * RestrictRemover takes our `\restrict KEY` pair out of pg_dump's output, and nothing else,
 * however the output is split into pieces, as a stream stage and in reused memory. Pure byte
 * handling: no server needed.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { RestrictFilter, RestrictRemover } from '../../src/plugins/postgres/restrict.js';
import { filterInReusedMemory } from '../support/pieces.js';

const KEY = 'k'.repeat(8) + '0123456789abcdef';

async function filtered(text: string, pieceSize: number): Promise<string> {
  const bytes = Buffer.from(text);
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += pieceSize) pieces.push(bytes.subarray(at, at + pieceSize));
  const out: Buffer[] = [];
  for await (const piece of Readable.from(pieces).pipe(new RestrictRemover(KEY))) out.push(piece as Buffer);
  const streamed = Buffer.concat(out).toString();
  // The same in reused memory, as a snapshot reads the dump (sql/tool-output.ts).
  expect(filterInReusedMemory(new RestrictFilter(KEY), pieces).toString(), `pieces of ${pieceSize} bytes, reused memory`).toBe(streamed);
  return streamed;
}

describe('RestrictRemover', () => {
  const body = [
    'SET statement_timeout = 0;',
    "COPY public.notes (id, body) FROM stdin;",
    '1\t\\\\restrict is only text here\\N',
    `2\tmentions the key ${KEY} without the backslash`,
    '\\.',
    `\\restrict someoneElsesKey`,
    'SELECT 1;',
  ].join('\n');
  const dump = `--\n-- PostgreSQL database dump\n--\n\n\\restrict ${KEY}\n\n${body}\n\n\\unrestrict ${KEY}\n\n`;
  const expected = `--\n-- PostgreSQL database dump\n--\n\n\n${body}\n\n\n`;

  it('removes exactly our two lines, whatever the piece size', async () => {
    for (const size of [1, 2, 7, 31, 64, 65, 200, 4096]) {
      expect(await filtered(dump, size), `pieces of ${size} bytes`).toBe(expected);
    }
  });

  it('passes a dump without our lines through unchanged', async () => {
    for (const size of [1, 13, 4096]) expect(await filtered(body, size)).toBe(body);
  });
});
