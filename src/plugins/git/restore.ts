/**
 * restore: rebuilds the repository from a snapshot beside the live one, checks it, then swaps the
 * two by renaming. Until the swap the live repository is not touched; a failure (a corrupted
 * snapshot, a full disk, a kill) leaves it exactly as it was.
 */
import { createWriteStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AbortedError, IntegrityError, lastLine, messageOf, OperationError, PluginError, throwIfAborted } from '../../core/errors.js';
import type { PluginContext, PluginRestoreResult, SnapshotSource } from '../../core/plugin.js';
import { git, run, TRUST } from './git.js';
import { type BundleHeader, BundleHeaderReader, identityOf, objectFormat, readRefState, type RefState } from './identity.js';
import { assertRepositoryAt, AT_SWAP_FILE, ensureBaseDir, exists, fsyncDir, fsyncTree, keptPath, processesIn, recover, refuseDanglingLink, repositoryPath, tempPath } from './layout.js';
import { type GitRepositoryOptions, PLUGIN_TYPE } from './options.js';
import { matchOwner, shareWithGroup } from './permissions.js';
import { EXTRA_FILES, STREAM } from './streams.js';

/**
 * A full disk met while the copy was built, said as that: the bare `ENOSPC: ..., write` named
 * neither the disk nor why a restore needs room at all. The same for a file size limit (EFBIG).
 */
function explainFullDisk(error: unknown, baseDir: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'EFBIG') {
    return new OperationError(
      `the snapshot's bundle, copied into ${baseDir}, grew past the largest file this process may write (${messageOf(error)}): ` +
        'raise the file size limit (ulimit -f) of this run and restore again',
      { plugin: PLUGIN_TYPE, cause: error },
    );
  }
  if (code !== 'ENOSPC' && code !== 'EDQUOT') return error;
  return new OperationError(
    `the disk of gitBaseDir ${baseDir} is full (${messageOf(error)}): a restore builds the repository beside the live one, ` +
      'so it needs room for the snapshot\'s bundle and a second copy of the repository; free space and restore again',
    { plugin: PLUGIN_TYPE, cause: error },
  );
}

/** Reads a small stream of the snapshot completely (and verified) into a string. */
async function readText(source: SnapshotSource, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of source.open(name)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Copies the bundle out of the store into `file`, verified, and returns its header. */
async function fetchBundle(ctx: PluginContext<GitRepositoryOptions>, source: SnapshotSource, file: string): Promise<BundleHeader> {
  const reader = new BundleHeaderReader();
  const watch = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      reader.push(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(source.open(STREAM.bundle), watch, createWriteStream(file), { signal: ctx.signal }).catch((error: unknown) => {
    throwIfAborted(ctx.signal, 'restore');
    throw error;
  });
  const header = reader.header();
  if (header === undefined) {
    throw new IntegrityError(`the bundle in snapshot ${source.identity} has no complete header`, { plugin: PLUGIN_TYPE });
  }
  return header;
}

/**
 * Unpacks files.tar (description, hooks, info) into the new repository, modes kept. The archive
 * is copied out first: tar stops reading at its end marker, and the store's verification needs
 * the stream read to its end.
 */
async function extractFiles(source: SnapshotSource, work: string, repo: string, signal?: AbortSignal): Promise<void> {
  const archive = path.join(work, STREAM.files);
  await pipeline(source.open(STREAM.files), createWriteStream(archive));
  await run('tar', ['-C', repo, '-xpf', archive, '--no-same-owner'], `unpacking the hooks of snapshot ${source.identity} into ${repo}`, {
    signal,
  });
}

/** Builds the snapshot's repository at `staged` and checks it; `work` holds the bundle file. */
async function stage(
  ctx: PluginContext<GitRepositoryOptions>,
  source: SnapshotSource,
  work: string,
  staged: string,
): Promise<RefState> {
  const { signal } = ctx;
  const head = (await readText(source, STREAM.head)).trim();
  const bundleFile = path.join(work, STREAM.bundle);
  const header = source.streams.includes(STREAM.bundle) ? await fetchBundle(ctx, source, bundleFile) : undefined;

  await git(work, ['init', '--quiet', '--bare', ...objectFormat(header), staged], `creating ${staged}`, signal);
  // What the snapshot had replaces what git's templates put there; no hook runs while loading.
  for (const name of EXTRA_FILES) await rm(path.join(staged, name), { recursive: true, force: true });
  if (header !== undefined) {
    await git(staged, ['bundle', 'verify', '--quiet', bundleFile], `verifying the bundle of snapshot ${source.identity}`, signal);
    const refspecs = ['+refs/*:refs/*'];
    // A detached HEAD may name a commit no ref reaches; fetch it so the objects come along.
    if (!head.startsWith('ref: ') && header.headOid !== undefined) refspecs.push('HEAD');
    await git(staged, ['fetch', '--quiet', '--no-write-fetch-head', bundleFile, ...refspecs], `loading the bundle of snapshot ${source.identity}`, signal);
  }
  await writeFile(path.join(staged, 'HEAD'), `${head}\n`);
  await writeFile(path.join(staged, 'config'), await readText(source, STREAM.config));
  if (source.streams.includes(STREAM.files)) await extractFiles(source, work, staged, signal);

  await git(staged, ['fsck', '--no-progress', '--no-dangling'], `checking the restored repository ${staged}`, signal);
  const state = await readRefState(staged, signal);
  const restored = identityOf(state);
  if (restored !== source.identity) {
    throw new IntegrityError(
      `the repository rebuilt from snapshot ${source.identity} has different refs (identity ${restored}); the snapshot is not what it claims to be`,
      { plugin: PLUGIN_TYPE },
    );
  }
  return state;
}

/**
 * The live refs a restore replaces or drops (pushed since the snapshot, say), for a warning that
 * names them: after the swap their commits are gone with the previous repository. A detached HEAD
 * that differs comes first, with its whole object id: it may be the only way to a commit (work
 * committed on it), and it must not hide among the refs past the tenth.
 */
function replacedRefs(live: RefState, restored: RefState): string[] {
  const short = (oid: string) => oid.slice(0, 12);
  const after = new Map(restored.refs.map((ref) => [ref.name, ref.oid]));
  const lost: string[] = [];
  if (!live.head.startsWith('ref: ') && live.head !== restored.head) {
    lost.push(`HEAD (detached at ${live.head}; the snapshot has ${restored.head.replace(/^ref: /, '')})`);
  }
  for (const ref of live.refs) {
    const oid = after.get(ref.name);
    if (oid === undefined) lost.push(`${ref.name} (at ${short(ref.oid)}, not in the snapshot)`);
    else if (oid !== ref.oid) lost.push(`${ref.name} (at ${short(ref.oid)}; the snapshot has ${short(oid)})`);
  }
  return lost;
}

/**
 * The commit a detached HEAD of the live repository names, when the restored repository lacks it:
 * work committed on a detached HEAD is reached by no ref, so no warning about refs covered it, and
 * it went with the previous repository. It is fetched into the restored repository without a ref
 * (upload-pack serves a detached HEAD), where it stays until git gc prunes it (gc.pruneExpire,
 * two weeks by default): time to give it a branch. Returns the commit when it was fetched. A
 * commit that cannot be fetched (the live repository is damaged, which is what a restore is for)
 * is a warning, not a reason to stop.
 */
async function keepDetachedHead(
  ctx: PluginContext<GitRepositoryOptions>,
  repo: string,
  staged: string,
  live: RefState,
): Promise<string | undefined> {
  const oid = live.head;
  if (!/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(oid)) return undefined;
  try {
    await git(staged, ['cat-file', '-e', `${oid}^{commit}`], `looking for ${oid} in ${staged}`, ctx.signal, true);
    return undefined; // the snapshot has it
  } catch (error) {
    if (error instanceof AbortedError) throw error;
  }
  try {
    // git's local transport clears the -c settings for upload-pack, and git 2.39.4 and later
    // refuse to serve a repository another user owns (the usual case: root restores the git
    // user's repository): upload-pack is told to trust it itself.
    // (simple-git refuses --upload-pack, hence git itself.)
    await run(
      'git',
      ['-C', staged, '-c', TRUST, 'fetch', '--quiet', '--no-write-fetch-head', `--upload-pack=git -c '${TRUST}' upload-pack`, repo, oid],
      `fetching the commit ${oid} of the detached HEAD of ${repo}`,
      { signal: ctx.signal },
    );
    return oid;
  } catch (error) {
    if (error instanceof AbortedError) throw error;
    ctx.log.warn(`could not keep ${oid}, the commit of the detached HEAD of ${repo}, in the restored repository (${messageOf(error)}); it goes with the previous repository`);
    return undefined;
  }
}

/**
 * What dumb-HTTP clients read, `git update-server-info`'s info/refs and objects/info/packs, made
 * for the restored repository when the live one had either: a snapshot leaves them out (git
 * derives them), and the live ones name the live refs and packs. A repository that never had
 * them is not served over dumb HTTP and gets none. (git repack and git gc write them too.) An
 * unreadable live one (a damaged repository, what a restore is for) counts as without them.
 */
async function updateServerInfo(ctx: PluginContext<GitRepositoryOptions>, repo: string, staged: string): Promise<void> {
  const has = (file: string) => lstat(path.join(repo, file)).then(() => true, () => false);
  if (!(await has('info/refs')) && !(await has('objects/info/packs'))) return;
  await git(staged, ['update-server-info'], `writing info/refs and objects/info/packs (for dumb HTTP) of ${staged}`, ctx.signal, true);
}

/**
 * Top-level entries of a bare repository that a restore does not carry over from the live one:
 * what it rebuilds from the snapshot (objects, refs, packed-refs, HEAD, config, description, hooks,
 * info), what a snapshot leaves out by design (logs: the reflogs; worktrees: warned about before;
 * shallow: its list of cut-off commits would be wrong in a whole repository), and what git makes
 * for itself and throws away (index, gc.pid, gc.log, COMMIT_EDITMSG; FETCH_HEAD, ORIG_HEAD and the
 * other `*_HEAD`; `*.lock`), and the restore's own record of the refs at the swap. Everything else
 * (git-daemon-export-ok, gitweb's cloneurl, git-lfs's lfs/, a file of the admin's) is no git
 * state a snapshot could bring back, and must not go with the previous repository.
 */
const NOT_CARRIED = new Set([
  'objects', 'refs', 'packed-refs', 'HEAD', 'config', 'description', 'hooks', 'info',
  'logs', 'worktrees', 'shallow', 'index', 'gc.pid', 'gc.log', 'COMMIT_EDITMSG', AT_SWAP_FILE,
]);

function carried(name: string): boolean {
  // packed-refs.new: git's packed-refs being rewritten, created exclusively; carried, every later
  // ref deletion and pack-refs in the restored repository failed on it.
  return !NOT_CARRIED.has(name) && !name.endsWith('_HEAD') && !name.endsWith('.lock') && name !== 'packed-refs.new' && !name.startsWith('tmp_');
}

/**
 * Copies the live repository's entries that a snapshot does not hold (see NOT_CARRIED) into the
 * restored one, as they are: `cp -a` keeps modes, owners (as root), times and symlinks. A copy
 * that fails fails the restore before the swap, the live repository untouched.
 */
async function carryOver(ctx: PluginContext<GitRepositoryOptions>, repo: string, staged: string): Promise<void> {
  const copied: string[] = [];
  for (const name of (await readdir(repo)).filter(carried).sort()) {
    const from = path.join(repo, name);
    const to = path.join(staged, name);
    if (await exists(to)) {
      // Put there by git init's templates (branches/): the live one replaces it, unless it is as
      // empty as git made it, which is not worth a line.
      const info = await lstat(from).catch(() => undefined);
      if (info === undefined || (info.isDirectory() && (await readdir(from)).length === 0)) continue;
      await rm(to, { recursive: true, force: true });
    }
    try {
      await run('cp', ['-a', '--', from, to], `carrying ${from} over into the restored repository`, { signal: ctx.signal });
    } catch (error) {
      // Gone meanwhile (a temporary file of git's or of a tool): nothing to carry.
      if (!(await exists(from)) && !(error instanceof AbortedError)) {
        await rm(to, { recursive: true, force: true });
        continue;
      }
      throw error;
    }
    copied.push(name);
  }
  if (copied.length > 0) {
    ctx.log.info(`carrying over from ${repo} what a snapshot does not hold: ${copied.join(', ')}`);
  }
}

/**
 * Replaces the live repository by the staged one: two renames, the old one removed after, unless
 * a push wrote into it after `atSwap` was read (see keptForPushes). Returns where the old one was
 * kept, if it was.
 */
async function swap(
  ctx: PluginContext<GitRepositoryOptions>,
  repo: string,
  staged: string,
  live: boolean,
  atSwap: RefState | undefined,
): Promise<string | undefined> {
  const aside = live ? tempPath(repo, 'old') : undefined;
  // The record a repair after a kill needs to remove the previous repository (without it, the
  // repair keeps it): written before the first rename, so that no kill after the swap finds it
  // missing. A push between here and the rename changes the refs, and the repair keeps it then.
  // Best effort: a repository without its record is kept by the repair, never removed. With the
  // refs unreadable, a record a killed restore left there goes.
  const record = path.join(repo, AT_SWAP_FILE);
  const dropRecord = () => rm(record, { force: true }).catch(() => {});
  if (aside !== undefined) {
    if (atSwap === undefined) await dropRecord();
    else await writeFile(record, identityOf(atSwap)).catch(dropRecord);
    await rename(repo, aside).catch(async (error: unknown) => {
      await dropRecord();
      throw error;
    });
  }
  try {
    await rename(staged, repo);
  } catch (error) {
    if (aside !== undefined) {
      await rename(aside, repo);
      await dropRecord();
    }
    throw error;
  }
  await fsyncDir(path.dirname(repo));
  if (aside === undefined) return undefined;
  const kept = await keptForPushes(ctx, repo, aside, atSwap);
  if (kept !== undefined) return kept;
  // The restore itself is done: a removal that fails (a writer still inside) is the next run's.
  // Renamed to a name for deletion first: a kill halfway through the removal must not leave a
  // half-removed previous repository that the next repair, finding its record gone, would keep.
  const doomed = tempPath(repo, 'delete');
  await rename(aside, doomed)
    .then(() => rm(doomed, { recursive: true, force: true }))
    .catch((error: unknown) => {
      ctx.log.warn(`could not remove the previous repository ${aside} (${messageOf(error)}); the next operation on ${repo} removes it`);
    });
  return undefined;
}

/** How long the swap waits for processes still working in the previous repository. */
const SETTLE_MS = 10_000;

/**
 * A push that was running at the swap goes on in the previous repository (git serves it from its
 * working folder, which moved aside with it) and is acknowledged to its client; removing that
 * repository would lose the commits without a word. So the previous repository is kept when its
 * refs changed after the last look before the swap, or when processes still work in it (a push
 * not yet done, or any other process there: it is not ours to judge): waited for while they do,
 * for up to SETTLE_MS, then moved to `.<name>.dysnomia-kept-<time>` (no repair touches that
 * name) with a warning naming the refs that changed and the processes.
 */
async function keptForPushes(
  ctx: PluginContext<GitRepositoryOptions>,
  repo: string,
  aside: string,
  atSwap: RefState | undefined,
): Promise<string | undefined> {
  // /proc gives working folders with links resolved (gitBaseDir may lie below a symlink).
  const real = await realpath(aside).catch(() => aside);
  const until = Date.now() + SETTLE_MS;
  let busy = await processesIn(real);
  while (busy.length > 0 && Date.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    busy = await processesIn(real);
  }
  let after: RefState | undefined;
  try {
    // Without the signal: a cancel now must not pass for unreadable refs (the swap is done).
    after = await readRefState(aside);
  } catch {
    after = undefined; // unreadable now: keep it, to be safe
  }
  // With refs unreadable before the swap (a damaged repository, what a restore is for) there is
  // nothing to compare: as before, only a process still at work keeps it.
  const untouched = atSwap === undefined || (after !== undefined && identityOf(after) === identityOf(atSwap));
  if (busy.length === 0 && untouched) return undefined;
  const kept = keptPath(repo, aside);
  await rename(aside, kept);
  await fsyncDir(path.dirname(repo));
  const pushed = after === undefined ? ['its refs cannot be read'] : atSwap === undefined ? [] : changedRefs(atSwap, after);
  // Any process counts, not only git (an admin's shell that cd'ed there, say): name them, so
  // the user can tell a push from a shell left open.
  const shown = busy.length > 5 ? [...busy.slice(0, 5), `and ${busy.length - 5} more`] : busy;
  const why = busy.length > 0
    ? `processes were still working in it after ${SETTLE_MS / 1000} s (${shown.join(', ')})${pushed.length > 0 ? `, and ${after === undefined ? pushed[0] : `its refs changed: ${pushed.join(', ')}`}` : ''}`
    : `pushes reached it during the swap (${pushed.join(', ')})`;
  ctx.log.warn(`the previous repository of ${repo} is kept at ${kept}: ${why}; fetch what you need from it, then remove it`);
  return kept;
}

/** Refs of `after` that are new or moved since `before`, those gone, and HEAD when it changed. */
function changedRefs(before: RefState, after: RefState): string[] {
  const earlier = new Map(before.refs.map((ref) => [ref.name, ref.oid]));
  const changed = after.refs.filter((ref) => earlier.get(ref.name) !== ref.oid).map((ref) => ref.name);
  const names = new Set(after.refs.map((ref) => ref.name));
  const gone = before.refs.filter((ref) => !names.has(ref.name)).map((ref) => `${ref.name} (deleted)`);
  const head = before.head === after.head ? [] : [`HEAD (now ${after.head.replace(/^ref: /, '')})`];
  return [...changed, ...gone, ...head];
}

/**
 * The live repository's refs, or undefined when they cannot be read (HEAD or refs/ lost,
 * say): a damaged repository is what a restore is for, so that is no reason to stop.
 */
async function liveState(ctx: PluginContext<GitRepositoryOptions>, repo: string): Promise<RefState | undefined> {
  try {
    return await readRefState(repo, ctx.signal);
  } catch (error) {
    if (error instanceof AbortedError) throw error;
    ctx.log.warn(`cannot read the refs of ${repo} (${messageOf(error)}); restoring it from the snapshot`);
    return undefined;
  }
}

/** A swap would replace a symlinked repository by a folder and leave the folder it points to stale. */
async function refuseSymlink(repo: string): Promise<void> {
  if (!(await lstat(repo)).isSymbolicLink()) return;
  const target = await readlink(repo);
  throw new OperationError(
    `${repo} is a symbolic link to ${target}; a restore replaces the repository by renaming, which would replace the link and leave ${target} as it is: set gitBaseDir to the folder that really holds the repository`,
    { plugin: PLUGIN_TYPE },
  );
}

/**
 * Whether every ref's object is there: a repository that lost objects (a disk error, a careless
 * cleanup) can keep its refs, and the snapshot's identity then says "nothing to restore". Undefined
 * when all are there, else what git said. Only the tips are looked at, which is cheap; deeper
 * damage is for `git fsck`.
 */
async function missingTips(repo: string, signal?: AbortSignal): Promise<string | undefined> {
  try {
    await git(repo, ['for-each-ref', '--format=%(objecttype)'], `looking up the objects of the refs of ${repo}`, signal, true);
    return undefined;
  } catch (error) {
    if (signal?.aborted) throw error;
    return error instanceof PluginError ? lastLine(error.stderr ?? error.message) : messageOf(error);
  }
}

/**
 * Linked worktrees (`git worktree add` from the bare repository) live in the repository's
 * `worktrees/`, which a bundle does not hold: after the swap their checkouts no longer find the
 * repository, and commits only they reach go with the previous one.
 */
async function warnOfWorktrees(ctx: PluginContext<GitRepositoryOptions>, repo: string): Promise<void> {
  const names = await readdir(path.join(repo, 'worktrees')).catch(() => [] as string[]);
  if (names.length === 0) return;
  const places = await Promise.all(
    names.map(async (name) => (await readFile(path.join(repo, 'worktrees', name, 'gitdir'), 'utf8').catch(() => name)).trim().replace(/\/\.git$/, '')),
  );
  ctx.log.warn(`${repo} has linked worktrees (${places.join(', ')}); a snapshot does not hold them: after the restore they no longer find the repository, and commits only they reach go with the previous repository`);
}

/** restore: brings the repository to the snapshot's state, unless it is there already. */
export async function restore(ctx: PluginContext<GitRepositoryOptions>, source: SnapshotSource): Promise<PluginRestoreResult | void> {
  const repo = repositoryPath(ctx.options, ctx.component);
  if (source.type !== PLUGIN_TYPE) {
    throw new OperationError(`snapshot ${source.identity} was taken by ${source.type}, not ${PLUGIN_TYPE}; it cannot be restored into ${repo}`, {
      plugin: PLUGIN_TYPE,
    });
  }
  for (const name of [STREAM.head, STREAM.config]) {
    if (!source.streams.includes(name)) {
      throw new IntegrityError(`snapshot ${source.identity} (${source.path}) has no ${name} stream; it is not a complete git-repository snapshot`, {
        plugin: PLUGIN_TYPE,
      });
    }
  }
  await recover(repo, ctx.log);
  const live = await exists(repo);
  if (live) await refuseDanglingLink(repo);
  if (live) await assertRepositoryAt(repo, 'the restore');
  const before = live ? await liveState(ctx, repo) : undefined;
  if (before !== undefined && identityOf(before) === source.identity) {
    const missing = await missingTips(repo, ctx.signal);
    if (missing === undefined) return { restored: false, reason: `${repo} has its refs` };
    ctx.log.warn(`${repo} has the snapshot's refs, but not the objects they point at (${missing}); restoring it`);
  }
  if (live) await refuseSymlink(repo);
  if (live) await warnOfWorktrees(ctx, repo);
  await ensureBaseDir(ctx.options);
  const work = tempPath(repo, 'restore');
  let keptAt: string | undefined;
  await mkdir(work);
  try {
    const staged = path.join(work, 'repository');
    let restored: RefState;
    let atSwap: RefState | undefined;
    let keptHead: string | undefined;
    try {
      restored = await stage(ctx, source, work, staged);
      keptHead = before === undefined ? undefined : await keepDetachedHead(ctx, repo, staged, before);
      // After the last objects came in (keepDetachedHead's fetch), before the owner and group are
      // set, so the files get them too; carryOver copies neither info/ nor objects/ over them.
      if (live) await updateServerInfo(ctx, repo, staged);
      // Group first: it rewrites the config, which must then get the owner too.
      if (ctx.options.group !== undefined) await shareWithGroup(staged, ctx.options.group, ctx.signal);
      if (live) await matchOwner(staged, repo, ctx.options.group !== undefined, ctx.signal);
      // After the owner and group: what is carried over keeps its own.
      if (live) await carryOver(ctx, repo, staged);
      await fsyncTree(staged);
      throwIfAborted(ctx.signal, `restore of ${repo}`);
      // Looked at again just before the swap: pushes may have come in while the copy was built.
      atSwap = before === undefined ? undefined : await liveState(ctx, repo);
    } catch (error) {
      ctx.log.warn(`restore stopped before the swap: ${live ? `${repo} is unchanged` : `${repo} was not created`}`);
      throw explainFullDisk(error, ctx.options.baseDir);
    }
    const lost = atSwap === undefined ? [] : replacedRefs(atSwap, restored);
    if (lost.length > 0) {
      const shown = lost.length > 10 ? [...lost.slice(0, 10), `and ${lost.length - 10} more`] : lost;
      const head = atSwap?.head;
      const rescued = keptHead !== undefined && keptHead === head
        ? `; the commit of the detached HEAD, ${head}, stays in ${repo} without a ref until git gc prunes it (git --git-dir=${repo} branch <name> ${head} keeps it)`
        : '';
      ctx.log.warn(`the restore of ${repo} replaces refs that differ from the snapshot: ${shown.join(', ')}; commits only they reach go with the previous repository${rescued}`);
    }
    keptAt = await swap(ctx, repo, staged, live, atSwap);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const previous = !live ? '' : keptAt === undefined ? '; the previous repository was removed' : `; the previous repository is kept at ${keptAt}`;
  ctx.log.info(`${repo} now has the refs of snapshot ${source.identity}${previous}`);
}
