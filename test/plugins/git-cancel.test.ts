/**
 * A git-repository restore cancelled through the library's AbortSignal while git loads the bundle:
 * `git fetch` runs `git index-pack`, which reads the bundle on its own; the cancel must stop it
 * too, before restore() rejects, and not leave it running in the removed temporary folder.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { expect, it } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { useTempDir } from '../support/temp.js';

/** Processes whose working folder is `dir` or below (also once removed: "... (deleted)"), with their command line. */
async function processesBelow(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(pid)) continue;
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
    if (cwd === undefined || !cwd.startsWith(`${dir}/`)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'latin1').catch(() => '');
    if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue; // gone, only not yet reaped
    found.push(`${pid} ${(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim()} (in ${cwd})`);
  }
  return found;
}

it('a restore cancelled while git index-pack loads the bundle stops it before it rejects', { timeout: 120_000 }, async () => {
  const dir = await useTempDir('dysnomia-git-cancel-');
  // Incompressible content, so that index-pack takes a while over the bundle.
  const files: Record<string, string> = {};
  for (let i = 0; i < 6; i++) files[`blob-${i}.bin`] = randomBytes(8 * 1024 * 1024).toString('base64');
  const work = await makeWorkRepo(path.join(dir, 'work'), { files, commits: 20 });
  const component = path.join(dir, 'components', 'big');
  await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  const baseDir = path.join(dir, 'repos');
  const repo = path.join(baseDir, 'big');
  const options = { container: { type: 'git-repository', gitBaseDir: baseDir }, component, stateDir: path.join(dir, 'state') };
  await dysnomia.activate(options);
  await dysnomia.snapshot(options);
  await git(work, 'commit', '--allow-empty', '-q', '-m', 'after the snapshot');
  await git(work, 'push', '-q', repo, 'main');
  const live = await refs(repo);

  const controller = new AbortController();
  const restoring = dysnomia.restore({ ...options, signal: controller.signal }).catch((e: unknown) => e);
  let seen: string | undefined;
  for (let settled = false; seen === undefined && !settled; ) {
    seen = (await processesBelow(baseDir)).find((line) => line.includes('index-pack'));
    settled = await Promise.race([restoring.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2))]);
  }
  expect(seen, 'the restore ended before git index-pack was seen').toBeDefined();
  controller.abort(new Error('test cancels'));
  const error = await restoring;
  // Looked at at once: what is still running now outlived the call that started it.
  const left = await processesBelow(baseDir);
  expect(error).toBeInstanceOf(dysnomia.AbortedError);
  expect(left).toEqual([]);
  expect(await refs(repo)).toBe(live);
  expect(await readdir(baseDir)).toEqual(['big']);
});
