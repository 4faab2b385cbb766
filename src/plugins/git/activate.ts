/**
 * activate: creates the bare repository with the component's bundles as its initial content. The
 * repository is built beside its final place and renamed into it, so a failure leaves nothing.
 */
import { readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, DysnomiaError, OperationError } from '../../core/errors.js';
import type { PluginContext } from '../../core/plugin.js';
import { git } from './git.js';
import { type BundleHeader, type Ref, listRefs, objectFormat, readBundleHeader } from './identity.js';
import { assertRepositoryAt, baseDirError, ensureBaseDir, exists, fsyncDir, fsyncTree, recover, refuseDanglingLink, repositoryPath, tempPath } from './layout.js';
import { type GitRepositoryOptions, PLUGIN_TYPE } from './options.js';
import { shareWithGroup } from './permissions.js';

/** The folder of a component holding its initial content. */
export const BUNDLE_DIR = 'git-repositories';

/**
 * The component's bundles (`git-repositories/*.bundle`), sorted by name. Anything else in that
 * folder is a ConfigError naming it: a stray file there is a packaging mistake to fix, not to skip.
 */
export async function componentBundles(componentPath: string): Promise<string[]> {
  const dir = path.join(componentPath, BUNDLE_DIR);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    // ENOTDIR also when the component itself is a file: name that one, not a folder it cannot hold.
    const componentIsFile = code === 'ENOTDIR' && !(await stat(componentPath).then((info) => info.isDirectory(), () => false));
    throw new ConfigError(
      componentIsFile
        ? `the component is a file, not a folder; a ${PLUGIN_TYPE} component is a folder that may hold ${BUNDLE_DIR}/*.bundle`
        : code === 'ENOTDIR'
          ? 'is a file; it should be a folder of *.bundle files'
          : `cannot read it (${code})`,
      { file: componentIsFile ? componentPath : dir, plugin: PLUGIN_TYPE, cause: error },
    );
  }
  const bundles: string[] = [];
  for (const entry of entries.sort()) {
    const file = path.join(dir, entry);
    const isFile = await stat(file).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!entry.endsWith('.bundle') || !isFile) {
      throw new ConfigError(
        `not a git bundle: ${BUNDLE_DIR}/ may only hold *.bundle files (made with git bundle create); move it out of the component`,
        { file, plugin: PLUGIN_TYPE },
      );
    }
    bundles.push(file);
  }
  return bundles;
}

/** The branch HEAD should name after loading bundles: the one the bundle's HEAD pointed at. */
function chooseHead(refs: Ref[], defaultBranch: string, bundleHeads: string[]): string {
  const branches = refs.filter((ref) => ref.name.startsWith('refs/heads/'));
  const preferred = `refs/heads/${defaultBranch}`;
  for (const oid of bundleHeads) {
    const matching = branches.filter((ref) => ref.oid === oid);
    if (matching.length === 0) continue;
    return (matching.find((ref) => ref.name === preferred) ?? matching[0]!).name;
  }
  if (branches.length === 0 || branches.some((ref) => ref.name === preferred)) return preferred;
  return branches[0]!.name;
}

async function defaultBranch(dir: string, signal?: AbortSignal): Promise<string> {
  const configured = await git(dir, ['config', '--get', '--default', '', 'init.defaultBranch'], 'reading init.defaultBranch', signal);
  return configured.trim() || 'main';
}

/** Builds the repository in a temporary folder; returns nothing, renames it into place. */
async function build(staging: string, bundles: string[], ctx: PluginContext<GitRepositoryOptions>): Promise<void> {
  const { signal } = ctx;
  const baseDir = path.dirname(staging);
  const branch = await defaultBranch(baseDir, signal);
  const headers: BundleHeader[] = [];
  for (const bundle of bundles) headers.push(await readBundleHeader(bundle));
  const formats = new Set(headers.map((header) => header.objectFormat));
  if (formats.size > 1) {
    // git would say "pack is corrupted" or "unrecognized header" at the second one.
    const each = bundles.map((bundle, i) => `${path.basename(bundle)}: ${headers[i]!.objectFormat}`).join(', ');
    throw new OperationError(`the bundles of ${ctx.component.path} hold repositories of different object formats (${each}); one repository has one format: keep the bundles of one`, {
      plugin: PLUGIN_TYPE,
    });
  }
  const format = objectFormat(headers[0]);
  await git(baseDir, ['init', '--quiet', '--bare', `--initial-branch=${branch}`, ...format, staging], `creating ${staging}`, signal);
  const heads = headers.flatMap((header) => (header.headOid === undefined ? [] : [header.headOid]));
  for (const bundle of bundles) {
    ctx.log.info(`loading ${bundle}`);
    // Not --quiet: git then names the prerequisite commits a bundle lacks (an incremental one).
    await git(staging, ['bundle', 'verify', bundle], `verifying ${bundle}`, signal);
    await git(staging, ['fetch', '--quiet', '--no-write-fetch-head', bundle, '+refs/*:refs/*'], `loading ${bundle}`, signal);
  }
  const head = chooseHead(await listRefs(staging, signal), branch, heads);
  await git(staging, ['symbolic-ref', 'HEAD', head], `setting HEAD of ${staging}`, signal);
  if (ctx.options.group !== undefined) await shareWithGroup(staging, ctx.options.group, signal);
  await fsyncTree(staging);
}

/** activate: creates `<gitBaseDir>/<component>` unless it exists. */
export async function activate(ctx: PluginContext<GitRepositoryOptions>): Promise<void> {
  const repo = repositoryPath(ctx.options, ctx.component);
  const bundles = await componentBundles(ctx.component.path);
  await ensureBaseDir(ctx.options);
  await recover(repo, ctx.log);
  if (await exists(repo)) {
    await refuseDanglingLink(repo);
    if (!(await stat(repo)).isDirectory()) {
      throw new OperationError(`${repo} exists but is not a folder; move it away, then activate again`, {
        plugin: PLUGIN_TYPE,
      });
    }
    // Marked activated, a folder that is no repository would be replaced by the next restore.
    await assertRepositoryAt(repo, 'a restore of the component');
    ctx.log.info(`${repo} exists already; nothing to do`);
    return;
  }
  const staging = tempPath(repo, 'activate');
  try {
    await build(staging, bundles, ctx);
    await rename(staging, repo);
    await fsyncDir(ctx.options.baseDir);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (!(error instanceof DysnomiaError) && (error as NodeJS.ErrnoException).code !== undefined) {
      throw baseDirError(ctx.options, error);
    }
    throw error;
  }
  ctx.log.info(`created ${repo}${bundles.length > 0 ? ` from ${bundles.length} bundle(s)` : ' (empty)'}`);
}
