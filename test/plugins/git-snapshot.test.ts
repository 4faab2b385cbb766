/**
 * git-repository snapshot and restore through the real CLI, the real store and real git: what
 * comes back, what is skipped, and what is refused.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, chown, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { git, refs } from '../support/git.js';
import { runCli } from '../support/cli.js';
import { type GitSetup, gitSetup } from '../support/git-repository.js';

/** Refs plus what HEAD says: the state a restore must bring back. */
async function refState(repo: string): Promise<string> {
  // Trusted explicitly: some tests hand the repository to another user.
  const { stdout } = await execa('git', ['-c', 'safe.directory=*', 'for-each-ref', '--format=%(objectname) %(refname)'], { cwd: repo });
  return `${stdout.split('\n').sort().join('\n')}\nHEAD ${(await readFile(path.join(repo, 'HEAD'), 'utf8')).trim()}`;
}

async function fsckClean(repo: string): Promise<void> {
  const result = await execa('git', ['fsck', '--no-progress', '--no-dangling'], { cwd: repo, reject: false });
  expect(result.exitCode, result.stderr).toBe(0);
}

/** Commits a file of `size` random bytes in the work repository and pushes main to the component. */
async function pushRandom(setup: GitSetup, file: string, size = 1000): Promise<void> {
  await writeFile(path.join(setup.work, file), randomBytes(size));
  await git(setup.work, 'add', file);
  await git(setup.work, 'commit', '-q', '-m', `add ${file}`);
  await git(setup.work, 'push', '-q', setup.repo, 'main');
}

/** The number of a group of this machine. */
async function gidOf(group: string): Promise<number> {
  return Number((await execa('getent', ['group', group])).stdout.split(':')[2]);
}

/** The snapshot folder the latest generation points at. */
async function latestSnapshot(setup: GitSetup): Promise<string> {
  const generations = await setup.generations();
  const link = path.join(setup.stateDir, 'generations', setup.containerName, 'project', generations.at(-1)!);
  return path.resolve(path.dirname(link), await readlink(link));
}

/**
 * What `git update-server-info` writes into info/refs for the refs `repo` has now: each ref, and
 * after an annotated tag the object it peels to.
 */
async function serverInfoRefs(repo: string): Promise<string[]> {
  const format = '%(objectname)%09%(refname)%(if)%(*objectname)%(then)%0a%(*objectname)%09%(refname)^{}%(end)';
  const { stdout } = await execa('git', ['-c', 'safe.directory=*', 'for-each-ref', `--format=${format}`], { cwd: repo });
  return stdout.split('\n').filter((line) => line !== '').sort();
}

/** Serves the files below `dir` over plain HTTP (what a dumb-HTTP git client reads); call close() after. */
async function serveFiles(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((request, response) => {
    const file = path.join(dir, decodeURIComponent(new URL(request.url ?? '/', 'http://x').pathname));
    createReadStream(file)
      .on('error', () => response.writeHead(404).end())
      .pipe(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('git-repository snapshot and restore', () => {
  it('brings back the snapshot\'s refs after a force-push to an older state', async () => {
    const setup = await gitSetup({ commits: 5 });
    await setup.ok('activate');
    await pushRandom(setup, 'new-work.bin');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~4:main');
    expect(await refState(setup.repo)).not.toBe(snapshotted);

    const result = await setup.ok('restore');
    expect(result.stderr).toContain('the previous repository was removed');
    expect(await refState(setup.repo)).toBe(snapshotted);
    await fsckClean(setup.repo);
    expect(await readdir(setup.baseDir)).toEqual(['project']);
    // The live repository had no info/refs (dumb HTTP), so the restored one gets none either.
    expect(await readdir(path.join(setup.repo, 'info'))).not.toContain('refs');
  });

  it('names the refs a restore replaces or drops (pushed since the snapshot)', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const before = await git(setup.repo, 'rev-parse', 'main');
    await pushRandom(setup, 'after-the-snapshot.bin');
    const moved = await git(setup.repo, 'rev-parse', 'main');
    await git(setup.work, 'push', '-q', setup.repo, 'main:refs/heads/feature');
    const result = await setup.ok('restore');
    expect(result.stderr).toContain(`warning: the restore of ${setup.repo} replaces refs that differ from the snapshot:`);
    expect(result.stderr).toContain(`refs/heads/main (at ${moved.slice(0, 12)}; the snapshot has ${before.slice(0, 12)})`);
    expect(result.stderr).toContain(`refs/heads/feature (at ${moved.slice(0, 12)}, not in the snapshot)`);
    // An unchanged repository gives no warning.
    const again = await setup.ok('restore');
    expect(again.stderr).not.toContain('replaces refs');
  });

  it('keeps the previous repository, and says so, when a push running at the swap lands in it', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'after-the-snapshot.bin'); // so that the restore has work to do
    // A push that is inside the live repository when the swap happens: its pre-receive hook (not in
    // the snapshot) holds it until the repository has been moved aside.
    const go = path.join(setup.dir, 'go');
    const hook = path.join(setup.repo, 'hooks', 'pre-receive');
    await writeFile(hook, `#!/bin/sh\nwhile [ ! -e '${go}' ]; do sleep 0.05; done\n`);
    await chmod(hook, 0o755);
    await writeFile(path.join(setup.work, 'late.txt'), 'late\n');
    await git(setup.work, 'add', 'late.txt');
    await git(setup.work, 'commit', '-q', '-m', 'late');
    const late = await git(setup.work, 'rev-parse', 'HEAD');
    const push = execa('git', ['push', '-q', setup.repo, 'HEAD:refs/heads/late'], { cwd: setup.work, reject: false });
    const restore = setup.run('restore');
    let aside: string | undefined;
    for (let i = 0; i < 3000 && aside === undefined; i += 1) {
      aside = (await readdir(setup.baseDir)).find((name) => name.startsWith('.project.dysnomia-old-'));
      if (aside === undefined) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(aside, 'the swap never moved the repository aside').toBeDefined();
    await writeFile(go, '');
    const [pushed, result] = await Promise.all([push, restore]);
    expect(pushed.exitCode, pushed.stderr).toBe(0); // the client was told its push is in
    expect(result.exitCode, result.stderr).toBe(0);
    const kept = (await readdir(setup.baseDir)).filter((name) => name.startsWith('.project.dysnomia-kept-'));
    expect(kept).toHaveLength(1);
    const keptPath = path.join(setup.baseDir, kept[0]!);
    expect(result.stderr).toContain(`the previous repository of ${setup.repo} is kept at ${keptPath}: pushes reached it during the swap (refs/heads/late)`);
    expect(result.stderr).toContain(`; the previous repository is kept at ${keptPath}`);
    expect(result.stderr).not.toContain('the previous repository was removed');
    expect(await git(keptPath, 'rev-parse', 'refs/heads/late')).toBe(late);
    // The next operation's repair leaves it alone.
    await setup.ok('snapshot');
    expect(await readdir(setup.baseDir)).toContain(kept[0]);
  });

  it('keeps the previous repository when any process still works in it after 10 s, naming the process, not "git processes" or a "(HEAD)" placeholder', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'after-the-snapshot.bin');
    // An admin's shell left in the repository: no git process, and no ref changes after the swap.
    const shell = execa('sleep', ['25'], { cwd: setup.repo, reject: false });
    try {
      const result = await setup.run('restore');
      expect(result.exitCode, result.stderr).toBe(0);
      const kept = (await readdir(setup.baseDir)).filter((name) => name.startsWith('.project.dysnomia-kept-'));
      expect(kept).toHaveLength(1);
      expect(result.stderr).toContain(
        `the previous repository of ${setup.repo} is kept at ${path.join(setup.baseDir, kept[0]!)}: processes were still working in it after 10 s (pid ${shell.pid} (sleep 25));`,
      );
      expect(result.stderr).not.toContain('git processes');
      expect(result.stderr).not.toContain('(HEAD)');
    } finally {
      shell.kill();
      await shell;
    }
  }, 60_000);

  it('names a detached HEAD that the restore replaces, and keeps its commit (which no ref reaches) in the restored repository', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // Work committed on a detached HEAD: no ref reaches it, only HEAD.
    const tree = await git(setup.repo, 'rev-parse', 'main^{tree}');
    const detached = await git(setup.repo, 'commit-tree', tree, '-p', 'main', '-m', 'on a detached HEAD');
    await writeFile(path.join(setup.repo, 'HEAD'), `${detached}\n`);
    // Owned by another user, as a git user's repository restored by root is: git 2.39.4 and later
    // refuse to fetch from it unless its upload-pack is told to trust it.
    await execa('chown', ['-R', '65534:65534', setup.repo]);
    const result = await setup.ok('restore');
    expect(result.stderr).not.toContain('could not keep');
    expect((await stat(path.join(setup.repo, 'HEAD'))).uid).toBe(65534);
    // Back to the test's own user, for its git commands.
    await execa('chown', ['-R', '0:0', setup.repo]);
    expect(result.stderr).toContain(`warning: the restore of ${setup.repo} replaces refs that differ from the snapshot: HEAD (detached at ${detached}; the snapshot has refs/heads/main)`);
    expect(result.stderr).toContain(`the commit of the detached HEAD, ${detached}, stays in ${setup.repo} without a ref until git gc prunes it`);
    expect((await readFile(path.join(setup.repo, 'HEAD'), 'utf8')).trim()).toBe('ref: refs/heads/main');
    expect(await git(setup.repo, 'cat-file', '-t', detached)).toBe('commit');
    await fsckClean(setup.repo);
    // The snapshot's identity is untouched by the extra commit: the next restore has nothing to do.
    expect((await setup.ok('restore')).stderr).toContain('nothing restored');
  });

  it('carries over what the live repository holds beside git\'s state (git-daemon-export-ok, cloneurl, lfs/, a symlink), as it is', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'after-the-snapshot.bin');
    await writeFile(path.join(setup.repo, 'git-daemon-export-ok'), '', { mode: 0o640 });
    await writeFile(path.join(setup.repo, 'cloneurl'), 'https://git.example.org/project.git\n');
    const lfsObject = path.join(setup.repo, 'lfs', 'objects', 'ab', 'cd', 'abcd1234');
    await mkdir(path.dirname(lfsObject), { recursive: true });
    await writeFile(lfsObject, 'large file content\n', { mode: 0o444 });
    await chown(lfsObject, 65534, 65534);
    await symlink('cloneurl', path.join(setup.repo, 'cloneurl-link'));
    // Not carried over: git's own transient files and the reflogs, which a snapshot leaves out by design.
    await writeFile(path.join(setup.repo, 'FETCH_HEAD'), 'stale\n');
    // A packed-refs being rewritten (git creates it exclusively): carried, it broke every later ref deletion.
    await writeFile(path.join(setup.repo, 'packed-refs.new'), '');
    await mkdir(path.join(setup.repo, 'logs'), { recursive: true });
    await writeFile(path.join(setup.repo, 'logs', 'marker'), 'reflog\n');

    const result = await setup.ok('restore');
    expect(result.stderr).toContain(`carrying over from ${setup.repo} what a snapshot does not hold: cloneurl, cloneurl-link, git-daemon-export-ok, lfs`);
    expect((await stat(path.join(setup.repo, 'git-daemon-export-ok'))).mode & 0o777).toBe(0o640);
    expect(await readFile(path.join(setup.repo, 'cloneurl'), 'utf8')).toBe('https://git.example.org/project.git\n');
    expect(await readFile(lfsObject, 'utf8')).toBe('large file content\n');
    expect((await stat(lfsObject)).mode & 0o777).toBe(0o444);
    expect((await stat(lfsObject)).uid).toBe(65534);
    expect(await readlink(path.join(setup.repo, 'cloneurl-link'))).toBe('cloneurl');
    expect(await readdir(setup.repo)).not.toContain('FETCH_HEAD');
    expect(await readdir(setup.repo)).not.toContain('packed-refs.new');
    await git(setup.repo, 'branch', '-D', 'after-the-snapshot-branch').catch(() => undefined);
    await git(setup.repo, 'pack-refs', '--all');
    expect(await readdir(path.join(setup.repo, 'logs')).catch(() => [])).not.toContain('marker');
    await fsckClean(setup.repo);
  });

  it('writes info/refs and objects/info/packs (dumb HTTP) for the restored refs and packs when the live repository had them', async () => {
    const setup = await gitSetup({ commits: 3, branches: ['dev'], properties: { gitGroup: 'daemon' } });
    await setup.ok('activate');
    await git(setup.work, 'tag', '-a', 'v1.0', '-m', 'release 1.0', 'main');
    await git(setup.work, 'push', '-q', setup.repo, 'refs/tags/v1.0');
    await git(setup.repo, 'update-server-info');
    const snapshotted = await serverInfoRefs(setup.repo);
    await setup.ok('snapshot');
    // Pushed since the snapshot, and served: info/refs names the live refs, which the restore drops.
    await pushRandom(setup, 'after-the-snapshot.bin');
    await git(setup.work, 'push', '-q', setup.repo, 'main:refs/heads/pushed-later');
    await git(setup.repo, 'repack', '-a', '-d', '-q'); // runs update-server-info, as git gc does
    const infoRefs = path.join(setup.repo, 'info', 'refs');
    const infoPacks = path.join(setup.repo, 'objects', 'info', 'packs');
    expect((await readFile(infoRefs, 'utf8')).split('\n').filter((line) => line !== '').sort()).not.toEqual(snapshotted);
    await execa('chown', ['-R', 'nobody', setup.repo]);

    await setup.ok('restore');
    expect(await serverInfoRefs(setup.repo)).toEqual(snapshotted);
    expect((await readFile(infoRefs, 'utf8')).split('\n').filter((line) => line !== '').sort()).toEqual(snapshotted);
    const listed = (await readFile(infoPacks, 'utf8')).split('\n').filter((line) => line.startsWith('P ')).map((line) => line.slice(2)).sort();
    const packs = (await readdir(path.join(setup.repo, 'objects', 'pack'))).filter((name) => name.endsWith('.pack')).sort();
    expect(listed.length).toBeGreaterThan(0);
    expect(listed).toEqual(packs);
    // Written before the owner and the gitGroup were given, so they have them too.
    const gid = await gidOf('daemon');
    for (const file of [infoRefs, infoPacks]) {
      const info = await stat(file);
      expect(info.uid, file).toBe(65534);
      expect(info.gid, file).toBe(gid);
      expect(info.mode & 0o020, `${file} is group-writable`).toBe(0o020);
    }
    // A dumb-HTTP client sees the restored refs.
    const server = await serveFiles(setup.baseDir);
    try {
      const clone = path.join(setup.dir, 'dumb-clone');
      await git(setup.dir, 'clone', '-q', '--mirror', `${server.url}/project`, clone);
      expect(await serverInfoRefs(clone)).toEqual(snapshotted);
    } finally {
      await server.close();
    }
  });

  it('fails a restore whose carrying over fails, before the swap, with the live repository and what it holds untouched', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'after-the-snapshot.bin');
    // An lfs object past the file size limit of the run: its copy fails, the bundle's does not.
    const lfsObject = path.join(setup.repo, 'lfs', 'objects', 'big');
    await mkdir(path.dirname(lfsObject), { recursive: true });
    const content = randomBytes(3 * 1024 * 1024);
    await writeFile(lfsObject, content);
    const live = await refState(setup.repo);
    const inode = (await stat(setup.repo)).ino;
    const result = await execa('bash', ['-c', 'ulimit -f 1024; exec "$NODE" "$CLI" -o restore -c "$COMPONENT" -C "$CONTAINER"'], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir, NODE: process.execPath, CLI: path.resolve('dist/bin/dysnomia.js'), COMPONENT: setup.component, CONTAINER: setup.containerFile },
      reject: false,
    });
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`carrying ${path.join(setup.repo, 'lfs')} over into the restored repository failed`);
    expect(result.stderr).toContain(`restore stopped before the swap: ${setup.repo} is unchanged`);
    expect((await stat(setup.repo)).ino).toBe(inode);
    expect(await refState(setup.repo)).toBe(live);
    expect((await readFile(lfsObject)).equals(content)).toBe(true);
    expect(await readdir(setup.baseDir)).toEqual(['project']);
  });

  it('keeps every branch, annotated and lightweight tag, other refs, and HEAD\'s branch', async () => {
    const setup = await gitSetup({ commits: 3, branches: ['dev', 'feature'], tags: ['light'] });
    await git(setup.work, 'branch', 'release/1.x', 'main~1');
    await git(setup.work, 'tag', '-a', 'v1.0', '-m', 'release 1.0', 'dev');
    await setup.ok('activate');
    await git(setup.work, 'push', '-q', setup.repo, 'refs/tags/v1.0', 'release/1.x', 'main:refs/notes/commits', 'dev:refs/custom/x');
    await git(setup.repo, 'symbolic-ref', 'HEAD', 'refs/heads/release/1.x');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');

    await git(setup.work, 'push', '-q', setup.repo, ':refs/heads/dev', ':refs/tags/v1.0', ':refs/tags/light', ':refs/custom/x');
    await git(setup.repo, 'symbolic-ref', 'HEAD', 'refs/heads/main');
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(snapshotted);
    expect(await git(setup.repo, 'cat-file', '-t', 'v1.0')).toBe('tag');
    await fsckClean(setup.repo);
  });

  it('keeps a hook (with its exec bit), a config key and the description', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    const hook = path.join(setup.repo, 'hooks', 'post-receive');
    await writeFile(hook, '#!/bin/sh\necho received\n', { mode: 0o755 });
    await git(setup.repo, 'config', 'receive.denyNonFastForwards', 'true');
    await git(setup.repo, 'config', 'dysnomia.test', 'kept');
    await writeFile(path.join(setup.repo, 'description'), 'the project repository\n');
    await setup.ok('snapshot');

    await pushRandom(setup, 'later.bin');
    await rm(hook);
    await git(setup.repo, 'config', '--unset', 'dysnomia.test');
    await writeFile(path.join(setup.repo, 'description'), 'changed\n');
    await setup.ok('restore');
    expect(await readFile(hook, 'utf8')).toBe('#!/bin/sh\necho received\n');
    expect((await stat(hook)).mode & 0o777).toBe(0o755);
    expect(await git(setup.repo, 'config', 'dysnomia.test')).toBe('kept');
    expect(await git(setup.repo, 'config', 'receive.denyNonFastForwards')).toBe('true');
    expect(await readFile(path.join(setup.repo, 'description'), 'utf8')).toBe('the project repository\n');
  });

  it('keeps the whole bundle when git finishes it before the store takes it (a large hooks folder first)', async () => {
    // git starts bundling before the other streams are stored; this small repository's bundle is
    // complete, and git has exited, long before the 24 MB archive of hooks/ has been stored.
    const setup = await gitSetup({ commits: 3, branches: ['dev'], tags: ['t1'] });
    await setup.ok('activate');
    const big = randomBytes(24 * 1024 * 1024);
    await writeFile(path.join(setup.repo, 'hooks', 'data.bin'), big);
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');

    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~2:main');
    await rm(path.join(setup.repo, 'hooks', 'data.bin'));
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(snapshotted);
    expect((await readFile(path.join(setup.repo, 'hooks', 'data.bin'))).equals(big)).toBe(true);
    await fsckClean(setup.repo);
  });

  it('does not bundle an unchanged repository (a broken pack goes unnoticed) and makes no new generation', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
    // With its objects gone, git bundle create must fail: only a snapshot that skips it succeeds.
    await rm(path.join(setup.repo, 'objects', 'pack'), { recursive: true });
    const result = await setup.ok('snapshot');
    expect(result.stderr).toContain('unchanged');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('fails a snapshot whose bundle cannot be made, and keeps no snapshot of it', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await rm(path.join(setup.repo, 'objects', 'pack'), { recursive: true });
    const result = await setup.run('snapshot');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`bundling ${setup.repo} failed`);
    expect(await setup.generations()).toEqual([]);
  });

  it('does nothing when the live repository already has the snapshot\'s refs', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    await setup.ok('snapshot');
    const before = await stat(setup.repo);
    const result = await setup.ok('restore');
    expect(result.stderr).toContain(`${setup.containerName}/project is in the state of`);
    expect(result.stderr).toContain('already (' + setup.repo + ' has its refs); nothing restored');
    expect((await stat(setup.repo)).ino).toBe(before.ino);
  });

  it('round-trips an empty repository (no refs yet)', async () => {
    const setup = await gitSetup({ noBundle: true });
    await setup.ok('activate');
    const empty = await refState(setup.repo);
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
    await pushRandom(setup, 'first.bin');
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(empty);
    expect(await refs(setup.repo)).toBe('');
  });

  it('round-trips a detached HEAD', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    const older = await git(setup.repo, 'rev-parse', 'main~1');
    await writeFile(path.join(setup.repo, 'HEAD'), `${older}\n`);
    await setup.ok('snapshot');
    await writeFile(path.join(setup.repo, 'HEAD'), 'ref: refs/heads/main\n');
    await setup.ok('restore');
    expect((await readFile(path.join(setup.repo, 'HEAD'), 'utf8')).trim()).toBe(older);
  });

  it('restores into a missing repository (after collect-garbage)', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await pushRandom(setup, 'x.bin');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');
    await setup.ok('deactivate');
    await setup.ok('collect-garbage');
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(snapshotted);
  });

  it('keeps the owner of the repository it replaces, and the gitGroup', async () => {
    const setup = await gitSetup({ commits: 2, properties: { gitGroup: 'daemon' } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'x.bin');
    await execa('chown', ['-R', 'nobody', setup.repo]);
    await setup.ok('restore');
    const gid = await gidOf('daemon');
    for (const file of ['', 'HEAD', 'config', 'objects/pack', 'refs/heads/main']) {
      const info = await stat(path.join(setup.repo, file));
      expect(info.uid, file).toBe(65534);
      expect(info.gid, file).toBe(gid);
      expect(info.mode & 0o020, `${file} is group-writable`).toBe(0o020);
    }
  });

  it('gives the restored repository the container\'s gitGroup even when the live one had another group', async () => {
    const setup = await gitSetup({ commits: 2, properties: { gitGroup: 'daemon' } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'x.bin');
    await execa('chown', ['-R', 'nobody', setup.repo]);
    await writeFile(setup.containerFile, `type=git-repository\ngitBaseDir=${setup.baseDir}\ngitGroup=users\n`);
    await setup.ok('restore');
    const gid = await gidOf('users');
    for (const file of ['', 'HEAD', 'config', 'objects/pack', 'refs/heads/main']) {
      const info = await stat(path.join(setup.repo, file));
      expect(info.uid, file).toBe(65534);
      expect(info.gid, file).toBe(gid);
    }
  });

  it('round-trips a SHA-256 repository', async () => {
    const setup = await gitSetup();
    const work = path.join(setup.dir, 'work256');
    await execa('git', ['init', '-q', '--object-format=sha256', '-b', 'main', work]);
    await writeFile(path.join(work, 'a.txt'), 'a\n');
    await git(work, 'add', 'a.txt');
    await git(work, 'commit', '-q', '-m', 'first');
    await rm(path.join(setup.component, 'git-repositories', 'initial.bundle'));
    await git(work, 'bundle', 'create', '-q', path.join(setup.component, 'git-repositories', 'initial.bundle'), '--all');
    await setup.ok('activate');
    expect(await git(setup.repo, 'rev-parse', '--show-object-format')).toBe('sha256');
    await writeFile(path.join(work, 'b.txt'), 'b\n');
    await git(work, 'add', 'b.txt');
    await git(work, 'commit', '-q', '-m', 'second');
    await git(work, 'push', '-q', setup.repo, 'main');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');
    await git(work, 'push', '-q', '--force', setup.repo, 'main~1:main');
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(snapshotted);
    expect(await git(setup.repo, 'rev-parse', '--show-object-format')).toBe('sha256');
    await fsckClean(setup.repo);
  });

  it('restores a repository of 10,000 commits', async () => {
    const setup = await gitSetup({ commits: 10_000, branches: ['dev'] });
    await setup.ok('activate');
    expect(await git(setup.repo, 'rev-list', '--count', 'main')).toBe('10001');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~9000:main', ':refs/heads/dev');
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(snapshotted);
    expect(await git(setup.repo, 'rev-list', '--count', 'main')).toBe('10001');
    await fsckClean(setup.repo);
  });
});

describe('git-repository restore refuses bad snapshots', () => {
  it('refuses a corrupted snapshot and leaves the live repository untouched', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await pushRandom(setup, 'big.bin', 2_000_000);
    await setup.ok('snapshot');
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~2:main');
    await writeFile(path.join(setup.repo, 'description'), 'live, after the accident\n');
    const live = await refState(setup.repo);
    const inode = (await stat(setup.repo)).ino;

    // Flip bytes in the middle of the snapshot's largest data file (the bundle's chunks).
    const folder = await latestSnapshot(setup);
    const files = await Promise.all(
      (await readdir(folder)).map(async (name) => ({ file: path.join(folder, name), size: (await stat(path.join(folder, name))).size })),
    );
    const largest = files.sort((a, b) => b.size - a.size)[0]!;
    const handle = await open(largest.file, 'r+');
    await handle.write(Buffer.from('corrupted!'), 0, 10, Math.floor(largest.size / 2));
    await handle.close();

    const result = await setup.run('restore');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/repo\.bundle: chunk \d+ .*does not match its checksum/);
    expect(result.stderr).toContain(`restore stopped before the swap: ${setup.repo} is unchanged`);
    expect(await refState(setup.repo)).toBe(live);
    expect(await readFile(path.join(setup.repo, 'description'), 'utf8')).toBe('live, after the accident\n');
    expect((await stat(setup.repo)).ino).toBe(inode);
    expect(await readdir(setup.baseDir)).toEqual(['project']);
  });

  it('refuses to restore when gitBaseDir became unwritable, leaving the live repository', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'x.bin');
    const live = await refState(setup.repo);
    await chmod(setup.dir, 0o755);
    await execa('chown', ['-R', 'nobody', setup.stateDir, setup.repo]);
    await chown(setup.component, 65534, 65534);
    const result = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia.js'),
        '--operation', 'restore', '--component', setup.component, '--container', setup.containerFile],
      { env: { DYSNOMIA_STATEDIR: setup.stateDir, HOME: setup.stateDir }, reject: false },
    );
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot write to ${setup.baseDir}`);
    expect(await refState(setup.repo)).toBe(live);
  });
});

describe('git-repository restore when the live repository is in trouble', () => {
  it('restores a repository whose HEAD and refs were lost, which it cannot even read', async () => {
    const setup = await gitSetup({ commits: 3, branches: ['dev'], tags: ['v1'] });
    await setup.ok('activate');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');
    await rm(path.join(setup.repo, 'HEAD'));
    await rm(path.join(setup.repo, 'refs'), { recursive: true });
    await rm(path.join(setup.repo, 'packed-refs'), { force: true });

    const result = await setup.ok('restore');
    expect(result.stderr).toContain(`cannot read the refs of ${setup.repo}`);
    expect(result.stderr).toContain('restoring it from the snapshot');
    expect(await refState(setup.repo)).toBe(snapshotted);
    await fsckClean(setup.repo);
    expect(await readdir(setup.baseDir)).toEqual(['project']);
  });

  it('fails a snapshot of a repository git no longer recognises, instead of bundling a repository above it', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // gitBaseDir lies inside another repository's work tree (an etckeeper /etc, say).
    await git(setup.dir, 'init', '-q', '-b', 'outer');
    await writeFile(path.join(setup.dir, 'outer.txt'), 'outer\n');
    await git(setup.dir, 'add', 'outer.txt');
    await git(setup.dir, 'commit', '-q', '-m', 'outer');
    await writeFile(path.join(setup.repo, 'HEAD'), 'damaged\n');

    const result = await setup.run('snapshot');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`listing the refs of ${setup.repo} failed`);
    expect(result.stderr).toMatch(/not a git repository/);
    expect(await setup.generations()).toEqual(['1']);
  });

  it('refuses to restore over a folder that is no repository, and to activate one, and leaves what it holds', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // Someone keeps web pages where the repository was.
    await rm(setup.repo, { recursive: true });
    await mkdir(path.join(setup.repo, 'htdocs'), { recursive: true });
    await writeFile(path.join(setup.repo, 'htdocs', 'index.html'), '<p>keep me</p>\n');

    const restore = await setup.run('restore');
    expect(restore.exitCode, restore.stderr).toBe(1);
    expect(restore.stderr).toContain(`${setup.repo} exists but is not a bare git repository (a folder without objects/, HEAD or refs/); the restore would replace it`);
    const activate = await setup.run('activate');
    expect(activate.exitCode, activate.stderr).toBe(1);
    expect(activate.stderr).toContain(`${setup.repo} exists but is not a bare git repository`);
    expect(await readFile(path.join(setup.repo, 'htdocs', 'index.html'), 'utf8')).toBe('<p>keep me</p>\n');
    expect(await readdir(setup.repo)).toEqual(['htdocs']);
  });

  it('refuses to snapshot a shallow repository, whose bundle could never be restored', async () => {
    const setup = await gitSetup({ commits: 4 });
    await setup.ok('activate');
    await rm(setup.repo, { recursive: true });
    await execa('git', ['clone', '-q', '--bare', '--depth', '2', `file://${setup.work}`, setup.repo]);
    const result = await setup.run('snapshot');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`${setup.repo} is a shallow repository`);
    expect(result.stderr).toContain('fetch --unshallow');
    expect(await setup.generations()).toEqual([]);
  });

  it('snapshots and restores a repository with a linked worktree (its HEAD is not one of the refs)', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await git(setup.repo, 'worktree', 'add', '-q', '--detach', path.join(setup.dir, 'checkout'), 'main~1');
    const snapshotted = await refState(setup.repo);
    await setup.ok('snapshot');
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~2:main');
    const result = await setup.ok('restore');
    expect(result.stderr).toContain('now has the refs of snapshot');
    expect(await refState(setup.repo)).toBe(snapshotted);
    await fsckClean(setup.repo);
  });

  it('refuses to restore through a symbolic link, and changes neither the link nor its folder', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await pushRandom(setup, 'later.bin');
    const real = path.join(setup.dir, 'elsewhere');
    await rename(setup.repo, real);
    await symlink(real, setup.repo);
    const live = await refState(real);

    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`${setup.repo} is a symbolic link to ${real}`);
    expect(result.stderr).toContain('set gitBaseDir to the folder that really holds the repository');
    expect(await readlink(setup.repo)).toBe(real);
    expect(await refState(real)).toBe(live);
    expect(await readdir(setup.baseDir)).toEqual(['project']);

    // With the snapshot's refs already there, nothing is to be swapped: a nightly restore passes.
    await git(setup.work, 'push', '-q', '--force', real, 'main~1:main');
    const same = await setup.run('restore');
    expect(same.exitCode, same.stderr).toBe(0);
    expect(same.stderr).toContain('nothing restored');
    expect(await readlink(setup.repo)).toBe(real);
  });

  it('says that a symbolic link whose target is missing is one, on activate, snapshot and restore (no raw ENOENT)', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // The repository was moved away (or its disk is not mounted), and the link to it stayed.
    const gone = path.join(setup.dir, 'unmounted', 'project');
    await rm(setup.repo, { recursive: true });
    await symlink(gone, setup.repo);
    for (const operation of ['activate', 'snapshot', 'restore']) {
      const result = await setup.run(operation);
      expect(result.exitCode, `${operation}: ${result.stderr}`).toBe(1);
      expect(result.stderr, operation).toContain(`${setup.repo} is a symbolic link to ${gone}, which does not exist`);
      expect(result.stderr, operation).not.toContain('ENOENT');
    }
    expect(await readlink(setup.repo)).toBe(gone);
    expect(await readdir(setup.baseDir)).toEqual(['project']);
    expect(await setup.generations()).toEqual(['1']);
  });

  it('takes the snapshot again when its detached HEAD moved while git bundled, and gives up after three tries with no generation', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    const [older, newer] = [await git(setup.repo, 'rev-parse', 'main~2'), await git(setup.repo, 'rev-parse', 'main')];
    await writeFile(path.join(setup.repo, 'HEAD'), `${older}\n`);
    // The real git, behind a wrapper that moves HEAD (to the other commit) just before every
    // `git bundle` runs: the moment a push could move it.
    const bin = path.join(setup.dir, 'bin');
    await mkdir(bin);
    const realGit = (await execa('sh', ['-c', 'command -v git'])).stdout.trim();
    await writeFile(
      path.join(bin, 'git'),
      `#!/bin/sh\ncase " $* " in *" bundle create "*) if grep -q ${older} HEAD; then echo ${newer}; else echo ${older}; fi > HEAD.new; mv HEAD.new HEAD ;; esac\nexec ${realGit} "$@"\n`,
      { mode: 0o755 },
    );
    const result = await runCli('dysnomia', ['--operation', 'snapshot', '--component', setup.component, '--container', setup.containerFile], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir, PATH: `${bin}:${process.env.PATH}` },
    });
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`the detached HEAD of ${setup.repo} moved while the snapshot was taken (from ${older} to ${newer})`);
    expect(result.stderr).toContain('taking the snapshot again (attempt 3 of 3)');
    expect(await setup.generations()).toEqual([]);
    // Without the move, the same repository snapshots and restores.
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('never stores a bundle that git left a ref out of: an ambiguous name is refused, naming the ref', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await execa('git', ['--git-dir', setup.repo, 'update-ref', 'refs/heads/refs/heads/main', 'refs/heads/main']);
    const result = await setup.run('snapshot');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/git bundle create left refs\/heads\/main of \S+ out of the bundle although it did not change/);
    expect(result.stderr).toContain('rename one of them');
    expect(result.stderr).toContain('was stored; its generations are as they were');
    expect(await setup.generations()).toEqual([]);
  });

  it('takes the snapshot again when a ref moves while git writes the bundle (git leaves it out), and stores it whole', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    // A long history, so that git's walk for the bundle takes long enough to push during it.
    const commits = 100_000;
    const stream = Array.from({ length: commits }, (_, i) =>
      `commit refs/heads/long\nmark :${i + 1}\ncommitter t <t@t> ${1_000_000_000 + i} +0000\ndata 1\nx\n${i > 0 ? `from :${i}\n` : ''}\n`,
    ).join('');
    await execa('git', ['--git-dir', setup.repo, 'fast-import', '--quiet'], { input: stream });
    const tree = (await execa('git', ['--git-dir', setup.repo, 'rev-parse', 'long^{tree}'])).stdout;
    const pushed = (await execa('git', ['--git-dir', setup.repo, 'commit-tree', tree, '-p', 'long', '-m', 'pushed during the snapshot'], {
      env: { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' },
    })).stdout;

    const snapshot = setup.run('snapshot');
    // The push lands once git bundle runs: it has read the refs and walks the history.
    const bundling = async () => (await execa('pgrep', ['-f', `${setup.repo} .*bundle create`], { reject: false })).exitCode === 0;
    const started = Date.now();
    while (!(await bundling())) {
      expect(Date.now() - started, 'git bundle never ran').toBeLessThan(30_000);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await execa('git', ['--git-dir', setup.repo, 'update-ref', 'refs/heads/long', pushed]);
    const result = await snapshot;
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('refs/heads/long');
    expect(result.stderr).toContain('moved while git wrote the bundle');
    expect(result.stderr).toContain('taking the snapshot again (attempt 2 of 3)');
    const live = await refState(setup.repo);
    await rm(setup.repo, { recursive: true });
    await setup.ok('restore');
    expect(await refState(setup.repo)).toBe(live);
    expect(live).toContain(`${pushed} refs/heads/long`);
  }, 120_000);

  it('restores a repository that kept the snapshot\'s refs but lost their objects, saying so', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const before = await refState(setup.repo);
    for (const entry of await readdir(path.join(setup.repo, 'objects'))) {
      if (/^[0-9a-f]{2}$/.test(entry) || entry === 'pack') await rm(path.join(setup.repo, 'objects', entry), { recursive: true });
    }
    const result = await setup.ok('restore');
    expect(result.stderr).toMatch(/has the snapshot's refs, but not the objects they point at \(.*missing object/);
    expect(result.stderr).not.toContain('nothing restored');
    expect(await refState(setup.repo)).toBe(before);
    await fsckClean(setup.repo);
  });

  it('refuses to snapshot a file where the repository should be, saying so (no raw ENOTDIR)', async () => {
    const setup = await gitSetup({ commits: 1 });
    await mkdir(setup.baseDir, { recursive: true });
    await writeFile(setup.repo, 'not a repository');
    const result = await setup.run('snapshot');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`${setup.repo} is not a bare git repository (not a folder)`);
    expect(result.stderr).not.toContain('ENOTDIR');
    expect(await readFile(setup.repo, 'utf8')).toBe('not a repository');
  });

  it('warns before a restore that the repository\'s linked worktrees are not in the snapshot, naming them', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const worktree = path.join(setup.dir, 'checkout');
    await execa('git', ['--git-dir', setup.repo, 'worktree', 'add', '-q', '--detach', worktree, 'main']);
    await execa('git', ['--git-dir', setup.repo, 'update-ref', 'refs/heads/extra', 'main']);
    const result = await setup.ok('restore');
    expect(result.stderr).toContain(`${setup.repo} has linked worktrees (${worktree})`);
    expect(result.stderr).toContain('a snapshot does not hold them');
  });
});

