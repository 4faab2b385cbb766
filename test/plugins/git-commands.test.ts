/**
 * How the git-repository plugin runs git: every non-zero exit is a failure, also when git says
 * nothing on stderr (simple-git alone would take that for success).
 */
import { execa } from 'execa';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { PluginError } from '../../src/core/errors.js';
import { commandOutput, git } from '../../src/plugins/git/git.js';
import { useTempDir } from '../support/temp.js';

describe('git-repository runs git', () => {
  it('fails on a non-zero exit with an empty stderr, and names what it was doing', async () => {
    const repo = await useTempDir('dysnomia-git-cmd-');
    await execa('git', ['init', '--quiet', '--bare', repo]);
    const failed = await git(repo, ['rev-parse', '--verify', '--quiet', 'refs/heads/none'], 'looking for a branch').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(PluginError);
    expect((failed as PluginError).message).toContain('looking for a branch failed (git rev-parse --verify --quiet refs/heads/none)');
    expect((failed as PluginError).stderr).toContain('git exited with status 1');
    // A command that succeeds still returns its output.
    expect(await git(repo, ['rev-parse', '--is-bare-repository'], 'asking')).toBe('true\n');
  });

  it('reports what git printed on stdout when it fails there (git fsck names missing objects on stdout)', async () => {
    const repo = await useTempDir('dysnomia-git-cmd-');
    await execa('git', ['init', '--quiet', '--bare', repo]);
    const blob = (await execa('git', ['hash-object', '-w', '--stdin'], { cwd: repo, input: 'content\n' })).stdout;
    const tree = (await execa('git', ['mktree'], { cwd: repo, input: `100644 blob ${blob}\tfile\n` })).stdout;
    await execa('git', ['update-ref', 'refs/heads/main', (await execa('git', ['commit-tree', '-m', 'x', tree], {
      cwd: repo,
      env: { GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@e', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@e' },
    })).stdout], { cwd: repo });
    const { rm } = await import('node:fs/promises');
    await rm(`${repo}/objects/${blob.slice(0, 2)}/${blob.slice(2)}`, { force: true });
    const failed = await git(repo, ['fsck', '--no-progress', '--no-dangling'], 'checking').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(PluginError);
    expect((failed as PluginError).stderr).toContain(`missing blob ${blob}`);
  });

  it('leaves a failing command\'s output that nobody reads without an uncaught error, and reports it to a reader', async () => {
    const dir = await useTempDir('dysnomia-git-cmd-');
    // Not a repository: git fails at once. A snapshot cancelled before the store reads the bundle
    // leaves such a stream unread; before, its end was an uncaught exception.
    const unread = await commandOutput('git', ['bundle', 'create', '-', '--all'], 'bundling', { cwd: dir });
    await sleep(300);
    expect(unread.destroyed).toBe(true);
    const read = await commandOutput('git', ['bundle', 'create', '-', '--all'], 'bundling', { cwd: dir });
    const failure = await (async () => {
      for await (const chunk of read) void chunk;
    })().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(PluginError);
    expect((failure as PluginError).message).toContain('bundling failed (git bundle create - --all)');
  });

  it('a destroyed output stops the whole group, also a child that holds the pipe after the command has exited', async () => {
    const marker = `77.${Date.now() % 1_000_000}`;
    // The shell exits at once; its child (as pack-objects for git bundle) keeps writing to the pipe.
    const output = await commandOutput('sh', ['-c', `(sleep ${marker} &); echo started`], 'holding the pipe');
    const running = async () => (await execa('pgrep', ['-f', `sleep ${marker}`], { reject: false })).exitCode === 0;
    const first = await new Promise<Buffer>((resolve) => output.once('data', resolve));
    expect(String(first)).toContain('started');
    output.pause();
    await sleep(300); // the shell has exited by now
    output.destroy();
    const started = Date.now();
    while ((await running()) && Date.now() - started < 5000) await sleep(50);
    expect(await running()).toBe(false);
  });
});

