/**
 * `npm run demo` (node dist/demo.js): it must run with no database server, do each step for real,
 * and clean up after itself.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it, onTestFinished } from 'vitest';
import { removeDir } from './support/temp.js';

const DEMO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../dist/demo.js');

/** Runs the demo with only PATH and HOME set: no database URL, no DYSNOMIA_* from the caller. */
function runDemo(args: string[] = []) {
  return execa(process.execPath, [DEMO, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME },
    extendEnv: false,
    reject: false,
    timeout: 120_000,
  });
}

function workingDir(stdout: string): string {
  const match = /^Working in (\S+)$/m.exec(stdout);
  expect(match, stdout).not.toBeNull();
  return match![1]!;
}

async function git(repo: string, ...args: string[]): Promise<string> {
  return (await execa('git', args, { cwd: repo })).stdout;
}

describe('npm run demo', () => {
  it('activates, snapshots, damages and restores a real repository, step by step', async () => {
    const result = await runDemo(['--keep']);
    const dir = workingDir(result.stdout);
    onTestFinished(() => removeDir(dir));
    expect(result.exitCode, `${result.stdout}\n${result.stderr}`).toBe(0);
    expect(result.stdout).toContain('Demo finished: every step did what it said.');
    for (const step of ['Activate', 'Snapshot: the first generation', 'Accident', 'Restore']) expect(result.stdout).toContain(step);
    expect(result.stdout).toContain('$ dysnomia --operation restore --component ./components/website --container ./containers/git-repos');

    // What the demo claims, checked independently on what it left behind.
    const repo = path.join(dir, 'repos', 'website');
    expect(await git(repo, 'log', '--format=%s', 'main')).toBe(
      ['Link the contact page', 'Add contact page', 'Add style', 'Add home page'].join('\n'),
    );
    expect(await git(repo, 'tag', '--list')).toBe('v1.1');
    expect(await git(repo, 'rev-parse', 'main')).toBe(await git(path.join(dir, 'work'), 'rev-parse', 'v1.1^{commit}'));
    expect(await readdir(path.join(dir, 'state', 'generations', 'git-repos', 'website'))).toEqual(['1', '2']);
    expect((await stat(path.join(dir, 'state', 'activated', 'git-repos', 'website'))).isFile()).toBe(true);
  });

  it('removes its temporary folder without --keep', async () => {
    const result = await runDemo();
    expect(result.exitCode, `${result.stdout}\n${result.stderr}`).toBe(0);
    const dir = workingDir(result.stdout);
    expect(result.stdout).toContain(`Removed ${dir}.`);
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
  });
});
