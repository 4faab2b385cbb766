/**
 * How `dysnomia` finds the container and the component, as Dysnomia does. The recorder module
 * shows what reached it (`<operation> <component path> <container name>`); the state dir shows
 * the names used for the markers.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { markers, recordedCalls, type Stage, useStage } from '../support/core.js';

const HASH = '0123456789abcdfghijklmnpqrsvwxyz';

/** A stage with the recorder installed; `text` is a container file body using it. */
async function recorderStage(): Promise<{ stage: Stage; text: string }> {
  const stage = await useStage();
  await stage.module('recorder');
  return { stage, text: `type=recorder\nrecordTo=${stage.log}\n` };
}

async function lastArgs(stage: Stage): Promise<string[]> {
  return (await recordedCalls(stage.log)).at(-1)!.args;
}

describe('container resolution', () => {
  it('by absolute path', async () => {
    const { stage, text } = await recorderStage();
    const file = await stage.container('prod', text);
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', stage.component, 'prod']);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);
  });

  it('by ./relative and ../relative path, from the working folder', async () => {
    const { stage, text } = await recorderStage();
    await stage.container('prod', text);
    const here = await stage.dysnomia(['-o', 'lock', '-c', stage.component, '-C', './containers/prod']);
    expect(here.exitCode, here.stderr).toBe(0);
    const up = await stage.dysnomia(['-o', 'unlock', '-c', stage.component, '-C', '../containers/prod'], {
      cwd: stage.modulesDir,
    });
    expect(up.exitCode, up.stderr).toBe(0);
    expect((await recordedCalls(stage.log)).map((call) => call.args)).toEqual([
      ['lock', stage.component, 'prod'],
      ['unlock', stage.component, 'prod'],
    ]);
  });

  it('by name in DYSNOMIA_CONTAINERS_PATH: several folders, the first holding it wins', async () => {
    const { stage, text } = await recorderStage();
    const dirs = ['first', 'second', 'third'].map((name) => path.join(stage.root, name));
    for (const dir of dirs) await mkdir(dir);
    await writeFile(path.join(dirs[1]!, 'prod'), `${text}which=second\n`);
    await writeFile(path.join(dirs[2]!, 'prod'), `${text}which=third\n`);
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', 'prod'], {
      env: { DYSNOMIA_CONTAINERS_PATH: dirs.join(':') },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    const call = (await recordedCalls(stage.log)).at(-1)!;
    expect(call.args).toEqual(['activate', stage.component, 'prod']);
    expect(call.env.which).toBe('second');
  });

  it('by name, with DYSNOMIA_CONTAINERS_PATH unset or empty: searched in /etc/dysnomia/containers', async () => {
    const stage = await useStage();
    const name = `surely-absent-${path.basename(stage.root)}`;
    for (const env of [{ DYSNOMIA_CONTAINERS_PATH: undefined }, { DYSNOMIA_CONTAINERS_PATH: '' }]) {
      const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', name], { env });
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(`no container file named "${name}" in DYSNOMIA_CONTAINERS_PATH (/etc/dysnomia/containers)`);
    }
  });

  it('a container file in the Nix store is named without its hash', async () => {
    const { stage, text } = await recorderStage();
    const store = path.join(stage.root, 'store');
    await mkdir(store);
    const file = path.join(store, `${HASH}-mysql-production`);
    await writeFile(file, text);
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file], { env: { NIX_STORE_DIR: store } });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', stage.component, 'mysql-production']);
    expect(await markers(stage.stateDir)).toEqual(['activated/mysql-production/testcomp']);
  });

  it('--type is used only when the container file names no type', async () => {
    const { stage, text } = await recorderStage();
    const untyped = await stage.container('untyped', `recordTo=${stage.log}\n`);
    const typed = await stage.container('typed', text);
    const fallback = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', untyped, '-t', 'recorder']);
    expect(fallback.exitCode, fallback.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', stage.component, 'untyped']);
    const ignored = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', typed, '--type', 'echo']);
    expect(ignored.exitCode, ignored.stderr).toBe(0);
    expect(ignored.stdout).toContain('recorder: activate');
  });
});

describe('--environment', () => {
  it('takes the properties from the environment and names the container after the type', async () => {
    const { stage } = await recorderStage();
    for (const flag of ['--environment', '-E']) {
      const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, flag, '-t', 'recorder'], {
        env: { recordTo: stage.log, mysqlUsername: 'from-env' },
      });
      expect(result.exitCode, result.stderr).toBe(0);
      const call = (await recordedCalls(stage.log)).at(-1)!;
      expect(call.args).toEqual(['activate', stage.component, 'recorder']);
      expect(call.env.mysqlUsername).toBe('from-env');
    }
    expect(await markers(stage.stateDir)).toEqual(['activated/recorder/testcomp']);
  });

  it('names the container after the base name of a module given as a path', async () => {
    const { stage } = await recorderStage();
    const modulePath = path.join(stage.env.DYSNOMIA_MODULES_PATH!, 'recorder');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-E', '-t', modulePath], {
      env: { recordTo: stage.log },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', stage.component, 'recorder']);
    expect(await markers(stage.stateDir)).toEqual(['activated/recorder/testcomp']);
  });

  it('with --container as well, the container is named after that argument', async () => {
    const { stage } = await recorderStage();
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-E', '-t', 'recorder', '-C', 'staging'], {
      env: { recordTo: stage.log },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', stage.component, 'staging']);
    expect(await markers(stage.stateDir)).toEqual(['activated/staging/testcomp']);
  });
});

describe('component resolution', () => {
  it('by absolute and ./relative path', async () => {
    const { stage, text } = await recorderStage();
    const file = await stage.container('prod', text);
    await stage.dysnomia(['-o', 'lock', '-c', stage.component, '-C', file]);
    await stage.dysnomia(['-o', 'unlock', '-c', './components/testcomp', '-C', file]);
    expect((await recordedCalls(stage.log)).map((call) => call.args[1])).toEqual([stage.component, stage.component]);
  });

  it('by name, as <dir>/<container>/<component> in DYSNOMIA_COMPONENTS_PATH; the first folder wins', async () => {
    const { stage, text } = await recorderStage();
    const file = await stage.container('prod', text);
    const dirs = ['one', 'two', 'three'].map((name) => path.join(stage.root, name));
    await mkdir(path.join(dirs[0]!, 'other-container', 'testdb'), { recursive: true });
    await mkdir(path.join(dirs[1]!, 'prod', 'testdb'), { recursive: true });
    await mkdir(path.join(dirs[2]!, 'prod', 'testdb'), { recursive: true });
    const result = await stage.dysnomia(['-o', 'activate', '-c', 'testdb', '-C', file], {
      env: { DYSNOMIA_COMPONENTS_PATH: dirs.join(':') },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', path.join(dirs[1]!, 'prod', 'testdb'), 'prod']);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testdb']);
  });

  it('by name with --environment: searched under the type', async () => {
    const { stage } = await recorderStage();
    const dir = path.join(stage.root, 'components-by-type');
    await mkdir(path.join(dir, 'recorder', 'testdb'), { recursive: true });
    const result = await stage.dysnomia(['-o', 'activate', '-c', 'testdb', '-E', '-t', 'recorder'], {
      env: { DYSNOMIA_COMPONENTS_PATH: dir, recordTo: stage.log },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', path.join(dir, 'recorder', 'testdb'), 'recorder']);
  });

  it('by name, with DYSNOMIA_COMPONENTS_PATH unset: searched in /etc/dysnomia/components', async () => {
    const { stage, text } = await recorderStage();
    const file = await stage.container('prod', text);
    const name = `surely-absent-${path.basename(stage.root)}`;
    const result = await stage.dysnomia(['-o', 'activate', '-c', name, '-C', file], { env: { DYSNOMIA_COMPONENTS_PATH: undefined } });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`no component named "${name}" for container "prod" in DYSNOMIA_COMPONENTS_PATH (/etc/dysnomia/components/prod)`);
  });

  it('a component in the Nix store is named without its hash', async () => {
    const { stage, text } = await recorderStage();
    const file = await stage.container('prod', text);
    const store = path.join(stage.root, 'store');
    const component = path.join(store, `${HASH}-testdb`);
    await mkdir(component, { recursive: true });
    const result = await stage.dysnomia(['-o', 'activate', '-c', component, '-C', file], { env: { NIX_STORE_DIR: store } });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', component, 'prod']);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testdb']);
  });

  it('a symlinked component resolves like readlink -f: the module gets the target, named without its hash', async () => {
    const { stage, text } = await recorderStage();
    const file = await stage.container('prod', text);
    const store = path.join(stage.root, 'store');
    const real = path.join(store, `${HASH}-testdb`);
    await mkdir(real, { recursive: true });
    const profile = path.join(stage.root, 'profile');
    await mkdir(profile);
    await symlink(real, path.join(profile, 'testdb'));
    await symlink(path.join(profile, 'testdb'), path.join(profile, 'link-to-link'));
    const result = await stage.dysnomia(['-o', 'activate', '-c', path.join(profile, 'link-to-link'), '-C', file], {
      env: { NIX_STORE_DIR: store },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await lastArgs(stage)).toEqual(['activate', real, 'prod']);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testdb']);
  });
});
