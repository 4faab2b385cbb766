/**
 * Helpers for the tests of the core and the `dysnomia` program: a stage (a temporary state dir,
 * component and container file), external fixture modules installed into a modules folder, and the
 * call log the recorder module writes.
 */
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type CliOptions, type CliResult, runCli } from './cli.js';
import { useTempDir } from './temp.js';

/** The folder of the fixture modules (test/fixtures/modules). */
export const MODULES_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/modules');

/** The folder of the fixture container files (test/fixtures/containers). */
export const CONTAINERS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/containers');

/** A temporary world for one test. Every path is absolute and inside `root`. */
export interface Stage {
  root: string;
  /** DYSNOMIA_STATEDIR for this test (not created until something writes to it). */
  stateDir: string;
  /** A component folder (`<root>/components/testcomp`). */
  component: string;
  /** A folder for modules, to put in DYSNOMIA_MODULES_PATH. */
  modulesDir: string;
  /** Where the recorder module appends its calls (the `recordTo` property). */
  log: string;
  /** Environment for runCli: DYSNOMIA_STATEDIR and DYSNOMIA_MODULES_PATH. */
  env: Record<string, string>;
  /** Writes a container file under `<root>/containers/<name>` and returns its path. */
  container(name: string, text: string): Promise<string>;
  /** Copies a fixture module into the modules folder (executable unless told) and returns its path. */
  module(fixture: string, options?: { as?: string; mode?: number }): Promise<string>;
  /** Runs `dysnomia` with this stage's environment (plus `options.env`). */
  dysnomia(args: string[], options?: CliOptions): Promise<CliResult>;
}

/** Makes a stage in a folder removed when the test finishes. Call inside a test. */
export async function useStage(): Promise<Stage> {
  const root = await useTempDir('dysnomia-core-');
  const stateDir = path.join(root, 'state');
  const component = path.join(root, 'components', 'testcomp');
  const modulesDir = path.join(root, 'modules');
  const log = path.join(root, 'calls.log');
  await mkdir(component, { recursive: true });
  await mkdir(modulesDir, { recursive: true });
  await mkdir(path.join(root, 'containers'), { recursive: true });
  const env = { DYSNOMIA_STATEDIR: stateDir, DYSNOMIA_MODULES_PATH: modulesDir };
  return {
    root,
    stateDir,
    component,
    modulesDir,
    log,
    env,
    async container(name, text) {
      const file = path.join(root, 'containers', name);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, text);
      return file;
    },
    async module(fixture, options = {}) {
      const target = path.join(modulesDir, options.as ?? fixture);
      await copyFile(path.join(MODULES_DIR, fixture), target);
      await chmod(target, options.mode ?? 0o755);
      return target;
    },
    dysnomia(args, options = {}) {
      return runCli('dysnomia', args, { cwd: root, ...options, env: { ...env, ...options.env } });
    },
  };
}

/** One call of the recorder module: its arguments and environment. */
export interface RecordedCall {
  args: string[];
  env: Record<string, string>;
}

/** The calls the recorder module logged, oldest first (none when it never ran). */
export async function recordedCalls(log: string): Promise<RecordedCall[]> {
  let text: string;
  try {
    text = await readFile(log, 'utf8');
  } catch {
    return [];
  }
  const calls: RecordedCall[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('call\t')) {
      calls.push({ args: line.split('\t').slice(2), env: {} });
    } else if (line.startsWith('env\t')) {
      const entry = line.slice('env\t'.length);
      const equals = entry.indexOf('=');
      calls.at(-1)!.env[entry.slice(0, equals)] = entry.slice(equals + 1);
    }
  }
  return calls;
}

/** The operations the recorder module was called with, in order. */
export async function recordedOperations(log: string): Promise<string[]> {
  return (await recordedCalls(log)).map((call) => call.args[0]!);
}

/**
 * Every entry under `dir` with its kind and content (file text, link target), sorted: equal
 * before and after means nothing changed. A missing folder gives `{}`. `locks/` (lock files come
 * and go with every operation) is left out unless `withLocks` is set.
 */
export async function tree(dir: string, withLocks = false): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  async function walk(relative: string): Promise<void> {
    let entries: string[];
    try {
      entries = (await readdir(path.join(dir, relative))).sort();
    } catch {
      return;
    }
    for (const entry of entries) {
      const rel = path.join(relative, entry);
      if (!withLocks && rel === 'locks') continue;
      const full = path.join(dir, rel);
      const info = await lstat(full);
      if (info.isSymbolicLink()) out[rel] = `link ${await readlink(full)}`;
      else if (info.isDirectory()) {
        out[rel] = 'dir';
        await walk(rel);
      } else out[rel] = `file ${await readFile(full, 'utf8')}`;
    }
  }
  await walk('');
  return out;
}

/** The marker files of the state dir, e.g. `['activated/cont/comp']`. */
export async function markers(stateDir: string): Promise<string[]> {
  const all = await tree(stateDir);
  return Object.keys(all)
    .filter((entry) => /^(activated|garbage)\/[^/]+\/[^/]+$/.test(entry) && all[entry]!.startsWith('file'))
    .sort();
}

/** The lock holder files left in the state dir (each holder is a file inside a lock's folder). */
export async function lockHolders(stateDir: string): Promise<string[]> {
  const locks = path.join(stateDir, 'locks');
  const folders = await readdir(locks).catch(() => []);
  const holders = await Promise.all(folders.map(async (folder) => (await readdir(path.join(locks, folder))).map((f) => `${folder}/${f}`)));
  return holders.flat();
}
