/** Builds real git repositories for tests, from a description of commits, branches and tags. */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';

const GIT_ENV = {
  GIT_AUTHOR_NAME: 'Test',
  GIT_AUTHOR_EMAIL: 'test@example.com',
  GIT_COMMITTER_NAME: 'Test',
  GIT_COMMITTER_EMAIL: 'test@example.com',
  GIT_CONFIG_NOSYSTEM: '1',
  // The developer's ~/.gitconfig (commit signing, hooks, templates) must not change the repositories.
  GIT_CONFIG_GLOBAL: '/dev/null',
};

/** Runs git in `cwd` and returns stdout; throws with git's stderr on failure. */
export async function git(cwd: string, ...args: string[]): Promise<string> {
  const result = await execa('git', args, { cwd, env: GIT_ENV });
  return result.stdout;
}

export interface RepoSpec {
  /** Files of the first commit, path to content. */
  files?: Record<string, string>;
  /** How many further commits to make on the default branch (each changes one file). */
  commits?: number;
  /** Extra branches made from the last commit, each with one commit of its own. */
  branches?: string[];
  /** Tags on the last commit of the default branch. */
  tags?: string[];
}

/** Creates a working repository at `dir` (branch `main`) and returns its path. */
export async function makeWorkRepo(dir: string, spec: RepoSpec = {}): Promise<string> {
  await mkdir(dir, { recursive: true });
  await git(dir, 'init', '-q', '-b', 'main');
  const files = spec.files ?? { 'README.md': '# test\n' };
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), content);
  }
  await git(dir, 'add', '-A');
  await git(dir, 'commit', '-q', '-m', 'initial');
  if ((spec.commits ?? 0) > 0) {
    // fast-import makes thousands of commits in well under a second.
    const count = spec.commits!;
    let stream = '';
    for (let i = 1; i <= count; i++) {
      const data = `change ${i}\n`;
      const message = `commit ${i}`;
      stream += `commit refs/heads/main\ncommitter Test <test@example.com> ${1_700_000_000 + i} +0000\n`;
      stream += `data ${Buffer.byteLength(message)}\n${message}\n`;
      if (i === 1) stream += 'from refs/heads/main^0\n';
      stream += `M 100644 inline counter.txt\ndata ${Buffer.byteLength(data)}\n${data}\n`;
    }
    await execa('git', ['fast-import', '--quiet'], { cwd: dir, input: stream, env: GIT_ENV });
    await git(dir, 'reset', '-q', '--hard', 'main');
  }
  for (const branch of spec.branches ?? []) {
    await git(dir, 'checkout', '-q', '-b', branch, 'main');
    await writeFile(path.join(dir, `${branch}.txt`), `${branch}\n`);
    await git(dir, 'add', '-A');
    await git(dir, 'commit', '-q', '-m', `on ${branch}`);
  }
  if ((spec.branches ?? []).length > 0) await git(dir, 'checkout', '-q', 'main');
  for (const tag of spec.tags ?? []) await git(dir, 'tag', tag);
  return dir;
}

/** Writes `git bundle create --all` of a working repository to `bundleFile`. */
export async function makeBundle(workRepo: string, bundleFile: string): Promise<string> {
  await mkdir(path.dirname(bundleFile), { recursive: true });
  await git(workRepo, 'bundle', 'create', '-q', bundleFile, '--all');
  return bundleFile;
}

/** Every ref of a repository with its target, one `hash ref` line each, sorted. */
export async function refs(repo: string): Promise<string> {
  return (await git(repo, 'for-each-ref', '--format=%(objectname) %(refname)')).split('\n').sort().join('\n');
}
