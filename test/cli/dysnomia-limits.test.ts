/**
 * A file size limit (ulimit -f, a cron's limits.conf) below the size of a pack: the snapshot stops
 * with a message naming the limit. Node ignores SIGXFSZ, but execa's signal-exit listened for it
 * while pg_dump ran and raised it again, which killed the snapshot without a word.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it, onTestFinished } from 'vitest';
import { programPath } from '../support/cli.js';
import { uniqueName } from '../support/temp.js';
import { useMachine } from '../support/machine.js';
import { findPostgres } from '../support/servers.js';

it('a PostgreSQL snapshot past the file size limit fails (exit 1) naming ulimit -f, and leaves nothing half-made', async () => {
  const server = await findPostgres();
  const machine = await useMachine();
  const container = await machine.addContainer('pg', { type: 'postgresql-database', ...server.properties });
  const name = uniqueName('intr');
  // About 6 MiB of hex that zstd packs into some 3 MiB, over the 2 MiB limit below.
  const component = await machine.addComponent('pg', name, {
    'postgresql-databases/1.sql': 'CREATE TABLE t AS SELECT md5(random()::text) AS v FROM generate_series(1, 200000);\n',
  });
  onTestFinished(async () => {
    await server.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  });
  const cli = (operation: string, limit = 'unlimited') =>
    execa('bash', ['-c', `ulimit -f ${limit}; exec "$NODE" "$CLI" -o ${operation} -c "$COMPONENT" -C "$CONTAINER"`], {
      env: { ...machine.env, NODE: process.execPath, CLI: programPath('dysnomia'), COMPONENT: component, CONTAINER: container },
      reject: false,
    });
  const activated = await cli('activate');
  expect(activated.exitCode, activated.stderr).toBe(0);
  const result = await cli('snapshot', '2048');
  expect(result.exitCode, `${result.stderr} (signal ${result.signal})`).toBe(1);
  expect(result.stderr).toContain('raise the file size limit (ulimit -f)');
  expect(result.stderr).toContain('No generation was added');
  expect(await readdir(path.join(machine.stateDir, 'snapshots', 'pg', name)).catch(() => [])).toEqual([]);
  expect((await readdir(path.join(machine.stateDir, 'pool'))).filter((entry) => entry.startsWith('.tmp-'))).toEqual([]);
});
