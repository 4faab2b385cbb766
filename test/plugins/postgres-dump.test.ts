/**
 * dumpDatabase against the real PostgreSQL server, with a store that gives up: the user must read
 * the store's error (a full disk), not the echo it causes in the dump's pipes.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { SnapshotSink } from '../../src/core/plugin.js';
import { withSession } from '../../src/plugins/postgres/client.js';
import { dumpDatabase } from '../../src/plugins/postgres/dump.js';
import { parsePostgresOptions } from '../../src/plugins/postgres/options.js';
import { postgresSetup } from '../support/sql-setup.js';

/** A store whose disk is full: it refuses the stream at once, or after reading some of it. */
function fullDisk(readFirst: number): SnapshotSink {
  return {
    addStream: async (_name, data) => {
      let read = 0;
      if (readFirst > 0) {
        for await (const piece of data) {
          read += (piece as Buffer).length;
          if (read >= readFirst) break;
        }
      }
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    },
  };
}

describe('postgresql-database dump into a store that fails', () => {
  it('reports the store\'s error, whether the store fails at once or mid-stream, in both row orders', async () => {
    const setup = await postgresSetup({
      scripts: { '01.sql': "CREATE TABLE t (id int PRIMARY KEY, body text);\nINSERT INTO t SELECT i, repeat('x', 200) FROM generate_series(1, 20000) i;\n" },
    });
    await setup.ok('activate');
    const options = parsePostgresOptions(setup.properties);
    for (const order of ['physical', 'key'] as const) {
      for (const readFirst of [0, 64 * 1024]) {
        const dumped = withSession(options, silentLogger, undefined, (session) =>
          dumpDatabase(options, session, setup.name, fullDisk(readFirst), { plugin: 'postgresql-database' }, silentLogger, order),
        );
        await expect(dumped, `${order} order, store fails after ${readFirst} bytes`).rejects.toMatchObject({ code: 'ENOSPC' });
      }
    }
  });
});
