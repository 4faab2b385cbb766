/**
 * Who owns a repository: `gitGroup` makes it a group-shared repository (as Dysnomia's svnGroup
 * does for Subversion), and a restored repository keeps the owner of the one it replaces, so the
 * account that pushes to it can still write after a restore run as root.
 */
import { stat } from 'node:fs/promises';
import { ConfigError } from '../../core/errors.js';
import { git, run, succeeds } from './git.js';
import { type GitRepositoryOptions, PLUGIN_TYPE } from './options.js';

/** Fails with a ConfigError naming gitGroup when the group does not exist on this machine. */
export async function checkGroup(options: GitRepositoryOptions): Promise<void> {
  if (options.group === undefined) return;
  if (!(await succeeds('getent', ['group', options.group]))) {
    throw new ConfigError(`there is no group ${JSON.stringify(options.group)} on this machine (getent group found none)`, {
      file: options.file,
      key: 'gitGroup',
      plugin: PLUGIN_TYPE,
    });
  }
}

/**
 * Makes `repo` a repository the group may write: git keeps new files group-writable
 * (core.sharedRepository=group), every file belongs to the group, folders are setgid so new
 * files inherit it. Only folders get setgid: on a hook it would be a privilege escalation.
 */
export async function shareWithGroup(repo: string, group: string, signal?: AbortSignal): Promise<void> {
  const what = `giving group ${group} write access to ${repo}`;
  await git(repo, ['config', 'core.sharedRepository', 'group'], what, signal);
  await run('chgrp', ['-R', '--no-dereference', group, repo], what, { signal });
  await run('chmod', ['-R', 'g+rwX', repo], what, { signal });
  await run('find', [repo, '-type', 'd', '-exec', 'chmod', 'g+s', '{}', '+'], what, { signal });
}

/**
 * Gives the new repository the owner of the live one it is about to replace, and its group unless
 * `keepGroup` (gitGroup has set the group already: the container's, even when the live repository
 * had another). Only root can, and only root needs to: anyone else creates files they own already.
 */
export async function matchOwner(newRepo: string, liveRepo: string, keepGroup: boolean, signal?: AbortSignal): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const live = await stat(liveRepo);
  const fresh = await stat(newRepo);
  if (live.uid === fresh.uid && (keepGroup || live.gid === fresh.gid)) return;
  const owner = keepGroup ? `${live.uid}` : `${live.uid}:${live.gid}`;
  await run('chown', ['-R', '--no-dereference', owner, newRepo], `giving ${newRepo} the owner of ${liveRepo}`, {
    signal,
  });
}
