/**
 * One database, two state dirs (a deployer and a cron under another user, or two hosts): in each
 * round both snapshot it, it changes, then a restore from the first and a restore or an
 * activation from the second start together, with a random head start, and in a third of the
 * rounds the first is SIGKILLed (whole process group) at a random moment while the second may be
 * waiting for it (real PostgreSQL and MariaDB).
 *
 * "Lost" means, after a round: a run that was not killed failed (the other took its staging
 * database for a leftover), the live database is missing or holds anything but the snapshot's
 * state (or, after a kill with only an activation behind it, the state before the restore), or a
 * staging or old copy is left behind once a run has come after the kill (the second run, when it
 * waited for the killed one; otherwise one more activation).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { mysqlSetup, postgresSetup, type SqlSetup } from '../support/sql-setup.js';
import { killAfter, randomInt, startCli, Tally } from './support.js';

const ROUNDS = 9;

const SCHEMA = "create table t(v varchar(64));\ninsert into t values ('initial');\ncreate table filler(id int primary key, body varchar(200));\n";
/** About 10 MB of rows, so that a restore takes long enough for the other run to arrive. */
const FILLER = {
  postgresql: "insert into filler select g, repeat(md5(g::text), 6) from generate_series(1, 50000) g;\n",
  mysql: 'insert into filler select seq, repeat(md5(seq), 6) from seq_1_to_50000;\n',
};

const engines = [
  { id: 'postgresql', setup: () => postgresSetup({ scripts: { '1.sql': SCHEMA, '2.sql': FILLER.postgresql } }) },
  { id: 'mysql', setup: () => mysqlSetup({ scripts: { '1.sql': SCHEMA, '2.sql': FILLER.mysql } }) },
];

async function liveState(setup: SqlSetup): Promise<string> {
  try {
    const rows = await setup.query('select v from t');
    return rows.length === 1 ? String(rows[0]!.v) : `${rows.length} rows`;
  } catch (error) {
    return `unreadable (${(error as Error).message})`;
  }
}

describe.each(engines)('shared database ($id): runs from two state dirs at once', (engine) => {
  it(`loses nothing in ${ROUNDS} rounds`, { timeout: 300_000 }, async () => {
    const tally = new Tally(`shared-database-${engine.id}`);
    const setup = await engine.setup();
    const other = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-shared-'));
    onTestFinished(() => rm(other, { recursive: true, force: true }));
    const env = { first: { DYSNOMIA_STATEDIR: setup.stateDir }, second: { DYSNOMIA_STATEDIR: other } };
    const args = (operation: string) => ['--operation', operation, '--component', setup.component, '--container', setup.containerFile];
    await setup.ok('activate');
    expect((await setup.run('activate', { env: env.second })).exitCode).toBe(0);

    for (let round = 1; round <= ROUNDS; round++) {
      const snapshotState = `round-${round}`;
      await setup.query(`update t set v = '${snapshotState}'`);
      await setup.ok('snapshot');
      expect((await setup.run('snapshot', { env: env.second })).exitCode).toBe(0);
      await setup.query("update t set v = 'changed'");

      const secondOperation = round % 2 === 0 ? 'activate' : 'restore';
      const first = startCli('dysnomia', args('restore'), env.first);
      await new Promise((resolve) => setTimeout(resolve, randomInt(0, 300)));
      const second = startCli('dysnomia', args(secondOperation), env.second);
      const killed = round % 3 === 0 ? await killAfter(first, randomInt(50, 600), true) : false;
      const [firstResult, secondResult] = await Promise.all([first, second]);
      tally.trials += 1;
      const secondWaited = String(secondResult.stderr).includes('waiting for another dysnomia run');
      const overlapped = secondWaited || String(firstResult.stderr).includes('waiting for another dysnomia run');
      if (overlapped) tally.note(`${secondOperation} from the second state dir met the restore from the first`);
      if (killed) tally.note(`restore killed, ${secondOperation} from the second state dir`);
      if (overlapped || killed) tally.faults += 1;

      const context = `round ${round} (${secondOperation}${killed ? ', restore killed' : ''})`;
      if (!killed && firstResult.exitCode !== 0) tally.lost.push(`${context}: the restore failed: ${String(firstResult.stderr).trim()}`);
      if (secondResult.exitCode !== 0) tally.lost.push(`${context}: the ${secondOperation} failed: ${String(secondResult.stderr).trim()}`);
      const valid = killed && secondOperation === 'activate' ? ['changed', snapshotState] : [snapshotState];
      const state = await liveState(setup);
      if (!valid.includes(state)) tally.lost.push(`${context}: the live database holds ${state}, not ${valid.join(' or ')}`);
      if (killed && !secondWaited) {
        // The second run finished before the first took the lock, so nothing after the kill has
        // cleaned up yet: what the kill left is for the next activation to drop, as users do it.
        const next = await setup.run('activate', { env: env.second });
        if (next.exitCode !== 0) tally.lost.push(`${context}: the activation after the kill failed: ${String(next.stderr).trim()}`);
        if (String(next.stderr).includes('interrupted')) tally.note('the next activation dropped what the killed restore left');
      }
      const helpers = (await setup.databases()).filter((name) => name !== setup.name);
      if (helpers.length > 0) tally.lost.push(`${context}: left behind ${helpers.join(', ')}`);
    }
    tally.save();
    expect(tally.lost).toEqual([]);
  });
});
