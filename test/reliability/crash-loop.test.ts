/**
 * Crash loop: over and over, a real `dysnomia --operation snapshot` or `dysnomia-snapshots --gc`
 * is SIGKILLed at a random moment (the whole process group, or only the Node process as the OOM
 * killer would), on a real git repository and a real PostgreSQL database. After every kill:
 * `--query-all --check` passes, nothing half-made is visible, no generation that must survive is
 * gone, and the next snapshot works. At the end, a restore brings back exactly the state of the
 * latest snapshot.
 *
 * "Lost" means: after a killed (or finished) snapshot, a generation that existed before is gone
 * or points elsewhere, or more than one new generation appeared; after a killed gc --keep K, a
 * generation appeared, changed, or one of the K newest is gone; any generation failing --check;
 * a restore that does not give back the latest snapshot's state.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { git } from '../support/git.js';
import { gitSetup } from '../support/git-repository.js';
import { postgresSetup } from '../support/sql-setup.js';
import {
  expectIntact,
  fingerprintMemory,
  type GenerationLink,
  killAfter,
  pushChange,
  randomInt,
  readGenerations,
  refState,
  startCli,
  type Subject,
  Tally,
  tempLeftovers,
} from './support.js';

/** A component the loop can snapshot, change and restore through the real CLI. */
interface ChangingSubject extends Subject {
  change(round: number): Promise<void>;
}

const sameLinks = (a: GenerationLink[], b: GenerationLink[]) => JSON.stringify(a) === JSON.stringify(b);

/** Checks what a snapshot (killed or not) may do to the generations; returns what was lost. */
function snapshotLosses(before: GenerationLink[], after: GenerationLink[]): string[] {
  const lost: string[] = [];
  for (const link of before) {
    const now = after.find((other) => other.number === link.number);
    if (now?.identity !== link.identity) lost.push(`generation ${link.number} (${link.identity}) ${now ? `now points at ${now.identity}` : 'is gone'}`);
  }
  if (after.length > before.length + 1) lost.push(`${after.length - before.length} generations appeared from one snapshot`);
  return lost;
}

/** Checks what gc --keep K (killed or not) may do; `finished` requires exactly the K newest. */
function gcLosses(before: GenerationLink[], after: GenerationLink[], keep: number, finished: boolean): string[] {
  const lost: string[] = [];
  for (const link of after) {
    if (!before.some((old) => old.number === link.number && old.identity === link.identity)) lost.push(`gc made or changed generation ${link.number}`);
  }
  for (const link of before.slice(-keep)) {
    if (!after.some((now) => now.number === link.number && now.identity === link.identity)) lost.push(`gc --keep ${keep} removed generation ${link.number}, one of the newest`);
  }
  if (finished && after.length !== Math.min(keep, before.length)) lost.push(`gc --keep ${keep} finished and left ${after.length} of ${before.length} generations`);
  return lost;
}

async function crashLoop(tally: Tally, subject: ChangingSubject, rounds: number): Promise<void> {
  const env = { DYSNOMIA_STATEDIR: subject.stateDir };
  const snapshotArgs = ['--operation', 'snapshot', ...subject.target, '--quiet'];
  const snapshot = () => runCli('dysnomia', snapshotArgs, { env });
  const { remember, expectLatestRestores } = fingerprintMemory(subject);

  // Two whole runs first, to learn how long each takes, so the kills spread over all of it.
  let started = performance.now();
  expect((await snapshot()).exitCode).toBe(0);
  const snapshotMs = performance.now() - started;
  await remember();
  await subject.change(-1);
  expect((await snapshot()).exitCode).toBe(0);
  await remember();
  started = performance.now();
  expect((await runCli('dysnomia-snapshots', ['--gc', '--keep', '2', '-q'], { env })).exitCode).toBe(0);
  const gcMs = performance.now() - started;

  for (let round = 0; round < rounds; round++) {
    await subject.change(round);
    const before = (await readGenerations(subject.stateDir)).get(subject.key) ?? [];
    const gc = round % 3 === 2;
    const keep = randomInt(1, 4);
    const wholeGroup = Math.random() < 0.7;
    const delay = randomInt(20, (gc ? gcMs : snapshotMs) * 1.2);
    const child = gc
      ? startCli('dysnomia-snapshots', ['--gc', '--keep', String(keep), '-q'], env)
      : startCli('dysnomia', snapshotArgs, env);
    const killed = await killAfter(child, delay, wholeGroup);
    tally.trials += 1;
    if (killed) {
      tally.faults += 1;
      tally.note(`${gc ? 'gc' : 'snapshot'} killed (${wholeGroup ? 'process group' : 'node process only'})`);
    } else {
      tally.note(`${gc ? 'gc' : 'snapshot'} finished before the kill`);
      expect((await child).exitCode, (await child).stderr).toBe(0);
    }
    const context = `round ${round}: ${gc ? `gc --keep ${keep}` : 'snapshot'} ${killed ? `killed after ${delay} ms` : 'finished'}`;
    const after = (await readGenerations(subject.stateDir)).get(subject.key) ?? [];
    const lost = gc ? gcLosses(before, after, keep, !killed) : snapshotLosses(before, after);
    tally.lost.push(...lost.map((line) => `${context}: ${line}`));
    if ((await tempLeftovers(subject.stateDir)).length > 0) tally.note('temporary files left by the kill');
    await expectIntact(subject.stateDir, context);

    // The next snapshot works, and tidies what the kill left.
    const next = await snapshot();
    expect(next.exitCode, `${context}: the next snapshot failed:\n${next.stderr}`).toBe(0);
    await remember();
    await expectIntact(subject.stateDir, `${context}, after the next snapshot`);
  }

  // A complete gc leaves no temporary files behind, and the latest snapshot restores exactly.
  expect((await runCli('dysnomia-snapshots', ['--gc', '--keep', '3', '-q'], { env })).exitCode).toBe(0);
  expect(await tempLeftovers(subject.stateDir)).toEqual([]);
  await expectIntact(subject.stateDir, 'after the final gc');
  await expectLatestRestores(tally);
}

describe('crash loop: SIGKILL of snapshot and gc at random moments', () => {
  it('git-repository, 30 rounds', { timeout: 600_000 }, async () => {
    const tally = new Tally('crash-loop-git');
    const setup = await gitSetup({ commits: 200, branches: ['dev'], tags: ['v1'] });
    await setup.ok('activate');
    await pushChange(setup.work, setup.repo, 2_000_000, 'base');
    await crashLoop(
      tally,
      {
        stateDir: setup.stateDir,
        target: ['--component', setup.component, '--container', setup.containerFile],
        key: `${setup.containerName}/project`,
        change: (round) => pushChange(setup.work, setup.repo, randomInt(20_000, 200_000), `r${round}`),
        fingerprint: () => refState(setup.repo),
        damage: () => git(setup.work, 'push', '-q', '--force', setup.repo, 'HEAD~3:refs/heads/main', ':refs/heads/dev').then(() => undefined),
      },
      30,
    );
    tally.save();
    expect(tally.lost).toEqual([]);
    expect(tally.faults).toBeGreaterThanOrEqual(15);
  });

  it('postgresql-database, 10 rounds', { timeout: 600_000 }, async () => {
    const tally = new Tally('crash-loop-postgresql');
    const setup = await postgresSetup({
      scripts: {
        'schema.sql':
          'create table items(id serial primary key, body text);\n' +
          "insert into items(body) select repeat(md5(g::text), 8) from generate_series(1, 20000) g;\n",
      },
    });
    await setup.ok('activate');
    await crashLoop(
      tally,
      {
        stateDir: setup.stateDir,
        target: ['--component', setup.component, '--container', setup.containerFile],
        key: `${path.basename(setup.containerFile)}/${setup.name}`,
        change: async (round) => {
          await setup.query(`insert into items(body) select repeat(md5(random()::text), 8) from generate_series(1, ${randomInt(100, 3000)})`);
          await setup.query(`update items set body = 'round ${round}' where id % 97 = ${randomInt(0, 97)}`);
        },
        fingerprint: async () => {
          const [row] = await setup.query("select count(*)::text || ':' || md5(string_agg(body, ',' order by id)) as f from items");
          return String(row!.f);
        },
        damage: () => setup.query('delete from items where id % 2 = 0').then(() => undefined),
      },
      10,
    );
    tally.save();
    expect(tally.lost).toEqual([]);
    expect(tally.faults).toBeGreaterThanOrEqual(5);
  });
});
