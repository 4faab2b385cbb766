/**
 * The streams of a git-repository snapshot, in the order they are written:
 *
 * - `HEAD`: the HEAD file (`ref: refs/heads/main`, or an object id when detached);
 * - `config`: the repository's config file;
 * - `files.tar`: `description`, `hooks/` and `info/` (a tar keeps the hooks' exec bits and
 *   symlinks; info/refs is left out, git update-server-info derives it, and so is an info/packs);
 * - `repo.bundle`: `git bundle create - --all`, every ref and every object they reach. Absent when
 *   the repository has no refs yet (git refuses to make an empty bundle).
 */
export const STREAM = {
  head: 'HEAD',
  config: 'config',
  files: 'files.tar',
  bundle: 'repo.bundle',
} as const;

/** The repository files kept in `files.tar`, when present. */
export const EXTRA_FILES = ['description', 'hooks', 'info'] as const;

/**
 * Files under info/ that git derives for dumb HTTP clients; never captured. git writes the other
 * one, packs, under objects/info/, which no snapshot stream holds; info/packs is left out too.
 */
export const DERIVED_FILES = ['info/refs', 'info/packs'] as const;
