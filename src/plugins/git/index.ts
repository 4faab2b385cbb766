/**
 * `git-repository`: bare git repositories as mutable components, at `<gitBaseDir>/<component>`.
 * Snapshots are named by the state of the refs, so an unchanged repository costs one
 * `git for-each-ref`; a changed one streams `git bundle create --all` into the store.
 */
import { realpathSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Plugin, PluginContext, ShellInfo } from '../../core/plugin.js';
import { activate, componentBundles } from './activate.js';
import { checkBaseDir, exists, fsyncDir, recover, repositoryPath, tempPath } from './layout.js';
import { checkGroup } from './permissions.js';
import { type GitRepositoryOptions, PLUGIN_TYPE, parseGitOptions, PROPERTIES } from './options.js';
import { restore } from './restore.js';
import { identify, snapshot } from './snapshot.js';

/** collect-garbage: removes the repository (the core calls this only for a garbage component). */
async function collectGarbage(ctx: PluginContext<GitRepositoryOptions>): Promise<void> {
  const repo = repositoryPath(ctx.options, ctx.component);
  await recover(repo, ctx.log);
  if (!(await exists(repo))) {
    ctx.log.info(`${repo} does not exist; nothing to remove`);
    return;
  }
  // Renamed first, so an interrupted removal never leaves a half-deleted repository in place.
  const doomed = tempPath(repo, 'delete');
  await rename(repo, doomed);
  await fsyncDir(ctx.options.baseDir);
  await rm(doomed, { recursive: true, force: true });
  ctx.log.info(`removed ${repo}`);
}

/**
 * The repository's path with symlinks resolved (two gitBaseDirs may reach one folder by different
 * paths): of the repository when it exists, else of gitBaseDir.
 */
function realLocation(repo: string): string {
  // Not there (yet): the folder above, else the path as written.
  for (const resolve of [() => realpathSync(repo), () => path.join(realpathSync(path.dirname(repo)), path.basename(repo))]) {
    try {
      return resolve();
    } catch {
      // try the next
    }
  }
  return path.resolve(repo);
}

/** shell: where the repository is and what to type to look at it. */
async function shell(ctx: PluginContext<GitRepositoryOptions>): Promise<ShellInfo> {
  const repo = repositoryPath(ctx.options, ctx.component);
  const state = (await exists(repo)) ? '' : ' (does not exist yet: run --operation activate)';
  return {
    help: [
      `Repository of ${ctx.component.name}: ${repo}${state}`,
      '',
      'Useful commands:',
      `  git clone ${repo}                              clone it`,
      `  git --git-dir=${repo} log --oneline --all -n 20   latest commits`,
      `  git --git-dir=${repo} for-each-ref              every branch and tag`,
      `  git --git-dir=${repo} fsck                      check it`,
      '',
      'Environment variables:',
      'gitRepository            path to the repository',
    ],
    env: { gitRepository: repo },
  };
}

const plugin: Plugin<GitRepositoryOptions> = {
  type: PLUGIN_TYPE,
  parseOptions: parseGitOptions,
  properties: PROPERTIES,
  // The first checks of activate and restore, before anything is locked or written (the group
  // only here: it runs getent).
  checkComponent: async (ctx) => {
    if (ctx.operation !== 'activate' && ctx.operation !== 'restore') return;
    if (ctx.operation === 'activate') await componentBundles(ctx.component.path);
    await checkGroup(ctx.options);
    await checkBaseDir(ctx.options);
  },
  activate,
  identify,
  snapshot,
  restore,
  collectGarbage,
  shell,
  location: (options, component) => realLocation(repositoryPath(options, component)),
};

export default plugin;
