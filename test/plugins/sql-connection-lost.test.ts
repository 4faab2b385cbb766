/**
 * A restore whose connections to the server die while the snapshot is loading (a proxy, a network
 * cut): the live database is unchanged, the message says so and names the cause, and the next
 * restore removes the staging database left behind.
 */
import net from 'node:net';
import { describe, expect, it, onTestFinished } from 'vitest';
import { STAGING_SUFFIX } from '../../src/plugins/sql/names.js';
import { mysqlSetup, postgresSetup, type SqlSetup } from '../support/sql-setup.js';

/** A TCP proxy to `port` on 127.0.0.1 whose connections can all be cut at once. */
async function useProxy(port: number): Promise<{ port: number; cut(): void }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(() => new Promise<void>((resolve) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => resolve());
  }));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () => {
      for (const socket of sockets) socket.destroy();
    },
  };
}

const ROWS = 600_000;

const engines: [string, (port: number) => Promise<SqlSetup>, number, string][] = [
  [
    'postgresql-database',
    (port) => postgresSetup({
      scripts: { '01.sql': 'CREATE TABLE t (id int PRIMARY KEY, v text);\n' },
      properties: { postgresqlHost: '127.0.0.1', postgresqlPort: String(port), timeout: '5' },
    }),
    5432,
    `INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, ${ROWS}) g`,
  ],
  [
    'mysql-database',
    (port) => mysqlSetup({
      scripts: { '01.sql': 'CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(64));\n' },
      properties: { mysqlHost: '127.0.0.1', mysqlPort: String(port), mysqlSocket: '', timeout: '5' },
    }),
    3306,
    // Digits cross-joined: no recursion limit (MySQL's is 1000) and no MariaDB-only sequence table.
    `INSERT INTO t SELECT n, MD5(n) FROM (SELECT a.i + 10 * b.i + 100 * c.i + 1000 * d.i + 10000 * e.i + 100000 * f.i AS n
       FROM ${'(SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)'} a
       CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) b
       CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) c
       CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) d
       CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) e
       CROSS JOIN (SELECT 0 AS i UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9) f) g
       WHERE n BETWEEN 1 AND ${ROWS}`,
  ],
];

describe('a restore whose connections die while it loads', () => {
  for (const [type, setupFor, serverPort, fill] of engines) {
    it(`${type}: exit 1 saying the live database is unchanged, which it is; the next restore cleans up`, { timeout: 180_000 }, async () => {
      const proxy = await useProxy(serverPort);
      const setup = await setupFor(proxy.port);
      await setup.ok('activate');
      await setup.query(fill);
      await setup.ok('snapshot');
      await setup.query('UPDATE t SET v = \'changed\' WHERE id = 1');
      const live = async () => JSON.stringify(await setup.query('SELECT COUNT(*) AS n, (SELECT v FROM t WHERE id = 1) AS v FROM t'));
      const before = await live();

      const restore = setup.run('restore');
      // Cut once the staging database exists: the load is under way.
      const staging = `${setup.name}${STAGING_SUFFIX}`;
      for (let i = 0; i < 2000 && !(await setup.databases()).includes(staging); i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      proxy.cut();
      const result = await restore;
      expect(result.exitCode, result.stderr).toBe(1);
      // Before the swap, or at its start (the cut may come as the load ends): unchanged either way.
      expect(result.stderr).toMatch(new RegExp(`The live database ${setup.name} is unchanged: the (restore stopped before the swap|swap did not happen)`));
      expect(result.stderr).not.toContain('unexpected error');
      expect(await live()).toBe(before);

      const again = await setup.ok('restore');
      expect(await setup.databases()).toEqual([setup.name]);
      expect(again.exitCode).toBe(0);
      expect(await live()).not.toBe(before);
    });
  }
});
