/**
 * Disk full: the state dir lives on a tiny tmpfs, and before each snapshot a filler file takes
 * all but a random margin of its free space, so the disk fills at a different moment each time
 * (while packs are written, at the manifest, the checksum, the generation link, the lock). A real
 * git repository and a real PostgreSQL database are snapshotted through the real CLI.
 *
 * Each snapshot either fits (a new, complete generation) or fails cleanly: exit 1, a message
 * naming the lack of space, no stack trace, no new generation, nothing half-made visible, no
 * temporary file left, and --check passes on what was there. Once the filler is gone the same
 * snapshot works, and at the end the latest generation restores exactly. After every round,
 * still on the full disk, `dysnomia-snapshots --gc --keep 2` must work: it is how room is made.
 *
 * Mounting a tmpfs needs root (CI runs as root); without it the test fails and says so.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, rm, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { type CliResult, runCli } from '../support/cli.js';
import { git } from '../support/git.js';
import { gitSetup } from '../support/git-repository.js';
import { postgresSetup } from '../support/sql-setup.js';
import { expectIntact, fingerprintMemory, pushChange, randomInt, readGenerations, refState, type Subject, Tally, tempLeftovers } from './support.js';

const MIB = 1024 * 1024;

/** Mounts a tmpfs of `mib` MiB at `dir` (created if missing), unmounted when the test finishes. */
function mountTmpfs(dir: string, mib: number): void {
  execFileSync('mkdir', ['-p', dir]);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    throw new Error(
      `the disk-full test mounts a ${mib} MiB tmpfs at ${dir} and could not (${String(error).trim()}); ` +
        'run the reliability suite as root (CI does)',
    );
  }
  // Runs before the temporary folder's own clean-up (after-hooks run in reverse order).
  onTestFinished(() => {
    execFileSync('umount', ['-l', dir]);
  });
}

async function freeBytes(dir: string): Promise<number> {
  const info = await statfs(dir);
  return info.bavail * info.bsize;
}

/** Fills `dir`'s file system up to `margin` bytes of free space; returns the filler's size. */
async function fill(dir: string, margin: number): Promise<number> {
  const size = Math.max(0, (await freeBytes(dir)) - margin);
  try {
    await writeFile(path.join(dir, 'filler'), Buffer.alloc(size, 0x5a));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  }
  return size;
}

interface ChangingSubject extends Subject {
  /** Changes the live component by about `bytes` of new content. */
  change(round: number, bytes: number): Promise<void>;
}

/** True for a clean failure message: the program's name, the lack of space, no stack trace. */
function cleanFailure(result: CliResult): boolean {
  return (
    result.exitCode === 1 &&
    /^dysnomia: /m.test(result.stderr) &&
    /disk of the state dir .* is full/.test(result.stderr) &&
    !/unexpected error/.test(result.stderr) &&
    !/\n\s+at .+:\d+:\d+/.test(result.stderr)
  );
}

async function diskFullLoop(tally: Tally, subject: ChangingSubject, rounds: number, changeBytes: number): Promise<void> {
  const env = { DYSNOMIA_STATEDIR: subject.stateDir };
  const snapshot = () => runCli('dysnomia', ['--operation', 'snapshot', ...subject.target, '--quiet'], { env });
  const { remember, expectLatestRestores } = fingerprintMemory(subject);
  const first = await snapshot();
  expect(first.exitCode, first.stderr).toBe(0);
  await remember();

  for (let round = 0; round < rounds; round++) {
    await subject.change(round, changeBytes);
    const before = (await readGenerations(subject.stateDir)).get(subject.key) ?? [];
    // Every other round surely too little room (a change adds at least half of changeBytes), the
    // others anything from none to more than the change needs.
    const margin = round % 2 === 0 ? randomInt(0, changeBytes / 4) : randomInt(0, changeBytes * 2);
    await fill(subject.stateDir, margin);
    const result = await snapshot();
    const context = `round ${round}, ${Math.round(margin / 1024)} KiB free`;
    tally.trials += 1;
    const after = (await readGenerations(subject.stateDir)).get(subject.key) ?? [];
    for (const link of before) {
      const now = after.find((other) => other.number === link.number);
      if (now?.identity !== link.identity) tally.lost.push(`${context}: generation ${link.number} ${now ? 'changed' : 'is gone'}`);
    }
    if (result.exitCode === 0) {
      tally.note('fitted');
      expect(after.length, context).toBe(before.length + 1);
      await remember();
    } else {
      tally.faults += 1;
      tally.note('disk full');
      expect(cleanFailure(result), `${context}: not a clean failure (exit ${result.exitCode}):\n${result.stderr}`).toBe(true);
      expect(after, `${context}: a failed snapshot changed the generations`).toEqual(before);
      expect(await tempLeftovers(subject.stateDir), `${context}: temporary files left`).toEqual([]);
    }
    // Still full: nothing half-made is visible, every snapshot checks out, and gc (what an
    // operator runs to make room) works and keeps the newest generations.
    await expectIntact(subject.stateDir, context);
    const gc = await runCli('dysnomia-snapshots', ['--gc', '--keep', '2'], { env });
    expect(gc.exitCode, `${context}: gc on the full disk failed:\n${gc.stderr}`).toBe(0);
    const kept = (await readGenerations(subject.stateDir)).get(subject.key) ?? [];
    if (JSON.stringify(kept) !== JSON.stringify((result.exitCode === 0 ? after : before).slice(-2))) {
      tally.lost.push(`${context}: gc --keep 2 on the full disk did not keep the 2 newest generations`);
    }
    await expectIntact(subject.stateDir, `${context}, after gc`);
    await rm(path.join(subject.stateDir, 'filler'), { force: true });
    if (result.exitCode !== 0) {
      // With room again the same snapshot works (and the next round starts from it).
      const retry = await snapshot();
      expect(retry.exitCode, `${context}: the snapshot failed with room again:\n${retry.stderr}`).toBe(0);
      await remember();
    }
  }

  // With room again the snapshot works, and the latest generation restores exactly.
  const next = await snapshot();
  expect(next.exitCode, next.stderr).toBe(0);
  await remember();
  await expectIntact(subject.stateDir, 'after the disk had room again');
  await expectLatestRestores(tally);
}

describe('disk full: a state dir on a tiny tmpfs', () => {
  it('git-repository, 14 rounds on a 12 MiB state dir', { timeout: 300_000 }, async () => {
    const tally = new Tally('disk-full-git');
    const setup = await gitSetup({ commits: 20, branches: ['dev'], tags: ['v1'] });
    mountTmpfs(setup.stateDir, 12);
    await setup.ok('activate');
    await pushChange(setup.work, setup.repo, 2 * MIB, 'base');
    await diskFullLoop(
      tally,
      {
        stateDir: setup.stateDir,
        target: ['--component', setup.component, '--container', setup.containerFile],
        key: `${setup.containerName}/project`,
        change: (round, bytes) => pushChange(setup.work, setup.repo, randomInt(bytes / 2, bytes), `r${round}`),
        fingerprint: () => refState(setup.repo),
        damage: () => git(setup.work, 'push', '-q', '--force', setup.repo, 'HEAD~3:refs/heads/main', ':refs/heads/dev').then(() => undefined),
      },
      14,
      MIB / 4,
    );
    tally.save();
    expect(tally.lost).toEqual([]);
    expect(tally.faults).toBeGreaterThanOrEqual(5);
  });

  it('postgresql-database, 10 rounds on a 12 MiB state dir', { timeout: 300_000 }, async () => {
    const tally = new Tally('disk-full-postgresql');
    const setup = await postgresSetup({
      scripts: {
        'schema.sql':
          'create table items(id serial primary key, body text);\n' +
          "insert into items(body) select md5(random()::text) || md5(random()::text) from generate_series(1, 30000) g;\n",
      },
    });
    await mkdir(setup.stateDir, { recursive: true });
    mountTmpfs(setup.stateDir, 12);
    await setup.ok('activate');
    await diskFullLoop(
      tally,
      {
        stateDir: setup.stateDir,
        target: ['--component', setup.component, '--container', setup.containerFile],
        key: `${path.basename(setup.containerFile)}/${setup.name}`,
        // About 70 bytes a row in the dump, half of it left after compression.
        change: async (round, bytes) => {
          await setup.query(`insert into items(body) select md5(random()::text) || md5(random()::text) from generate_series(1, ${Math.round(bytes / 35)})`);
          const from = randomInt(1, 30000);
          await setup.query(`update items set body = 'round ${round}' where id between ${from} and ${from + 100}`);
        },
        fingerprint: async () => {
          const [row] = await setup.query("select count(*)::text || ':' || md5(string_agg(body, ',' order by id)) as f from items");
          return String(row!.f);
        },
        damage: () => setup.query('delete from items where id % 2 = 0').then(() => undefined),
      },
      10,
      MIB / 4,
    );
    tally.save();
    expect(tally.lost).toEqual([]);
    expect(tally.faults).toBeGreaterThanOrEqual(3);
  });
});
