/**
 * A git-repository restore whose gitBaseDir fills up while it builds the copy beside the live
 * repository: the live one is unchanged, nothing is left beside it, and the message says which
 * disk is full and why a restore needs room, not only `ENOSPC: no space left on device, write`.
 * The same for a file size limit below the size of the bundle.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { expect, it, onTestFinished } from 'vitest';
import { programPath } from '../support/cli.js';
import { git } from '../support/git.js';
import { type GitSetup, gitSetup } from '../support/git-repository.js';

/** A tmpfs of `mib` MiB at `dir`, unmounted when the test finishes (the tests run as root, as CI does). */
async function smallDisk(dir: string, mib: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  onTestFinished(() => {
    execFileSync('umount', ['-l', dir]);
  });
}

/** Pushes one commit to the live repository, so that a restore has something to undo; its main before the restore. */
async function changeAfterSnapshot(setup: GitSetup): Promise<string> {
  await writeFile(`${setup.work}/change.txt`, 'after the snapshot\n');
  await git(setup.work, 'add', 'change.txt');
  await git(setup.work, 'commit', '-q', '-m', 'change');
  await git(setup.work, 'push', '-q', setup.repo, 'HEAD:main');
  return git(setup.repo, 'rev-parse', 'main');
}

it('a restore that fills the disk of gitBaseDir says so, and leaves the live repository as it was', async () => {
  const setup = await gitSetup({ files: { 'blob.bin': randomBytes(6 * 1024 * 1024).toString('base64') } });
  // The repository (about 6 MiB) fits; its bundle beside it does not.
  await smallDisk(setup.baseDir, 10);
  await setup.ok('activate');
  await setup.ok('snapshot');
  const before = await changeAfterSnapshot(setup);
  const result = await setup.run('restore');
  expect(result.exitCode, result.stderr).toBe(1);
  expect(result.stderr).toContain(`the disk of gitBaseDir ${setup.baseDir} is full`);
  expect(result.stderr).toContain('a second copy of the repository');
  expect(result.stderr).toContain(`${setup.repo} is unchanged`);
  expect(await git(setup.repo, 'rev-parse', 'main')).toBe(before);
  expect(await readdir(setup.baseDir)).toEqual(['project']);
});

it('a restore whose bundle is past the file size limit (ulimit -f) says so, and leaves the live repository as it was', async () => {
  const setup = await gitSetup({ files: { 'blob.bin': randomBytes(3 * 1024 * 1024).toString('base64') } });
  await setup.ok('activate');
  await setup.ok('snapshot');
  const before = await changeAfterSnapshot(setup);
  const result = await execa('bash', ['-c', 'ulimit -f 1024; exec "$NODE" "$CLI" -o restore -c "$COMPONENT" -C "$CONTAINER"'], {
    env: { DYSNOMIA_STATEDIR: setup.stateDir, NODE: process.execPath, CLI: programPath('dysnomia'), COMPONENT: setup.component, CONTAINER: setup.containerFile },
    reject: false,
  });
  expect(result.exitCode, result.stderr).toBe(1);
  expect(result.stderr).toContain('raise the file size limit (ulimit -f)');
  expect(result.stderr).toContain(`${setup.repo} is unchanged`);
  expect(await git(setup.repo, 'rev-parse', 'main')).toBe(before);
  expect(await readdir(setup.baseDir)).toEqual(['project']);
});
