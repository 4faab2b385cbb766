/**
 * The library API on one component, with a real git-repository component (no server needed):
 * the container forms, the structured result, typed errors, cancellation before the start.
 */
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { useTempDir } from '../support/temp.js';

async function gitComponent(name = 'project') {
  const dir = await useTempDir('dysnomia-api-');
  const work = await makeWorkRepo(path.join(dir, 'work'), { commits: 2 });
  const component = path.join(dir, 'components', name);
  await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  const baseDir = path.join(dir, 'repos');
  return { dir, work, component, baseDir, stateDir: path.join(dir, 'state'), repo: path.join(baseDir, name) };
}

describe('library API: callers that do not keep the rules', () => {
  it('a throwing onProgress is reported once and the restore still finishes', async () => {
    const c = await gitComponent();
    const container = { type: 'git-repository', gitBaseDir: c.baseDir };
    await dysnomia.activate({ container, component: c.component, stateDir: c.stateDir });
    await dysnomia.snapshot({ container, component: c.component, stateDir: c.stateDir });
    const before = await refs(c.repo);
    await rm(c.repo, { recursive: true });
    const warnings: string[] = [];
    const recording: dysnomia.Logger = { info: () => {}, debug: () => {}, warn: (message) => warnings.push(message), child: () => recording };
    let calls = 0;
    const result = await dysnomia.restore({
      container,
      component: c.component,
      stateDir: c.stateDir,
      log: recording,
      onProgress: () => {
        calls += 1;
        throw new Error('callback bug');
      },
    });
    expect(result.status).toBe('done');
    expect(await refs(c.repo)).toBe(before);
    expect(calls).toBe(1);
    // Again, with nothing to do: skipped, as the result's status says for every operation.
    const again = await dysnomia.restore({ container, component: c.component, stateDir: c.stateDir });
    expect(again.status).toBe('skipped');
    expect(again.message).toContain('nothing restored');
    expect(warnings.join('\n')).toContain('the onProgress callback threw (callback bug); it is not called again');
  });

  it('refuses a lock timeout that is not a number of milliseconds >= 0, and names it', async () => {
    const c = await gitComponent();
    const container = { type: 'git-repository', gitBaseDir: c.baseDir };
    for (const lockTimeoutMs of [-1, Number.NaN, 'x' as unknown as number]) {
      const error = await dysnomia.activate({ container, component: c.component, stateDir: c.stateDir, lockTimeoutMs }).catch((e: unknown) => e);
      expect(error, String(lockTimeoutMs)).toBeInstanceOf(dysnomia.UsageError);
      expect((error as Error).message).toContain(`lock timeout ${String(lockTimeoutMs)}: expected a number of milliseconds >= 0`);
    }
    expect(existsSync(c.repo)).toBe(false);
  });

  it('narrows store queries only to names the CLI accepts for -C and -c', async () => {
    const c = await gitComponent();
    for (const filter of [{ container: '../..' }, { component: 'a/b' }]) {
      const error = await dysnomia.latestSnapshots({ stateDir: c.stateDir, ...filter }).catch((e: unknown) => e);
      expect(error, JSON.stringify(filter)).toBeInstanceOf(dysnomia.ConfigError);
      expect((error as Error).message).toContain('is not a usable');
    }
  });

  it('says where the properties of a container given as an object came from: not the environment', async () => {
    const c = await gitComponent();
    const error = await dysnomia
      .activate({ container: { type: 'postgresql-database', postgresqlPort: '0' }, component: c.component, stateDir: c.stateDir })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.ConfigError);
    expect((error as Error).message).toContain('(no container file: set in the environment, or given as properties)');
    const printed: string[] = [];
    await dysnomia.lock({ container: { type: 'echo' }, component: c.component, stateDir: c.stateDir, print: (text) => printed.push(text) });
    expect(printed.join('')).toContain('container: echo (given as properties)');
  });

  it('refuses an unknown operation before it takes any lock', async () => {
    const c = await gitComponent();
    const error = await dysnomia
      .run('frobnicate' as dysnomia.ComponentOperation, { container: { type: 'git-repository', gitBaseDir: c.baseDir }, component: c.component, stateDir: c.stateDir })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.UsageError);
    expect((error as Error).message).toContain('unknown operation "frobnicate"');
    expect(existsSync(c.stateDir)).toBe(false);
  });

  it('collectGarbage refuses while a container given as properties (no file to compare) has the component activated', async () => {
    const c = await gitComponent();
    const container = (name: string) => ({ properties: { type: 'git-repository', gitBaseDir: c.baseDir }, name });
    for (const name of ['A', 'B']) await dysnomia.activate({ container: container(name), component: c.component, stateDir: c.stateDir });
    await dysnomia.deactivate({ container: container('A'), component: c.component, stateDir: c.stateDir });
    const before = await refs(c.repo);
    const error = await dysnomia.collectGarbage({ container: container('A'), component: c.component, stateDir: c.stateDir }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.OperationError);
    expect((error as Error).message).toContain('not collecting A/project: B/project is activated, and whether it keeps its data in the same place');
    expect(await refs(c.repo)).toBe(before);
  });
});

describe('library API: one component', () => {
  it('activates with a container given as properties; its name in the state dir is the type', async () => {
    const c = await gitComponent();
    const result = await dysnomia.activate({
      container: { type: 'git-repository', gitBaseDir: c.baseDir },
      component: c.component,
      stateDir: c.stateDir,
    });
    expect(result).toMatchObject({
      operation: 'activate',
      container: 'git-repository',
      component: 'project',
      status: 'done',
      bytesRead: 0,
      bytesStored: 0,
    });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
    expect(await refs(c.repo)).toBe(await refs(c.work));
    expect(existsSync(path.join(c.stateDir, 'activated', 'git-repository', 'project'))).toBe(true);
    expect(await dysnomia.listActivatedComponents({ stateDir: c.stateDir })).toEqual([
      { container: 'git-repository', component: 'project' },
    ]);
  });

  it('takes { properties, name } to choose the container name, and a container file path', async () => {
    const c = await gitComponent();
    const named = await dysnomia.activate({
      container: { properties: { type: 'git-repository', gitBaseDir: c.baseDir }, name: 'git-production' },
      component: c.component,
      stateDir: c.stateDir,
    });
    expect(named.container).toBe('git-production');

    const file = path.join(c.dir, 'git-staging');
    await writeFile(file, `type=git-repository\ngitBaseDir=${path.join(c.dir, 'staging-repos')}\n`);
    const fromFile = await dysnomia.run('activate', { container: file, component: c.component, stateDir: c.stateDir });
    expect(fromFile.container).toBe('git-staging');
    expect(existsSync(path.join(c.dir, 'staging-repos', 'project'))).toBe(true);
    expect(await dysnomia.listActivatedComponents({ stateDir: c.stateDir })).toEqual([
      { container: 'git-production', component: 'project' },
      { container: 'git-staging', component: 'project' },
    ]);

    const deactivated = await dysnomia.deactivate({ container: file, component: c.component, stateDir: c.stateDir });
    expect(deactivated.status).toBe('done');
    expect(await dysnomia.listGarbageComponents({ stateDir: c.stateDir })).toEqual([
      { container: 'git-staging', component: 'project' },
    ]);
    // git-production, given as properties, has no file to compare: while its project is
    // activated, collecting git-staging's is refused (see the test above); deactivated, it is not.
    await dysnomia.deactivate({ container: { properties: { type: 'git-repository', gitBaseDir: c.baseDir }, name: 'git-production' }, component: c.component, stateDir: c.stateDir });
    const collected = await dysnomia.collectGarbage({ container: file, component: c.component, stateDir: c.stateDir });
    expect(collected.status).toBe('done');
    expect(existsSync(path.join(c.dir, 'staging-repos', 'project'))).toBe(false);
    // Collecting again has nothing to do: a structured "skipped", not an error.
    const again = await dysnomia.collectGarbage({ container: file, component: c.component, stateDir: c.stateDir });
    expect(again.status).toBe('skipped');
  });

  it('throws ConfigError naming the key of a bad container, and changes nothing', async () => {
    const c = await gitComponent();
    const error = await dysnomia
      .activate({ container: { type: 'git-repository', gitBaseDir: 'relative/path' }, component: c.component, stateDir: c.stateDir })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.ConfigError);
    expect((error as dysnomia.ConfigError).key).toBe('gitBaseDir');
    expect((error as dysnomia.ConfigError).exitCode).toBe(dysnomia.EXIT_USAGE);
    expect(existsSync(c.stateDir)).toBe(false);

    const noType = await dysnomia.activate({ container: { gitBaseDir: c.baseDir }, component: c.component }).catch((e: unknown) => e);
    expect(noType).toBeInstanceOf(dysnomia.ConfigError);
    expect((noType as Error).message).toContain('no type given');

    const missing = await dysnomia
      .activate({ container: { type: 'git-repository', gitBaseDir: c.baseDir }, component: path.join(c.dir, 'nope'), stateDir: c.stateDir })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(dysnomia.ConfigError);
    expect((missing as Error).message).toContain(`component path does not exist: ${path.join(c.dir, 'nope')}`);
  });

  it('refuses the shell operation with a UsageError (it has describeComponentShell)', async () => {
    const c = await gitComponent();
    const options = { container: { type: 'git-repository', gitBaseDir: c.baseDir }, component: c.component };
    await expect(dysnomia.run('shell' as dysnomia.ComponentOperation, options)).rejects.toBeInstanceOf(dysnomia.UsageError);
    const shell = await dysnomia.describeComponentShell(options);
    expect(shell.module).toBe('git-repository');
    expect(shell.help.join('\n')).toContain(c.repo);
  });

  it('does nothing when the signal has already fired: AbortedError, no repository, no marker', async () => {
    const c = await gitComponent();
    const controller = new AbortController();
    controller.abort();
    const error = await dysnomia
      .activate({
        container: { type: 'git-repository', gitBaseDir: c.baseDir },
        component: c.component,
        stateDir: c.stateDir,
        signal: controller.signal,
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.AbortedError);
    expect(existsSync(c.repo)).toBe(false);
    expect(await dysnomia.listActivatedComponents({ stateDir: c.stateDir })).toEqual([]);
  });
});
