/**
 * Cancellation through an AbortSignal, on a real git-repository component: an aborted snapshot
 * leaves no partial snapshot behind, an aborted restore leaves the live component untouched.
 * The signal fires from the first progress event, i.e. while data is flowing.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/core/lock.js';
import * as dysnomia from '../../src/index.js';
import { storeLockFile } from '../../src/snapshot-store/layout.js';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { recordingLogger } from '../store/helpers.js';
import { useTempDir } from '../support/temp.js';

/** Visible entries of a folder (none if it does not exist). */
async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** A repository of `blobs` incompressible 3 MiB files (as base64: about 3 MB each in a bundle). */
async function bigGitComponent(blobs = 4) {
  const dir = await useTempDir('dysnomia-cancel-');
  // Incompressible content, so the snapshot streams for a while and reports progress more than once.
  const files: Record<string, string> = {};
  for (let i = 0; i < blobs; i++) files[`blob-${i}.bin`] = randomBytes(3 * 1024 * 1024).toString('base64');
  const work = await makeWorkRepo(path.join(dir, 'work'), { files, commits: 50 });
  const component = path.join(dir, 'components', 'big');
  await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  const baseDir = path.join(dir, 'repos');
  const stateDir = path.join(dir, 'state');
  const options = { container: { type: 'git-repository', gitBaseDir: baseDir }, component, stateDir };
  await dysnomia.activate(options);
  return { dir, work, options, stateDir, repo: path.join(baseDir, 'big') };
}

/** Processes working in `dir` (their cwd), after giving a stopped one a moment to go. */
async function processesIn(dir: string): Promise<string[]> {
  const found = async () => {
    const names: string[] = [];
    for (const pid of await readdir('/proc').catch(() => [])) {
      if (!/^\d+$/.test(pid)) continue;
      const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => undefined);
      if (cwd === dir) names.push(`${pid} ${(await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim()}`);
    }
    return names;
  };
  for (let i = 0; i < 20; i += 1) {
    if ((await found()).length === 0) return [];
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return found();
}

function abortOnFirstProgress() {
  const controller = new AbortController();
  const stages: string[] = [];
  return {
    signal: controller.signal,
    stages,
    onProgress: (event: dysnomia.ProgressEvent) => {
      stages.push(event.stage);
      controller.abort(new Error('test cancels'));
    },
  };
}

describe('cancellation', () => {
  it('an aborted snapshot leaves no snapshot folder and no generation', async () => {
    const c = await bigGitComponent();
    const abort = abortOnFirstProgress();
    const error = await dysnomia.snapshot({ ...c.options, signal: abort.signal, onProgress: abort.onProgress }).catch((e: unknown) => e);
    expect(abort.stages.length).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(dysnomia.AbortedError);
    expect(await entries(path.join(c.stateDir, 'generations', 'git-repository', 'big'))).toEqual([]);
    expect(await entries(path.join(c.stateDir, 'snapshots', 'git-repository', 'big'))).toEqual([]);
    // No git is left behind: git bundle's pack-objects, which writes to our pipe itself, is
    // stopped with it (it used to stay blocked on that pipe, and the process never exited).
    expect(await processesIn(c.repo)).toEqual([]);

    // The store is usable afterwards: a complete snapshot is generation 1.
    const result = await dysnomia.snapshot(c.options);
    expect(result.snapshot?.generation).toBe(1);
  });

  it('a snapshot aborted while the bundle streams rejects, and leaves no temporary folder and no lock', async () => {
    // HEAD, config and the hooks' tar come first and are a few kilobytes; the bundle is about
    // 36 MB. Past 2 MiB the store is reading the bundle, with most of it still to come: more than
    // the 16 MiB we read ahead of the store (git.ts), so git is still writing when it is stopped.
    const c = await bigGitComponent(12);
    const controller = new AbortController();
    let abortedAt: number | undefined;
    const onProgress = (event: dysnomia.ProgressEvent) => {
      if (abortedAt !== undefined || event.bytes < 2 * 1024 * 1024) return;
      abortedAt = event.bytes;
      controller.abort(new Error('test cancels'));
    };
    const snapshotting = dysnomia.snapshot({ ...c.options, signal: controller.signal, onProgress });
    // It used to wait for ever here: git's stdout was destroyed without an error, and the stream
    // the store read from neither ended nor failed.
    const outcome = await Promise.race([
      snapshotting.catch((e: unknown) => e),
      new Promise((resolve) => setTimeout(() => resolve('still pending after 20 s'), 20_000)),
    ]);
    expect(abortedAt).toBeDefined();
    expect(outcome).toBeInstanceOf(dysnomia.AbortedError);
    expect(await entries(path.join(c.stateDir, 'snapshots', 'git-repository', 'big'))).toEqual([]);
    expect(await entries(path.join(c.stateDir, 'generations', 'git-repository', 'big'))).toEqual([]);
    expect(await processesIn(c.repo)).toEqual([]);

    // The locks were released: a snapshot that may not wait for them is generation 1.
    const result = await dysnomia.snapshot({ ...c.options, lockTimeoutMs: 5_000 });
    expect(result.snapshot?.generation).toBe(1);
  });

  it('an aborted restore leaves the live repository as it was', async () => {
    const c = await bigGitComponent();
    await dysnomia.snapshot(c.options);
    const snapshotted = await refs(c.repo);
    // Change the live repository: a new commit pushed to main.
    await git(c.work, 'commit', '--allow-empty', '-q', '-m', 'after the snapshot');
    await git(c.work, 'push', '-q', c.repo, 'main');
    const live = await refs(c.repo);

    const abort = abortOnFirstProgress();
    const error = await dysnomia.restore({ ...c.options, signal: abort.signal, onProgress: abort.onProgress }).catch((e: unknown) => e);
    expect(abort.stages.length).toBeGreaterThan(0);
    expect(error).toBeInstanceOf(dysnomia.AbortedError);
    expect(await refs(c.repo)).toBe(live);
    expect(await git(c.repo, 'fsck', '--no-progress')).toBe('');

    // A restore that runs to the end brings the snapshot's state back.
    await dysnomia.restore(c.options);
    expect(await refs(c.repo)).toBe(snapshotted);
    expect(snapshotted).not.toBe(live);
  });

  it('a restore waiting for the store (a gc holds it) stops when the signal fires, before it touches the repository', async () => {
    const c = await bigGitComponent();
    await dysnomia.snapshot(c.options);
    await git(c.work, 'commit', '--allow-empty', '-q', '-m', 'after the snapshot');
    await git(c.work, 'push', '-q', c.repo, 'main');
    const live = await refs(c.repo);
    const gc = await acquireLock(storeLockFile(c.stateDir), 'exclusive', { what: 'a gc of the test' });
    try {
      const controller = new AbortController();
      const log = recordingLogger();
      const restoring = dysnomia.restore({ ...c.options, signal: controller.signal, log });
      const waiting = await waitFor(() => log.lines.some((line) => line.includes('waiting for the snapshot store')));
      controller.abort(new Error('test cancels'));
      const error = await restoring.catch((e: unknown) => e);
      expect(waiting).toBe(true);
      expect(error).toBeInstanceOf(dysnomia.AbortedError);
      expect(await refs(c.repo)).toBe(live);
    } finally {
      await gc.release();
    }
  });
});

/** Whether `condition` came to hold within 10 s (checked every 20 ms). */
async function waitFor(condition: () => boolean): Promise<boolean> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > 10_000) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}
