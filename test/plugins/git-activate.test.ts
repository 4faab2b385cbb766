/**
 * git-repository without the store: properties, activate, collect-garbage, shell, the repair of
 * interrupted operations, and every bad input of those, through the real CLI and real git.
 */
import { chmod, chown, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath, runCli } from '../support/cli.js';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { gitSetup } from '../support/git-repository.js';
import { HOST_TAG, processStartTime } from '../../src/core/lock.js';
import { markActive } from '../../src/core/state-dir.js';
import { identityOf, readRefState } from '../../src/plugins/git/identity.js';
import { AT_SWAP_FILE, tempPath } from '../../src/plugins/git/layout.js';

const exists = (file: string) => stat(file).then(
  () => true,
  () => false,
);

describe('git-repository activate', () => {
  it('creates a bare repository with every ref of the bundle and HEAD on its branch', async () => {
    const setup = await gitSetup({ commits: 3, branches: ['dev', 'feature'], tags: ['v1.0'] });
    const result = await setup.ok('activate');
    expect(result.stderr).toContain(`created ${setup.repo} from 1 bundle(s)`);
    expect(await refs(setup.repo)).toBe(await refs(setup.work));
    expect(await git(setup.repo, 'rev-parse', '--is-bare-repository')).toBe('true');
    expect(await git(setup.repo, 'symbolic-ref', 'HEAD')).toBe('refs/heads/main');
    expect(await readdir(setup.baseDir)).toEqual(['project']);
  });

  it('points HEAD at the branch the bundle had checked out', async () => {
    const setup = await gitSetup({ branches: ['dev'] });
    await git(setup.work, 'checkout', '-q', 'dev');
    await makeBundle(setup.work, path.join(setup.component, 'git-repositories', 'initial.bundle'));
    await setup.ok('activate');
    expect(await git(setup.repo, 'symbolic-ref', 'HEAD')).toBe('refs/heads/dev');
  });

  it('loads several bundles in name order, later refs winning', async () => {
    const setup = await gitSetup({ commits: 1 });
    const other = await makeWorkRepo(path.join(setup.dir, 'other'), { files: { 'b.txt': 'b\n' }, branches: ['extra'] });
    await git(other, 'branch', '-m', 'main', 'other-main');
    await makeBundle(other, path.join(setup.component, 'git-repositories', 'second.bundle'));
    await setup.ok('activate');
    const live = await refs(setup.repo);
    expect(live).toContain('refs/heads/main');
    expect(live).toContain('refs/heads/extra');
    expect(live).toContain('refs/heads/other-main');
    expect(await git(setup.repo, 'rev-parse', 'main')).toBe(await git(setup.work, 'rev-parse', 'main'));
  });

  it('removes the write probe a killed run left in gitBaseDir', async () => {
    const setup = await gitSetup();
    await mkdir(path.join(setup.baseDir, '.dysnomia-write-test-0123456789ab'), { recursive: true });
    await setup.ok('activate');
    expect(await readdir(setup.baseDir)).toEqual(['project']);
  });

  it('creates an empty bare repository when the component has no bundles', async () => {
    const setup = await gitSetup({ noBundle: true });
    await setup.ok('activate');
    expect(await refs(setup.repo)).toBe('');
    expect(await git(setup.repo, 'rev-parse', '--is-bare-repository')).toBe('true');
  });

  it('leaves an existing repository alone', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    await git(setup.work, 'commit', '-q', '--allow-empty', '-m', 'pushed later');
    await git(setup.work, 'push', '-q', setup.repo, 'main');
    await writeFile(path.join(setup.repo, 'description'), 'edited by hand\n');
    const before = await refs(setup.repo);
    const result = await setup.ok('activate');
    expect(result.stderr).toContain('exists already; nothing to do');
    expect(await refs(setup.repo)).toBe(before);
    expect(await readFile(path.join(setup.repo, 'description'), 'utf8')).toBe('edited by hand\n');
  });

  it('makes the repository group-shared with gitGroup', async () => {
    const setup = await gitSetup({ properties: { gitGroup: 'daemon' } });
    await writeFile(path.join(setup.work, 'x'), 'x');
    await setup.ok('activate');
    const { stdout } = await execa('getent', ['group', 'daemon']);
    const gid = Number(stdout.split(':')[2]);
    for (const file of ['', 'config', 'HEAD', 'objects', 'refs/heads']) {
      const info = await stat(path.join(setup.repo, file));
      expect(info.gid, file).toBe(gid);
      expect(info.mode & 0o020, `${file} is group-writable`).toBe(0o020);
      if (info.isDirectory()) expect(info.mode & 0o2000, `${file} is setgid`).toBe(0o2000);
    }
    expect(await git(setup.repo, 'config', 'core.sharedRepository')).toBe('group');
    const hook = await stat(path.join(setup.repo, 'hooks', 'update.sample'));
    expect(hook.mode & 0o2000, 'no setgid on a hook').toBe(0);
  });
});

describe('git-repository bad input', () => {
  it('refuses a non-bundle file in git-repositories/, naming it, and creates nothing', async () => {
    const setup = await gitSetup();
    const stray = path.join(setup.component, 'git-repositories', 'README.txt');
    await writeFile(stray, 'not a bundle\n');
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(stray);
    expect(result.stderr).toContain('only hold *.bundle files');
    expect(await exists(setup.baseDir)).toBe(false);
    // Refused before the component is locked: not even the state dir is made.
    expect(await exists(setup.stateDir)).toBe(false);
  });

  it('refuses a folder named like a bundle', async () => {
    const setup = await gitSetup();
    const folder = path.join(setup.component, 'git-repositories', 'nested.bundle');
    await mkdir(folder);
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(folder);
    expect(await exists(setup.repo)).toBe(false);
  });

  it('refuses git-repositories when it is a file', async () => {
    const setup = await gitSetup({ noBundle: true });
    await writeFile(path.join(setup.component, 'git-repositories'), 'oops');
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(path.join(setup.component, 'git-repositories'));
    expect(result.stderr).toContain('should be a folder');
    expect(await exists(setup.repo)).toBe(false);
  });

  it('refuses a component that is a file, naming the component, not a git-repositories folder inside it', async () => {
    const setup = await gitSetup({ noBundle: true });
    const file = path.join(path.dirname(setup.component), 'plain-file');
    await writeFile(file, 'oops');
    const result = await runCli('dysnomia', ['--operation', 'activate', '--component', file, '--container', setup.containerFile], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir },
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`${file}: the component is a file, not a folder; a git-repository component is a folder`);
    expect(result.stderr).not.toContain('git-repositories:');
    expect(await exists(path.join(setup.baseDir, 'plain-file'))).toBe(false);
  });

  it('refuses a corrupted bundle, naming it, and leaves no half-made repository', async () => {
    const setup = await gitSetup({ commits: 20 });
    const bundle = path.join(setup.component, 'git-repositories', 'initial.bundle');
    const data = await readFile(bundle);
    await writeFile(bundle, data.subarray(0, Math.floor(data.length / 2)));
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`loading ${bundle} failed`);
    expect(await readdir(setup.baseDir)).toEqual([]);
  });

  it('refuses an incremental bundle whose base is missing, naming the commits it needs, and creates nothing', async () => {
    const setup = await gitSetup({ commits: 5 });
    const bundle = path.join(setup.component, 'git-repositories', 'initial.bundle');
    await git(setup.work, 'bundle', 'create', '-q', bundle, 'main~1..main');
    const base = (await execa('git', ['rev-parse', 'main~1'], { cwd: setup.work })).stdout;
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`verifying ${bundle} failed`);
    expect(result.stderr).toContain('lacks these prerequisite commits');
    expect(result.stderr).toContain(base);
    expect(await readdir(setup.baseDir)).toEqual([]);
  });

  it('refuses bundles of repositories of different object formats, naming each, and creates nothing', async () => {
    const setup = await gitSetup({ commits: 2 });
    const other = path.join(setup.dir, 'sha256');
    await mkdir(other);
    await git(other, 'init', '-q', '-b', 'main', '--object-format=sha256');
    await git(other, '-c', 'user.name=t', '-c', 'user.email=t@e', 'commit', '-q', '--allow-empty', '-m', 'one');
    await git(other, 'bundle', 'create', '-q', path.join(setup.component, 'git-repositories', 'second.bundle'), '--all');
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('hold repositories of different object formats (initial.bundle: sha1, second.bundle: sha256)');
    expect(await readdir(setup.baseDir)).toEqual([]);
  });

  it('refuses a .bundle file that is no bundle at all', async () => {
    const setup = await gitSetup();
    const bundle = path.join(setup.component, 'git-repositories', 'initial.bundle');
    await writeFile(bundle, 'hello\n\nworld\n');
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`${bundle}: not a git bundle`);
    expect(await readdir(setup.baseDir)).toEqual([]);
  });

  it('needs gitBaseDir (exit 2, naming the file and the key)', async () => {
    const setup = await gitSetup();
    await writeFile(setup.containerFile, 'type=git-repository\n');
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(setup.containerFile);
    expect(result.stderr).toContain('gitBaseDir');
    expect(result.stderr).toContain('missing');
  });

  it('refuses an array as gitBaseDir (exit 2) instead of making a folder named after its items joined', async () => {
    const setup = await gitSetup();
    const a = path.join(setup.dir, 'a');
    await writeFile(setup.containerFile, `type=git-repository\ngitBaseDir=(${a} ${setup.baseDir})\n`);
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`${setup.containerFile}: gitBaseDir: is an array (2 items); give one value`);
    expect(await exists(`${a} ${setup.baseDir}`)).toBe(false);
    expect(await exists(`${a} `)).toBe(false);
    expect(await exists(setup.stateDir)).toBe(false);
  });

  it('refuses a relative gitBaseDir', async () => {
    const setup = await gitSetup();
    await writeFile(setup.containerFile, 'type=git-repository\ngitBaseDir=repos\n');
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/gitBaseDir: "repos" is not an absolute path/);
  });

  it('refuses a gitBaseDir below a regular file (exit 2) and changes nothing', async () => {
    const setup = await gitSetup();
    const file = path.join(setup.dir, 'plain-file');
    await writeFile(file, 'x');
    await writeFile(setup.containerFile, `type=git-repository\ngitBaseDir=${file}/repos\n`);
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`${setup.containerFile}: gitBaseDir: ${file}/repos cannot be a folder`);
    expect(await readFile(file, 'utf8')).toBe('x');
    expect(await exists(setup.stateDir)).toBe(false);
  });

  it('says so when gitBaseDir is not writable for the user running it (exit 1)', async () => {
    const setup = await gitSetup();
    await chmod(setup.dir, 0o755);
    await mkdir(setup.baseDir, { mode: 0o755 });
    await mkdir(setup.stateDir);
    await chown(setup.stateDir, 65534, 65534);
    const result = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, programPath('dysnomia'),
        '--operation', 'activate', '--component', setup.component, '--container', setup.containerFile],
      { env: { DYSNOMIA_STATEDIR: setup.stateDir, HOME: setup.stateDir }, reject: false },
    );
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot write to ${setup.baseDir} (gitBaseDir in ${setup.containerFile}): permission denied`);
    expect(await readdir(setup.baseDir)).toEqual([]);
  });

  it('refuses an unknown gitGroup (exit 2) before creating anything', async () => {
    const setup = await gitSetup({ properties: { gitGroup: 'no-such-group-here' } });
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`${setup.containerFile}: gitGroup: there is no group "no-such-group-here"`);
    expect(await exists(setup.baseDir)).toBe(false);
    expect(await exists(setup.stateDir)).toBe(false);
  });

  it('refuses a gitGroup that is not a group name', async () => {
    const setup = await gitSetup({ properties: { gitGroup: "'a b'" } });
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain('gitGroup: "a b" is not a group name');
  });

  it('refuses to snapshot a folder that is not a bare repository', async () => {
    const setup = await gitSetup();
    await makeWorkRepo(setup.repo);
    const result = await setup.run('snapshot');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`${setup.repo} is not a bare git repository (it has no HEAD)`);
  });

  it('refuses to snapshot a repository that was never activated', async () => {
    const setup = await gitSetup();
    const result = await setup.run('snapshot');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`there is no repository ${setup.repo}; activate the component first`);
  });
});

describe('git-repository collect-garbage and shell', () => {
  it('removes the repository only once it is marked as garbage', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    await setup.ok('collect-garbage');
    expect(await exists(setup.repo)).toBe(true);
    await setup.ok('deactivate');
    expect(await exists(setup.repo)).toBe(true);
    const result = await setup.ok('collect-garbage');
    expect(result.stderr).toContain(`removed ${setup.repo}`);
    expect(await readdir(setup.baseDir)).toEqual([]);
  });

  it('refuses to collect a repository that a component of another container with the same gitBaseDir still uses', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    const before = await refs(setup.repo);
    // The component moves to another container that keeps its repositories in the same folder.
    const moved = path.join(setup.dir, 'git-moved');
    await writeFile(moved, `type=git-repository\ngitBaseDir=${setup.baseDir}\n`);
    const inMoved = (operation: string) =>
      runCli('dysnomia', ['--operation', operation, '--component', setup.component, '--container', moved], {
        env: { DYSNOMIA_STATEDIR: setup.stateDir },
      });
    await setup.ok('deactivate');
    expect((await inMoved('activate')).exitCode).toBe(0);

    const refused = await setup.run('collect-garbage');
    expect(refused.exitCode, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`not collecting git-container/project: git-moved/project is activated and keeps its data in the same place (${setup.repo})`);
    expect(refused.stderr).toContain('Nothing was removed');
    expect(await refs(setup.repo)).toBe(before);

    // A container elsewhere does not stand in the way, and once the other is gone it is collected.
    const elsewhere = path.join(setup.dir, 'git-elsewhere');
    await writeFile(elsewhere, `type=git-repository\ngitBaseDir=${path.join(setup.dir, 'other-repos')}\n`);
    expect((await inMoved('deactivate')).exitCode).toBe(0);
    const third = await runCli('dysnomia', ['--operation', 'activate', '--component', setup.component, '--container', elsewhere], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir },
    });
    expect(third.exitCode, third.stderr).toBe(0);
    const collected = await setup.ok('collect-garbage');
    expect(collected.stderr).toContain(`removed ${setup.repo}`);
    expect(await refs(path.join(setup.dir, 'other-repos', 'project'))).toBe(before);
  });

  it('under --environment (as Disnix runs it), refuses while another container that cannot be found has the component activated', async () => {
    const setup = await gitSetup({ commits: 2 });
    const asDisnix = (operation: string, container: string) =>
      runCli('dysnomia', ['--type', 'git-repository', '--operation', operation, '--component', setup.component, '--container', container, '--environment'], {
        env: { DYSNOMIA_STATEDIR: setup.stateDir, gitBaseDir: setup.baseDir },
      });
    expect((await asDisnix('activate', 'git-a')).exitCode).toBe(0);
    const before = await refs(setup.repo);
    // The deployment moves the component to git-b, whose properties only Disnix knows.
    expect((await asDisnix('activate', 'git-b')).exitCode).toBe(0);
    expect((await asDisnix('deactivate', 'git-a')).exitCode).toBe(0);

    const refused = await asDisnix('collect-garbage', 'git-a');
    expect(refused.exitCode, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`not collecting git-a/project: git-b/project is activated, and whether it keeps its data in the same place (${setup.repo}) cannot be told`);
    expect(refused.stderr).toContain('no container file named git-b was found');
    expect(refused.stderr).toContain('Nothing was removed');
    expect(await refs(setup.repo)).toBe(before);
    expect(await exists(path.join(setup.stateDir, 'garbage', 'git-a', 'project'))).toBe(true);

    // A container named after another plugin's type (as --environment names one without
    // --container) keeps another plugin's data, and git-b gone, the repository is collected.
    await markActive(setup.stateDir, { container: 'postgresql-database', component: 'project' });
    expect((await asDisnix('deactivate', 'git-b')).exitCode).toBe(0);
    const collected = await asDisnix('collect-garbage', 'git-a');
    expect(collected.exitCode, collected.stderr).toBe(0);
    expect(collected.stderr).toContain(`removed ${setup.repo}`);
  });

  it('lock and unlock need no properties (Disnix runs them without), and change nothing', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    const before = await refs(setup.repo);
    for (const operation of ['lock', 'unlock']) {
      const result = await runCli('dysnomia', ['--type', 'git-repository', '--operation', operation, '--component', setup.component, '--container', 'git-repository', '--environment'], {
        env: { DYSNOMIA_STATEDIR: setup.stateDir },
        cleanEnv: true,
      });
      expect(result.exitCode, result.stderr).toBe(0);
    }
    expect(await refs(setup.repo)).toBe(before);
    // Activation still needs gitBaseDir.
    const activate = await runCli('dysnomia', ['--type', 'git-repository', '--operation', 'activate', '--component', setup.component, '--environment'], {
      env: { DYSNOMIA_STATEDIR: setup.stateDir },
      cleanEnv: true,
    });
    expect(activate.exitCode).toBe(2);
    expect(activate.stderr).toContain('gitBaseDir');
  });

  it('shows the repository path and commands, and exports gitRepository', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    const result = await setup.run('shell', ['--shell', '--command', 'echo "repo=$gitRepository"']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`Repository of project: ${setup.repo}`);
    expect(result.stderr).toContain(`git --git-dir=${setup.repo} log`);
    expect(result.stdout).toContain(`repo=${setup.repo}`);
  });
});

describe('git-repository repairs interrupted operations', () => {
  const leftover = (setup: { baseDir: string }, name: string) => path.join(setup.baseDir, name);

  /** A finished swap's previous repository, as a restore killed after the swap leaves it: a copy of the live one, with the refs it had at the swap recorded. */
  async function previousRepository(setup: { repo: string }, aside: string): Promise<void> {
    await execa('cp', ['-a', setup.repo, aside]);
    await writeFile(path.join(aside, AT_SWAP_FILE), identityOf(await readRefState(aside)));
  }

  it('removes temporary folders and a finished swap\'s old repository, and nothing of other components', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    const mine = ['.project.dysnomia-restore-0123456789ab', '.project.dysnomia-delete-0123456789ab'];
    const others = ['.projectx.dysnomia-old-0123456789ab', '.project.dysnomia-old-notarandom', 'project2'];
    for (const name of [...mine, ...others]) await mkdir(leftover(setup, name), { recursive: true });
    await previousRepository(setup, leftover(setup, '.project.dysnomia-old-0123456789ab'));
    const result = await setup.ok('activate');
    expect(result.stderr).toContain('left by an interrupted restore');
    expect((await readdir(setup.baseDir)).sort()).toEqual(['project', ...others].sort());
  });

  it('keeps a finished swap\'s old repository that pushes reached after the swap, or whose refs at the swap were never recorded', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    // A restore killed while it waited for a push still going into the previous repository.
    const pushed = leftover(setup, '.project.dysnomia-old-00000000000a');
    await previousRepository(setup, pushed);
    await git(setup.work, 'commit', '--allow-empty', '-q', '-m', 'pushed during the restore');
    await git(setup.work, 'push', '-q', pushed, 'HEAD:refs/heads/late');
    const late = await git(pushed, 'rev-parse', 'refs/heads/late');
    // One killed before it wrote its record (or left by an older version).
    const unrecorded = leftover(setup, '.project.dysnomia-old-00000000000b');
    await execa('cp', ['-a', setup.repo, unrecorded]);
    const result = await setup.ok('activate');
    const kept = (await readdir(setup.baseDir)).filter((name) => name.startsWith('.project.dysnomia-kept-'));
    expect(kept).toHaveLength(2);
    expect(result.stderr).toContain('left by an interrupted restore, is kept at');
    expect(result.stderr).toContain('pushes may have reached it during that restore');
    const withLate = [];
    for (const name of kept) withLate.push(await git(leftover(setup, name), 'rev-parse', '--verify', '-q', 'refs/heads/late').catch(() => ''));
    expect(withLate.sort()).toEqual(['', late]);
    // Kept under a name no repair touches: the next operation leaves them.
    await setup.ok('activate');
    expect((await readdir(setup.baseDir)).filter((name) => name.startsWith('.project.dysnomia-kept-')).sort()).toEqual(kept.sort());
  });

  it('leaves the folders of a restore that is still running (another container sharing gitBaseDir), removes those of a gone one', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    const running = execa('sleep', ['60']);
    const finished = execa('true');
    const gone = { pid: finished.pid };
    await finished;
    try {
      const live = `.project.dysnomia-restore-${running.pid}@${HOST_TAG}-0123456789ab`;
      const dead = `.project.dysnomia-restore-${gone.pid}@${HOST_TAG}-0123456789ab`;
      const otherHost = `.project.dysnomia-restore-${gone.pid}@00000000-0123456789ab`;
      for (const name of [live, dead, otherHost]) await mkdir(leftover(setup, path.join(name, 'repository')), { recursive: true });
      const result = await setup.ok('activate');
      expect(result.stderr).toContain(`removing ${leftover(setup, dead)}, left by an interrupted restore`);
      expect((await readdir(setup.baseDir)).sort()).toEqual(['project', live, otherHost].sort());
    } finally {
      running.kill();
      await running.catch(() => {});
    }
  });

  it('tells a running restore from a killed one whose pid a later process was given (start time in the name)', async () => {
    const setup = await gitSetup();
    await setup.ok('activate');
    const running = execa('sleep', ['60']);
    try {
      const start = processStartTime(running.pid!);
      expect(start).toBeDefined();
      const live = `.project.dysnomia-restore-${running.pid}.${start}@${HOST_TAG}-0123456789ab`;
      const reused = `.project.dysnomia-restore-${running.pid}.${start! + 1}@${HOST_TAG}-0123456789ab`;
      for (const name of [live, reused]) await mkdir(leftover(setup, path.join(name, 'repository')), { recursive: true });
      const result = await setup.ok('activate');
      expect(result.stderr).toContain(`removing ${leftover(setup, reused)}, left by an interrupted restore`);
      expect((await readdir(setup.baseDir)).sort()).toEqual(['project', live].sort());
    } finally {
      running.kill();
      await running.catch(() => {});
    }
  });

  it('keeps temporary names of the longest component names within 255 bytes, however long pid and start time get', async () => {
    const name = 'n'.repeat(200);
    const start = String(processStartTime(process.pid));
    for (const kind of ['activate', 'restore', 'old', 'delete'] as const) {
      const temp = path.basename(tempPath(`/srv/git/${name}`, kind));
      // The longest pid Linux gives (7 digits) and a start time after years of uptime (12 digits).
      const worst = temp.length - String(process.pid).length + 7 - start.length + 12;
      expect(worst, temp).toBeLessThanOrEqual(255);
    }
    const setup = await gitSetup({ name, commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await git(setup.work, 'commit', '--allow-empty', '-q', '-m', 'more');
    await git(setup.work, 'push', '-q', setup.repo, 'HEAD:refs/heads/more');
    const restored = await setup.ok('restore');
    expect(restored.stderr).toContain('the previous repository was removed');
    expect(await readdir(setup.baseDir)).toEqual([name]);
  });

  it('puts the old repository back when a restore died between its two renames', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    const before = await refs(setup.repo);
    const aside = leftover(setup, '.project.dysnomia-old-00000000abcd');
    await execa('mv', [setup.repo, aside]);
    await mkdir(leftover(setup, '.project.dysnomia-restore-00000000abcd/repository'), { recursive: true });
    const result = await setup.ok('activate');
    expect(result.stderr).toContain('putting the previous repository back');
    expect(await refs(setup.repo)).toBe(before);
    expect(await readdir(setup.baseDir)).toEqual(['project']);
  });

  it('removes nothing when a new repository appeared after a restore died between its two renames', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    const before = await refs(setup.repo);
    const aside = leftover(setup, '.project.dysnomia-old-00000000abcd');
    const copy = leftover(setup, '.project.dysnomia-restore-00000000abcd');
    await execa('mv', [setup.repo, aside]);
    await mkdir(path.join(copy, 'repository'), { recursive: true });
    await writeFile(path.join(copy, 'repository', 'HEAD'), 'ref: refs/heads/main\n');
    // Someone (a git hosting tool, an admin) makes a new, empty repository at the same path.
    await git(setup.baseDir, 'init', '-q', '--bare', 'project');
    const result = await setup.run('activate');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`an earlier restore of ${setup.repo} stopped between its two renames`);
    expect(result.stderr).toContain(`the previous repository is in ${aside}`);
    expect(result.stderr).toContain('nothing was removed');
    expect(await refs(aside)).toBe(before);
    expect(await readFile(path.join(copy, 'repository', 'HEAD'), 'utf8')).toBe('ref: refs/heads/main\n');
    expect(await refs(setup.repo)).toBe('');
  });

  it('asks for help when several old repositories compete for the missing one', async () => {
    const setup = await gitSetup();
    await mkdir(leftover(setup, '.project.dysnomia-old-00000000000a'), { recursive: true });
    await mkdir(leftover(setup, '.project.dysnomia-old-00000000000b'), { recursive: true });
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('several earlier versions');
    expect(await exists(setup.repo)).toBe(false);
  });
});
