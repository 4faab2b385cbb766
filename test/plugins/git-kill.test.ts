/**
 * SIGKILL during a git-repository restore, at several points: the repository is always either
 * the old one or the new one, and fsck-clean; the next operation tidies up what the kill left.
 */
import { randomBytes } from 'node:crypto';
import { watch } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { git } from '../support/git.js';
import { gitSetup } from '../support/git-repository.js';

async function refState(repo: string): Promise<string> {
  const { stdout } = await execa('git', ['for-each-ref', '--format=%(objectname) %(refname)'], { cwd: repo });
  return `${stdout}\nHEAD ${(await readFile(path.join(repo, 'HEAD'), 'utf8')).trim()}`;
}

const exists = (file: string) => readdir(file).then(
  () => true,
  () => false,
);

it('survives SIGKILL at any point of a restore', { timeout: 600_000 }, async () => {
  const setup = await gitSetup({ commits: 3000, branches: ['dev'] });
  await setup.ok('activate');
  for (let i = 0; i < 6; i++) await writeFile(path.join(setup.work, `blob-${i}.bin`), randomBytes(1_500_000));
  await git(setup.work, 'add', '.');
  await git(setup.work, 'commit', '-q', '-m', 'large files');
  await git(setup.work, 'push', '-q', setup.repo, 'main', 'dev');
  const fresh = await refState(setup.repo);
  await setup.ok('snapshot');

  const damage = () => git(setup.work, 'push', '-q', '--force', setup.repo, 'main~2000:main', ':refs/heads/dev');
  await damage();
  const old = await refState(setup.repo);

  // How long a whole restore takes here, to spread the kills over it.
  const started = performance.now();
  await setup.ok('restore');
  const duration = performance.now() - started;
  expect(await refState(setup.repo)).toBe(fresh);

  const outcomes: string[] = [];
  for (const fraction of [0.05, 0.15, 0.3, 0.45, 0.6, 0.7, 0.8, 0.9, 0.97]) {
    if ((await refState(setup.repo)) !== old) await damage();
    expect(await refState(setup.repo)).toBe(old);

    // The whole command dies, git children included, as in a crash.
    const child = execa(process.execPath, [programPath('dysnomia'), '--operation', 'restore', '--component', setup.component, '--container', setup.containerFile], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir },
      detached: true,
      reject: false,
    });
    await new Promise((resolve) => setTimeout(resolve, fraction * duration));
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // It had finished already.
    }
    const result = await child;

    if (await exists(setup.repo)) {
      const state = await refState(setup.repo);
      expect([old, fresh], `after a kill at ${Math.round(fraction * 100)}%`).toContain(state);
      await execa('git', ['fsck', '--no-progress', '--no-dangling'], { cwd: setup.repo });
      outcomes.push(state === old ? 'old' : 'new');
    } else {
      outcomes.push('between the renames');
    }
    // The next operation repairs whatever the kill left behind.
    await setup.ok('activate');
    expect([old, fresh]).toContain(await refState(setup.repo));
    expect(await readdir(setup.baseDir)).toEqual(['project']);
    if (result.signal !== 'SIGKILL') expect(result.exitCode, result.stderr).toBe(0);
  }
  expect(outcomes).toContain('old');

  await setup.ok('restore');
  expect(await refState(setup.repo)).toBe(fresh);
});

// The moment the swap is most fragile: the previous repository has just been moved aside. A kill
// there (before 2026-12-03, the restore wrote its record of the refs only after both renames and a
// flush) must not leave a previous repository that the next repair keeps for lack of that record.
it('survives SIGKILL the moment the previous repository is moved aside, and the moment the new one is in place', { timeout: 300_000 }, async () => {
  const setup = await gitSetup({ commits: 50, branches: ['dev'] });
  await setup.ok('activate');
  await setup.ok('snapshot');
  const fresh = await refState(setup.repo);
  const outcomes: string[] = [];
  for (let round = 0; round < 8; round++) {
    await git(setup.work, 'commit', '--allow-empty', '-q', '-m', `pushed ${round}`);
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'HEAD:refs/heads/main');
    const old = await refState(setup.repo);

    const child = execa(process.execPath, [programPath('dysnomia'), '--operation', 'restore', '--component', setup.component, '--container', setup.containerFile], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir },
      detached: true,
      reject: false,
    });
    // Even rounds: at the first rename (the previous repository moved aside). Odd rounds: at the
    // second (the restored copy in place).
    let aside = false;
    let killed = false;
    const watcher = watch(setup.baseDir, (_event, name) => {
      if (String(name).startsWith('.project.dysnomia-old-')) aside = true;
      if (killed || !aside || (round % 2 === 1 && name !== 'project')) return;
      killed = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // It had finished already.
      }
    });
    const result = await child;
    watcher.close();
    expect(killed, `the restore never moved the previous repository aside:\n${result.stderr}`).toBe(true);

    const repair = await setup.ok('activate');
    expect([old, fresh]).toContain(await refState(setup.repo));
    // The previous repository is removed, not kept, and the live one has no record left in it.
    expect(await readdir(setup.baseDir), repair.stderr).toEqual(['project']);
    expect(await readdir(setup.repo)).not.toContain('dysnomia-refs-at-swap');
    // Where the kill landed, as the repair tells it.
    outcomes.push(
      result.signal !== 'SIGKILL' ? 'finished'
      : /removing \S+\/\.project\.dysnomia-old-/.test(repair.stderr) ? 'after the swap, the previous repository still aside'
      : /putting the previous repository back/.test(repair.stderr) ? 'between the renames'
      : 'later',
    );
  }
  // The kill follows the rename within milliseconds, and the restore then looks for processes and
  // reads the refs in the previous repository (a git process): the window that failed before.
  expect(outcomes, 'no kill landed after the swap with the previous repository still aside').toContain('after the swap, the previous repository still aside');
});
