/**
 * Two nightly crons at once, over and over: `dysnomia-containers --snapshot` and
 * `dysnomia-snapshots --gc --keep 2`, started together (with a random head start for either) on
 * a machine with two git repositories and a PostgreSQL database, every component changed before
 * each round.
 *
 * "Lost" means, for a component after a round: the snapshot of this round's state is not the
 * newest generation (it was never made, or gc removed it); the newest generation of the round
 * before is gone or no longer just below it (gc --keep 2 must keep both, whichever ran first);
 * any generation fails --check. At the end every component is damaged and `--restore -y` must
 * bring back exactly the state of the last round.
 */
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCli } from '../support/cli.js';
import { git, makeBundle, makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';
import { findPostgres } from '../support/servers.js';
import { uniqueName } from '../support/temp.js';
import { expectIntact, pushChange, randomInt, readGenerations, refState, startCli, Tally } from './support.js';

const ROUNDS = 12;

interface Component {
  key: string;
  change(round: number): Promise<void>;
  fingerprint(): Promise<string>;
  damage(): Promise<void>;
}

describe('concurrency: nightly snapshot and gc crons at once', () => {
  it(`loses no generation in ${ROUNDS} rounds`, { timeout: 600_000 }, async () => {
    const tally = new Tally('concurrency');
    const machine = await useMachine();
    const pg = await findPostgres();
    const database = uniqueName('relc');
    onTestFinished(async () => {
      await pg.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
    });

    const repos = path.join(machine.root, 'repos');
    await machine.addContainer('git-nightly', { type: 'git-repository', gitBaseDir: repos });
    await machine.addContainer('pg-nightly', pg.properties);
    const components: Component[] = [];
    for (const name of ['alpha', 'beta']) {
      const work = await makeWorkRepo(path.join(machine.root, `work-${name}`), { commits: 50, branches: ['dev'] });
      const component = await machine.addComponent('git-nightly', name, {});
      await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
      const repo = path.join(repos, name);
      components.push({
        key: `git-nightly/${name}`,
        change: (round) => pushChange(work, repo, randomInt(10_000, 300_000), `${name}-${round}`),
        fingerprint: () => refState(repo),
        damage: () => git(work, 'push', '-q', '--force', repo, 'HEAD~2:refs/heads/main').then(() => undefined),
      });
    }
    await machine.addComponent('pg-nightly', database, {
      'postgresql-databases/schema.sql':
        "create table events(id serial primary key, body text);\ninsert into events(body) select md5(g::text) from generate_series(1, 5000) g;\n",
    });
    components.push({
      key: `pg-nightly/${database}`,
      change: async (round) => {
        await pg.queryIn(database, `insert into events(body) select 'round ${round} ' || md5(random()::text) from generate_series(1, ${randomInt(10, 500)})`);
      },
      fingerprint: async () => {
        const [row] = await pg.queryIn(database, "select count(*)::text || ':' || md5(string_agg(body, ',' order by id)) as f from events");
        return String(row!.f);
      },
      damage: () => pg.queryIn(database, 'delete from events where id % 3 = 0').then(() => undefined),
    });
    const env = machine.env;
    const deployed = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(deployed.exitCode, deployed.stderr).toBe(0);
    const first = await runCli('dysnomia-containers', ['--snapshot'], { env });
    expect(first.exitCode, first.stderr).toBe(0);

    const fingerprints = new Map<string, string>();
    for (let round = 0; round < ROUNDS; round++) {
      const before = await readGenerations(machine.stateDir);
      for (const component of components) {
        await component.change(round);
        fingerprints.set(component.key, await component.fingerprint());
      }
      // Either cron may start first, by up to half a second.
      const lead = randomInt(0, 500);
      const snapshotFirst = Math.random() < 0.5;
      const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
      const [snapshot, gc] = await Promise.all([
        delay(snapshotFirst ? 0 : lead).then(() => startCli('dysnomia-containers', ['--snapshot', '-q'], env)),
        delay(snapshotFirst ? lead : 0).then(() => startCli('dysnomia-snapshots', ['--gc', '--keep', '2', '-q'], env)),
      ]);
      tally.trials += 1;
      tally.faults += 1; // the overlap itself is the injected fault
      tally.note(snapshotFirst ? 'snapshot cron started first' : 'gc cron started first');
      expect(snapshot.exitCode, `round ${round}: dysnomia-containers --snapshot:\n${snapshot.stderr}`).toBe(0);
      expect(gc.exitCode, `round ${round}: dysnomia-snapshots --gc:\n${gc.stderr}`).toBe(0);

      const after = await readGenerations(machine.stateDir);
      for (const component of components) {
        const old = before.get(component.key) ?? [];
        const now = after.get(component.key) ?? [];
        const previous = old.at(-1);
        const newest = now.at(-1);
        const context = `round ${round}, ${component.key}`;
        if (newest === undefined || old.some((link) => link.identity === newest.identity)) {
          tally.lost.push(`${context}: this round's snapshot is not the newest generation`);
        }
        if (previous && now.at(-2)?.identity !== previous.identity) {
          tally.lost.push(`${context}: the previous newest generation ${previous.number} is gone or moved`);
        }
        if (now.length < 2 || now.length > 3) tally.lost.push(`${context}: ${now.length} generations after gc --keep 2 and one snapshot`);
      }
      await expectIntact(machine.stateDir, `round ${round}`);
    }

    for (const component of components) await component.damage();
    const restored = await runCli('dysnomia-containers', ['--restore', '-y'], { env });
    expect(restored.exitCode, restored.stderr).toBe(0);
    for (const component of components) {
      tally.trials += 1;
      if ((await component.fingerprint()) !== fingerprints.get(component.key)) tally.lost.push(`${component.key}: the restore did not bring back the last round`);
    }
    tally.save();
    expect(tally.lost).toEqual([]);
  });
});
