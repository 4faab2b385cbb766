/**
 * mysql-database on the real server: a row whose statement is longer than the server's
 * max_allowed_packet (a blob that --hex-blob doubles past it). The snapshot warns; the restore
 * fails saying why and how to raise the limit, in a short message, and changes nothing.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { LineMeter } from '../../src/plugins/mysql/packet.js';
import { FilterTransform } from '../../src/plugins/sql/piece-filter.js';
import { filterInReusedMemory } from '../support/pieces.js';
import { findMysql } from '../support/servers.js';
import { mysqlSetup } from '../support/sql-setup.js';

describe('mysql-database: statements longer than max_allowed_packet', () => {
  it('the snapshot warns, and the restore names the limit and how to raise it', { timeout: 120_000 }, async (ctx) => {
    const server = await findMysql();
    const [row] = (await server.query('SELECT @@GLOBAL.max_allowed_packet AS packet')) as Array<{ packet: string | number }>;
    const packet = Number(row!.packet);
    // The limit is the server's own; the test changes no global setting. A blob of half of it and
    // a bit more is, as hex, longer than the limit, and its INSERT (REPEAT) is short.
    if (packet > 64 * 1024 * 1024) ctx.skip();
    const size = Math.floor(packet / 2) + 64 * 1024;
    const setup = await mysqlSetup({ scripts: { '1.sql': 'CREATE TABLE files (id INT PRIMARY KEY, body LONGBLOB);\nINSERT INTO files VALUES (1, 0x01);\n' } });
    await setup.ok('activate');
    await setup.query("INSERT INTO files VALUES (2, REPEAT('a', ?))", [size]);

    const snapshot = await setup.ok('snapshot');
    expect(snapshot.stderr).toContain(`the snapshot of ${setup.name} holds a statement longer than the server's max_allowed_packet`);
    expect(snapshot.stderr).toContain(`${2 * size + 'INSERT INTO `files` VALUES (2,0x);'.length} bytes: INSERT INTO \`files\` VALUES (2,0x616161`);
    expect(snapshot.stderr).toContain(`The server's max_allowed_packet is ${packet} bytes`);
    expect(snapshot.stderr).toContain('SET GLOBAL max_allowed_packet = ');
    expect(snapshot.stderr.length).toBeLessThan(3000);
    expect(await setup.generations()).toEqual(['1']);

    await setup.query('DELETE FROM files WHERE id = 2');
    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr.slice(0, 2000)).toBe(1);
    expect(result.stderr.length).toBeLessThan(3000);
    expect(result.stderr).toContain("the snapshot holds a statement longer than the server's max_allowed_packet, which the server refuses");
    expect(result.stderr).toMatch(/the client (said: ERROR (2006 .*gone away|1153 .*max_allowed_packet)|stopped)/);
    expect(result.stderr).toContain(`The server's max_allowed_packet is ${packet} bytes`);
    expect(result.stderr).toMatch(/raise it to at least \d+ bytes .*: SET GLOBAL max_allowed_packet = \d+; and, to keep it after a restart, max_allowed_packet = \d+M under \[mysqld\]/);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(await setup.query('SELECT id, HEX(body) AS body FROM files')).toEqual([{ id: 1, body: '01' }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });
});

describe('mysql-database: the longest line of a dump', () => {
  it('is measured the same however the stream is cut', async () => {
    const long = `INSERT INTO \`t\` VALUES (1,0x${'ab'.repeat(500)});`;
    const text = Buffer.from(`-- header\n${long}\nshort;\n${'x'.repeat(300)}`);
    for (const size of [1, 7, 199, 200, 201, 4096]) {
      const meter = new LineMeter();
      const pieces = Array.from({ length: Math.ceil(text.length / size) }, (_, i) => text.subarray(i * size, (i + 1) * size));
      const out: Buffer[] = [];
      await pipeline(Readable.from(pieces), new FilterTransform(meter), async (source: AsyncIterable<Buffer>) => {
        for await (const piece of source) out.push(piece);
      });
      expect(Buffer.concat(out).equals(text), `cut every ${size}`).toBe(true);
      expect(meter.longest.length, `cut every ${size}`).toBe(long.length);
      expect(meter.longest.describe()).toBe(`${long.length} bytes: ${long.slice(0, 200)}… (${long.length - 200} more bytes)`);
      // The same in reused memory, as a snapshot reads the dump (sql/tool-output.ts): the line's
      // first bytes are kept as a copy, not as a view of memory the next read overwrites.
      const reused = new LineMeter();
      expect(filterInReusedMemory(reused, pieces).equals(text), `cut every ${size}, reused memory`).toBe(true);
      expect(reused.longest.describe(), `cut every ${size}, reused memory`).toBe(meter.longest.describe());
    }
  });
});
