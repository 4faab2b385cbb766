/**
 * A git-repository component ready to run through the CLI: a working repository, a component
 * holding its bundle, a container file and a state dir, all in one temporary folder.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { type CliResult, runCli } from './cli.js';
import { type RepoSpec, makeBundle, makeWorkRepo } from './git.js';
import { useTempDir } from './temp.js';

export interface GitSetupOptions extends RepoSpec {
  /** The component's name (its folder's basename). Default `project`. */
  name?: string;
  /** Extra container properties, e.g. gitGroup. */
  properties?: Record<string, string>;
  /** Leave the component without a bundle (an empty repository on activate). */
  noBundle?: boolean;
}

export interface GitSetup {
  /** The temporary folder holding everything below. */
  dir: string;
  /** A working repository with the initial content; push from it to change the component. */
  work: string;
  /** The component folder (with git-repositories/initial.bundle unless noBundle). */
  component: string;
  containerFile: string;
  containerName: string;
  stateDir: string;
  baseDir: string;
  /** The live bare repository: `<baseDir>/<name>`. */
  repo: string;
  /** Runs `dysnomia --operation <operation>` on this component. */
  run(operation: string, extraArgs?: string[]): Promise<CliResult>;
  /** Like run, and expects exit 0. */
  ok(operation: string): Promise<CliResult>;
  /** The generation numbers in the state dir, ascending. */
  generations(): Promise<string[]>;
}

/** Builds a git-repository component, container and state dir in a test's temporary folder. */
export async function gitSetup(options: GitSetupOptions = {}): Promise<GitSetup> {
  const dir = await useTempDir('dysnomia-git-');
  const name = options.name ?? 'project';
  const work = await makeWorkRepo(path.join(dir, 'work'), options);
  const component = path.join(dir, 'components', name);
  if (options.noBundle) {
    await mkdir(component, { recursive: true });
  } else {
    await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  }
  const baseDir = path.join(dir, 'repos');
  const containerFile = path.join(dir, 'git-container');
  const properties = { type: 'git-repository', gitBaseDir: baseDir, ...options.properties };
  await writeFile(containerFile, Object.entries(properties).map(([k, v]) => `${k}=${v}\n`).join(''));
  const stateDir = path.join(dir, 'state');
  const run = (operation: string, extraArgs: string[] = []) =>
    runCli('dysnomia', ['--operation', operation, '--component', component, '--container', containerFile, ...extraArgs], {
      env: { DYSNOMIA_STATEDIR: stateDir },
    });
  return {
    dir,
    work,
    component,
    containerFile,
    containerName: path.basename(containerFile),
    stateDir,
    baseDir,
    repo: path.join(baseDir, name),
    run,
    async ok(operation) {
      const result = await run(operation);
      expect(result.exitCode, `${operation} failed:\n${result.stderr}`).toBe(0);
      return result;
    },
    async generations() {
      try {
        const entries = await readdir(path.join(stateDir, 'generations', path.basename(containerFile), name));
        return entries.sort((a, b) => Number(a) - Number(b));
      } catch {
        return [];
      }
    },
  };
}
