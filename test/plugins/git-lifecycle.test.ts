/** The shared lifecycle suite on git-repository, with a real bare repository. */
import { randomBytes } from 'node:crypto';
import { rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { lifecycleSuite } from '../support/lifecycle.js';
import { makeTempDir } from '../support/temp.js';

lifecycleSuite('git-repository', {
  async setup() {
    const dir = await makeTempDir('dysnomia-git-lifecycle-');
    const work = await makeWorkRepo(path.join(dir, 'work'), { commits: 3, branches: ['dev'], tags: ['v1'] });
    const componentPath = path.join(dir, 'components', 'lifecycle-repo');
    await makeBundle(work, path.join(componentPath, 'git-repositories', 'initial.bundle'));
    const baseDir = path.join(dir, 'repos');
    const repo = path.join(baseDir, 'lifecycle-repo');
    return {
      properties: { type: 'git-repository', gitBaseDir: baseDir },
      componentPath,
      exists: () => stat(repo).then(
        () => true,
        () => false,
      ),
      state: async () => `${await refs(repo)}\n${await git(repo, 'symbolic-ref', 'HEAD')}`,
      async change() {
        await writeFile(path.join(work, 'change.bin'), randomBytes(4096));
        await git(work, 'add', 'change.bin');
        await git(work, 'commit', '-q', '-m', 'change');
        await git(work, 'tag', 'v2');
        await git(work, 'push', '-q', repo, 'main', 'v2', ':refs/heads/dev');
      },
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
});
