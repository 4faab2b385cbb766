/**
 * The dispatcher's rules, through the library with small plugins written here (plugins are the
 * extension point, so a test plugin is a real one): which operations reach the plugin, and how the
 * activated/garbage markers follow. The same rules through the CLI and real external modules are
 * in test/cli/dysnomia-markers.test.ts.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeShell, type OperationRequest, prepare, runOperation } from '../../src/core/dispatcher.js';
import { loadPlugin } from '../../src/core/registry.js';
import { ConfigError, OperationError, PluginError } from '../../src/core/errors.js';
import type { Operation, PassThroughPlugin, Plugin } from '../../src/core/plugin.js';
import { markActive, markGarbage } from '../../src/core/state-dir.js';
import { markers, tree } from '../support/core.js';
import { useTempDir } from '../support/temp.js';
import { recordingLogger } from '../store/helpers.js';

interface Recording {
  calls: string[];
}

/** A typed plugin with only the required operations; `fail` names operations that throw. */
function minimalPlugin(recording: Recording, fail: string[] = []): Plugin<{ host: string }> {
  const act = (operation: string) => async () => {
    recording.calls.push(operation);
    if (fail.includes(operation)) throw new PluginError(`${operation} refused`, { plugin: 'minimal' });
  };
  return {
    type: 'minimal',
    parseOptions(properties, file) {
      if (typeof properties.host !== 'string') throw new ConfigError('host is required', { file, key: 'host' });
      return { host: properties.host };
    },
    activate: act('activate'),
    snapshot: act('snapshot'),
    restore: act('restore'),
    collectGarbage: act('collect-garbage'),
  };
}

async function setup() {
  const root = await useTempDir();
  const stateDir = path.join(root, 'state');
  const componentPath = path.join(root, 'testcomp');
  await mkdir(componentPath);
  const key = { container: 'prod', component: 'testcomp' };
  const request = (operation: Operation, plugin: Plugin<never> | PassThroughPlugin | Plugin<{ host: string }>, properties: Record<string, string> = { type: 'minimal', host: 'h' }): OperationRequest => ({
    operation,
    plugin,
    stateDir,
    container: { name: 'prod', type: String(properties.type), properties, fromEnvironment: false, file: path.join(root, 'prod') },
    component: { name: 'testcomp', path: componentPath },
  });
  return { root, stateDir, key, request };
}

describe('runOperation with a typed plugin', () => {
  it('activate calls the plugin, then marks the component active', async () => {
    const { stateDir, request } = await setup();
    const recording: Recording = { calls: [] };
    const result = await runOperation(request('activate', minimalPlugin(recording)));
    expect(recording.calls).toEqual(['activate']);
    expect(result).toMatchObject({ operation: 'activate', container: 'prod', component: 'testcomp', status: 'done' });
    expect(await markers(stateDir)).toEqual(['activated/prod/testcomp']);
  });

  it('default lock and unlock succeed and do nothing', async () => {
    const { stateDir, key, request } = await setup();
    await markActive(stateDir, key);
    const before = await tree(stateDir);
    const recording: Recording = { calls: [] };
    for (const operation of ['lock', 'unlock'] as const) {
      const result = await runOperation(request(operation, minimalPlugin(recording)));
      expect(result.status).toBe('done');
    }
    expect(recording.calls).toEqual([]);
    expect(await tree(stateDir)).toEqual(before);
  });

  it('lock and unlock reach a plugin that has them, and a refusal fails the operation', async () => {
    const { request } = await setup();
    const calls: string[] = [];
    const plugin: Plugin<{ host: string }> = {
      ...minimalPlugin({ calls }),
      lock: async () => {
        calls.push('lock');
        throw new PluginError('busy, try later', { plugin: 'minimal' });
      },
      unlock: async () => {
        calls.push('unlock');
      },
    };
    await expect(runOperation(request('lock', plugin))).rejects.toThrow('busy, try later');
    await runOperation(request('unlock', plugin));
    expect(calls).toEqual(['lock', 'unlock']);
  });

  it('default deactivate only moves the mark to garbage; a second deactivate is a no-op', async () => {
    const { stateDir, key, request } = await setup();
    await markActive(stateDir, key);
    const recording: Recording = { calls: [] };
    const first = await runOperation(request('deactivate', minimalPlugin(recording)));
    expect(first.status).toBe('done');
    expect(await markers(stateDir)).toEqual(['garbage/prod/testcomp']);
    const before = await tree(stateDir);
    const second = await runOperation(request('deactivate', minimalPlugin(recording)));
    expect(second.status).toBe('skipped');
    expect(second.message).toMatch(/already deactivated/);
    expect(await tree(stateDir)).toEqual(before);
    expect(recording.calls).toEqual([]);
  });

  it('a plugin deactivate is called only for an activated component', async () => {
    const { stateDir, key, request } = await setup();
    const calls: string[] = [];
    const plugin: Plugin<{ host: string }> = {
      ...minimalPlugin({ calls }),
      deactivate: async () => {
        calls.push('deactivate');
      },
    };
    const never = await runOperation(request('deactivate', plugin));
    expect(never.status).toBe('skipped');
    expect(never.message).toMatch(/not activated/);
    expect(await tree(stateDir)).toEqual({});
    await markActive(stateDir, key);
    await runOperation(request('deactivate', plugin));
    await runOperation(request('deactivate', plugin));
    expect(calls).toEqual(['deactivate']);
  });

  it('collect-garbage acts only on a component marked as garbage, then clears the mark', async () => {
    const { stateDir, key, request } = await setup();
    const recording: Recording = { calls: [] };
    await markActive(stateDir, key);
    const active = await runOperation(request('collect-garbage', minimalPlugin(recording)));
    expect(active.status).toBe('skipped');
    expect(recording.calls).toEqual([]);
    expect(await markers(stateDir)).toEqual(['activated/prod/testcomp']);

    await markGarbage(stateDir, key);
    const collected = await runOperation(request('collect-garbage', minimalPlugin(recording)));
    expect(collected.status).toBe('done');
    expect(recording.calls).toEqual(['collect-garbage']);
    expect(await markers(stateDir)).toEqual([]);

    const again = await runOperation(request('collect-garbage', minimalPlugin(recording)));
    expect(again.status).toBe('skipped');
    expect(recording.calls).toEqual(['collect-garbage']);
  });

  it('a failing plugin leaves the markers as they were', async () => {
    const { stateDir, key, request } = await setup();
    const failing = minimalPlugin({ calls: [] }, ['activate', 'collect-garbage']);
    await expect(runOperation(request('activate', failing))).rejects.toBeInstanceOf(PluginError);
    expect(await tree(stateDir)).toEqual({});

    await markActive(stateDir, key);
    await markGarbage(stateDir, key);
    const before = await tree(stateDir);
    await expect(runOperation(request('activate', failing))).rejects.toThrow('activate refused');
    await expect(runOperation(request('collect-garbage', failing))).rejects.toThrow('collect-garbage refused');
    expect(await tree(stateDir)).toEqual(before);

    const deactivating: Plugin<{ host: string }> = {
      ...minimalPlugin({ calls: [] }),
      deactivate: async () => {
        throw new PluginError('cannot stop', { plugin: 'minimal' });
      },
    };
    await markActive(stateDir, key);
    const active = await tree(stateDir);
    await expect(runOperation(request('deactivate', deactivating))).rejects.toThrow('cannot stop');
    expect(await tree(stateDir)).toEqual(active);
  });

  it("a driver's error escaping a plugin becomes a PluginError naming the operation; a bug stays as it is", async () => {
    const { stateDir, request } = await setup();
    const throwing = (error: Error): Plugin<{ host: string }> => ({
      ...minimalPlugin({ calls: [] }),
      activate: async () => {
        throw error;
      },
    });
    const lost = Object.assign(new Error('write EPIPE'), { code: 'EPIPE', syscall: 'write' });
    const failure = await runOperation(request('activate', throwing(lost))).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(PluginError);
    expect(failure).toMatchObject({ plugin: 'minimal', message: 'activate of prod/testcomp failed: write EPIPE', cause: lost });
    const bug = new TypeError("Cannot read properties of undefined (reading 'type')");
    expect(await runOperation(request('activate', throwing(bug))).catch((e: unknown) => e)).toBe(bug);
    expect(await markers(stateDir)).toEqual([]);
  });

  it('bad properties stop the operation before the plugin runs or anything is written', async () => {
    const { stateDir, request } = await setup();
    const recording: Recording = { calls: [] };
    const error = await runOperation(request('activate', minimalPlugin(recording), { type: 'minimal' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toMatch(/prod: host: host is required$/);
    expect(recording.calls).toEqual([]);
    expect(await tree(stateDir, true)).toEqual({});
  });

  it('when the work is done but the marker cannot be written, says so', async () => {
    const { stateDir, request } = await setup();
    await mkdir(stateDir);
    await writeFile(path.join(stateDir, 'activated'), 'a file where the folder of activated marks belongs');
    const recording: Recording = { calls: [] };
    const error = await runOperation(request('activate', minimalPlugin(recording))).catch((e: unknown) => e);
    expect(recording.calls).toEqual(['activate']);
    expect(error).toBeInstanceOf(OperationError);
    expect((error as Error).message).toContain(
      `activate of prod/testcomp succeeded, but recording it in the state dir ${stateDir} failed (ENOTDIR`,
    );
  });

  it('the shell operation is not run by runOperation', async () => {
    const { request } = await setup();
    await expect(runOperation(request('shell', minimalPlugin({ calls: [] })))).rejects.toThrow(/describeShell/);
  });
});

describe('runOperation with a pass-through plugin', () => {
  function passThrough(calls: string[]): PassThroughPlugin {
    return {
      type: 'relay',
      passThrough: true,
      run: async (ctx) => {
        calls.push(ctx.operation);
      },
    };
  }

  it('passes every operation through; deactivate too, as Dysnomia calls its modules', async () => {
    const { stateDir, request } = await setup();
    const calls: string[] = [];
    const plugin = passThrough(calls);
    const properties = { type: 'relay' };
    for (const operation of ['deactivate', 'lock', 'unlock', 'snapshot', 'restore'] as const) {
      await runOperation(request(operation, plugin, properties));
    }
    expect(calls).toEqual(['deactivate', 'lock', 'unlock', 'snapshot', 'restore']);
    // Nothing was activated, so deactivate set no garbage mark.
    expect(await markers(stateDir)).toEqual([]);
  });

  it('but collect-garbage only for a component marked as garbage', async () => {
    const { stateDir, request } = await setup();
    const calls: string[] = [];
    const properties = { type: 'relay' };
    await runOperation(request('collect-garbage', passThrough(calls), properties));
    expect(calls).toEqual([]);
    await runOperation(request('activate', passThrough(calls), properties));
    await runOperation(request('deactivate', passThrough(calls), properties));
    expect(await markers(stateDir)).toEqual(['garbage/prod/testcomp']);
    await runOperation(request('collect-garbage', passThrough(calls), properties));
    expect(calls).toEqual(['activate', 'deactivate', 'collect-garbage']);
    expect(await markers(stateDir)).toEqual([]);
  });
});

describe('describeShell', () => {
  it("returns the plugin's help and environment, and the type as module", async () => {
    const { request } = await setup();
    const plugin: Plugin<{ host: string }> = {
      ...minimalPlugin({ calls: [] }),
      shell: async (ctx) => ({ help: [`connect to ${ctx.options.host}`], env: { HOSTVAR: ctx.options.host } }),
    };
    expect(await describeShell(request('shell', plugin))).toEqual({
      help: ['connect to h'],
      env: { HOSTVAR: 'h' },
      module: 'minimal',
    });
    expect(await describeShell(request('shell', minimalPlugin({ calls: [] })))).toEqual({ help: [], module: 'minimal' });
  });
});

describe('prepare: properties a plugin does not read', () => {
  const cases: [string, Record<string, string>, string][] = [
    ['mysql-database', { mysqlUsername: 'root', mysqlUser: 'app' }, 'the property mysqlUser is not one mysql-database reads, so it is ignored; did you mean mysqlUsername?'],
    ['postgresql-database', { postgresqlPasword: 'x' }, 'the property postgresqlPasword is not one postgresql-database reads, so it is ignored; did you mean postgresqlPassword?'],
    ['git-repository', { gitBaseDir: '/srv/git', gitBasedir: '/srv/other' }, 'the property gitBasedir is not one git-repository reads, so it is ignored; did you mean gitBaseDir?'],
    ['mysql-database', { mysqlport: '3307' }, 'the property mysqlport is not one mysql-database reads, so it is ignored; did you mean mysqlPort?'],
    ['postgresql-database', { postgresqlusername: 'app' }, 'the property postgresqlusername is not one postgresql-database reads, so it is ignored; did you mean postgresqlUsername?'],
    ['mysql-database', { timout: '30' }, 'the property timout is not one mysql-database reads, so it is ignored; did you mean timeout?'],
    ['postgresql-database', { TimeOut: '30' }, 'the property TimeOut is not one postgresql-database reads, so it is ignored; did you mean timeout?'],
    ['postgresql-database', { timeuot: '30' }, 'the property timeuot is not one postgresql-database reads, so it is ignored; did you mean timeout?'],
  ];
  for (const [type, properties, warning] of cases) {
    it(`${type}: names a misspelt one and the likeliest meant, and goes on`, async () => {
      const { root, request } = await setup();
      const log = recordingLogger();
      const plugin = (await loadPlugin(type, {})) as Plugin<never>;
      await prepare({ ...request('snapshot', plugin, { type, ...properties }), log });
      expect(log.lines).toEqual([expect.stringContaining(`${path.join(root, 'prod')}: ${warning}`)]);
    });
  }

  it('names where the misspelt property came from: the environment, or a library caller\'s object', async () => {
    const { request } = await setup();
    const plugin = (await loadPlugin('mysql-database', {})) as Plugin<never>;
    for (const [fromEnvironment, where] of [[true, 'the environment'], [false, 'the properties of container prod']] as const) {
      const log = recordingLogger();
      const base = request('snapshot', plugin, { type: 'mysql-database', mysqlUser: 'app' });
      await prepare({ ...base, container: { ...base.container, file: undefined, fromEnvironment }, log });
      expect(log.lines).toEqual([expect.stringContaining(`${where}: the property mysqlUser is not one mysql-database reads`)]);
    }
  });

  it('says nothing of the properties each plugin reads, of other prefixes, or of lowercase continuations', async () => {
    const { request } = await setup();
    const all: [string, Record<string, string>][] = [
      ['mysql-database', { mysqlUsername: 'u', mysqlPassword: 'p', mysqlHost: 'h', mysqlPort: '3306', timeout: '5', mysqlish: 'x', gitUser: 'x', time: 'x', timer: 'x', hostname: 'x' }],
      ['postgresql-database', { postgresqlUsername: 'u', postgresqlPort: '5432', postgresqlRuntimeDir: '/run/postgresql', postgresqlRowOrder: 'key', postgresqlPassword: 'p' }],
      ['git-repository', { gitBaseDir: '/srv/git', gitGroup: 'staff', mysqlUser: 'x', timeout: '5', timout: '5' }],
    ];
    for (const [type, properties] of all) {
      const log = recordingLogger();
      await prepare({ ...request('snapshot', (await loadPlugin(type, {})) as Plugin<never>, { type, ...properties }), log });
      expect(log.lines, type).toEqual([]);
    }
  });
});

describe('runOperation waiting for the component lock', () => {
  it('names what the holder is doing', async () => {
    const { request } = await setup();
    let release!: () => void;
    let holding!: () => void;
    const held = new Promise<void>((resolve) => (holding = resolve));
    const slow: Plugin<{ host: string }> = {
      ...minimalPlugin({ calls: [] }),
      snapshot: async () => {
        holding();
        await new Promise<void>((resolve) => (release = resolve));
      },
    };
    const first = runOperation(request('snapshot', slow));
    await held;
    const second = await runOperation({ ...request('activate', minimalPlugin({ calls: [] })), lockTimeoutMs: 200 }).catch((error: unknown) => error);
    release();
    await first;
    expect((second as Error).message).toMatch(/waiting for component prod\/testcomp \(activate\): another call in this process \(component prod\/testcomp \(snapshot\)\) holds it/);
  });
});

describe('runOperation with a signal that has already fired', () => {
  it('names the operation and component, says nothing was changed, and calls no plugin', async () => {
    const { stateDir, request } = await setup();
    const recording: Recording = { calls: [] };
    const before = await tree(stateDir);
    const error = await runOperation({ ...request('restore', minimalPlugin(recording)), signal: AbortSignal.abort() }).catch((e: unknown) => e);
    expect((error as Error).message).toBe('restore of prod/testcomp cancelled before it started; nothing was changed');
    expect(recording.calls).toEqual([]);
    expect(await tree(stateDir)).toEqual(before);
  });
});
