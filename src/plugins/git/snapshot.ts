/**
 * snapshot: streams the repository into the store. The identity is computed first (by the core,
 * through identify) so an unchanged repository is never bundled; when it has changed, the bundle
 * streams straight from git into the store, never to a temporary file.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { ChangedMeanwhileError, OperationError } from '../../core/errors.js';
import type { PluginContext, PluginSnapshotResult, SnapshotSink } from '../../core/plugin.js';
import { TRUST, commandOutput } from './git.js';
import { BundleHeaderReader, identityOf, listRefs, readHead, readRefState, type Ref } from './identity.js';
import { exists, recover, refuseDanglingLink, repositoryPath } from './layout.js';
import { type GitRepositoryOptions, PLUGIN_TYPE } from './options.js';
import { DERIVED_FILES, EXTRA_FILES, STREAM } from './streams.js';

/** The live repository, checked to exist (after repairing an interrupted operation). */
export async function liveRepository(ctx: PluginContext<GitRepositoryOptions>): Promise<string> {
  const repo = repositoryPath(ctx.options, ctx.component);
  await recover(repo, ctx.log);
  if (!(await exists(repo))) {
    throw new OperationError(`there is no repository ${repo}; activate the component first`, { plugin: PLUGIN_TYPE });
  }
  await refuseDanglingLink(repo);
  if (!(await stat(repo)).isDirectory()) {
    throw new OperationError(`${repo} is not a bare git repository (not a folder); gitBaseDir must hold bare repositories`, { plugin: PLUGIN_TYPE });
  }
  for (const part of ['HEAD', 'config', 'objects', 'refs']) {
    if (!(await exists(path.join(repo, part)))) {
      throw new OperationError(`${repo} is not a bare git repository (it has no ${part}); gitBaseDir must hold bare repositories`, {
        plugin: PLUGIN_TYPE,
      });
    }
  }
  // A bundle of a shallow repository lacks the history its refs need: it would be stored, and
  // every restore of it would fail.
  if (await exists(path.join(repo, 'shallow'))) {
    throw new OperationError(
      `${repo} is a shallow repository (it lacks part of its history), and a snapshot of it could never be restored; fetch its whole history first (git --git-dir=${repo} fetch --unshallow)`,
      { plugin: PLUGIN_TYPE },
    );
  }
  return repo;
}

/** identify: the identity of the live repository's refs and HEAD. */
export async function identify(ctx: PluginContext<GitRepositoryOptions>): Promise<string> {
  return identityOf(await readRefState(await liveRepository(ctx), ctx.signal));
}

async function presentFiles(repo: string): Promise<string[]> {
  const present: string[] = [];
  for (const name of EXTRA_FILES) if (await exists(path.join(repo, name))) present.push(name);
  return present;
}

/**
 * snapshot: HEAD, config, the extra files and the bundle, into the sink. git starts bundling
 * first: it spends its first tenths of a second counting objects, which then overlaps with
 * storing the small streams; its output waits (up to 16 MiB of it in our memory, the rest in
 * git) until the bundle's turn.
 */
export async function snapshot(
  ctx: PluginContext<GitRepositoryOptions>,
  sink: SnapshotSink,
): Promise<PluginSnapshotResult> {
  const repo = await liveRepository(ctx);
  const { signal } = ctx;
  const head = await readHead(repo);
  const before = await listRefs(repo, signal);
  // With no ref git refuses to make a bundle; HEAD and config are the whole state then.
  const resolvable = head.startsWith('ref: ') ? before.length > 0 : true;
  const header = new BundleHeaderReader();
  const bundle = resolvable
    ? // --git-dir: a repository git does not recognise fails, instead of git finding one above it.
      await commandOutput('git', [`--git-dir=${repo}`, '-c', TRUST, 'bundle', 'create', '--quiet', '-', '--all'], `bundling ${repo}`, {
        cwd: repo,
        signal,
        onChunk: (chunk) => header.push(chunk),
      })
    : undefined;
  try {
    await sink.addStream(STREAM.head, Readable.from([Buffer.from(`${head}\n`)]));
    await sink.addStream(STREAM.config, createReadStream(path.join(repo, 'config')));
    const files = await presentFiles(repo);
    if (files.length > 0) {
      const excludes = DERIVED_FILES.map((file) => `--exclude=./${file}`);
      const tar = await commandOutput('tar', ['-C', repo, '-cf', '-', ...excludes, ...files.map((f) => `./${f}`)], `archiving the hooks of ${repo}`, {
        signal,
      });
      await sink.addStream(STREAM.files, tar);
    }
    if (bundle !== undefined) await sink.addStream(STREAM.bundle, bundle);
  } catch (error) {
    // Stops git (the output's destroy stops its process group); the error is already thrown.
    bundle?.destroy();
    throw error;
  }
  if (bundle === undefined) {
    ctx.log.info(`${repo} has no refs yet; the snapshot holds its HEAD, config and hooks only`);
    return { identity: identityOf({ refs: [], head }) };
  }
  const refs = header.header();
  if (refs === undefined) throw new OperationError(`git bundle create wrote no bundle for ${repo}`, { plugin: PLUGIN_TYPE });
  // A detached HEAD stored above must name the commit the bundle carries as HEAD: one that moved
  // meanwhile could name a commit the bundle lacks, and that snapshot would never restore.
  if (!head.startsWith('ref: ') && refs.headOid !== undefined && refs.headOid !== head) {
    throw new ChangedMeanwhileError(`the detached HEAD of ${repo} moved while the snapshot was taken (from ${head} to ${refs.headOid})`, {
      plugin: PLUGIN_TYPE,
    });
  }
  await refuseLeftOut(repo, before, refs.refs, signal);
  // The bundle's own ref list names the snapshot: a push between identify and now is in the
  // bundle, so the identity must be that of the bundle, not of the earlier look.
  return { identity: identityOf({ refs: refs.refs, head }) };
}

/**
 * `git bundle create --all` leaves a ref out of the bundle, and still succeeds, when the ref moves
 * while git walks the history (a push during the snapshot), or when its short name is ambiguous
 * (`refs/heads/main` beside `refs/heads/refs/heads/main`). A snapshot without it restores a
 * repository without that branch, and names itself after what it holds, so a later snapshot would
 * even take the repository for unchanged. Such a bundle is never stored. A ref deleted meanwhile
 * is no loss.
 */
async function refuseLeftOut(repo: string, before: Ref[], bundled: Ref[], signal?: AbortSignal): Promise<void> {
  const inBundle = new Set(bundled.map((ref) => ref.name));
  const missing = before.filter((ref) => !inBundle.has(ref.name));
  if (missing.length === 0) return;
  const now = new Map((await listRefs(repo, signal)).map((ref) => [ref.name, ref.oid]));
  const unchanged = missing.filter((ref) => now.get(ref.name) === ref.oid).map((ref) => ref.name);
  if (unchanged.length > 0) {
    throw new OperationError(
      `git bundle create left ${unchanged.join(', ')} of ${repo} out of the bundle although ${unchanged.length === 1 ? 'it' : 'they'} did not change; git does so for a ref whose short name another ref also has (refs/heads/main beside refs/heads/refs/heads/main, or a tag and a branch of one name): rename one of them (git --git-dir=${repo} branch -m ...), then snapshot again`,
      { plugin: PLUGIN_TYPE },
    );
  }
  const moved = missing.filter((ref) => now.has(ref.name)).map((ref) => ref.name);
  if (moved.length > 0) {
    throw new ChangedMeanwhileError(`${moved.join(', ')} of ${repo} moved while git wrote the bundle, and git left ${moved.length === 1 ? 'it' : 'them'} out of it`, {
      plugin: PLUGIN_TYPE,
    });
  }
}

