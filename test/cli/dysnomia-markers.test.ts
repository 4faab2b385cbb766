/**
 * The activated/garbage markers in a temporary DYSNOMIA_STATEDIR, through `dysnomia` and real
 * external modules whose call log proves when they were (not) run. The same rules for built-in
 * typed plugins, including the default lock/unlock, are in test/core/dispatcher.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { markers, recordedOperations, type Stage, tree, useStage } from '../support/core.js';

async function setup(): Promise<{ stage: Stage; run: (operation: string) => ReturnType<Stage['dysnomia']>; retype: (type: string) => Promise<void> }> {
  const stage = await useStage();
  await stage.module('recorder');
  await stage.module('failing');
  const body = (type: string) => `type=${type}\nrecordTo=${stage.log}\n`;
  const file = await stage.container('prod', body('recorder'));
  return {
    stage,
    run: (operation) => stage.dysnomia(['-o', operation, '-c', stage.component, '-C', file]),
    // The same container (same name, same markers) served by another module.
    retype: async (type) => {
      await stage.container('prod', body(type));
    },
  };
}

describe('markers', () => {
  it('activate marks the component active', async () => {
    const { stage, run } = await setup();
    const result = await run('activate');
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('dysnomia: [recorder] activated prod/testcomp');
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);
  });

  it('deactivate moves the mark to garbage; a second deactivate changes no marker', async () => {
    const { stage, run } = await setup();
    await run('activate');
    const first = await run('deactivate');
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stderr).toContain('deactivated prod/testcomp; it is marked as garbage until collect-garbage');
    expect(await markers(stage.stateDir)).toEqual(['garbage/prod/testcomp']);
    const before = await tree(stage.stateDir);
    const second = await run('deactivate');
    expect(second.exitCode, second.stderr).toBe(0);
    expect(await tree(stage.stateDir)).toEqual(before);
    // A module is called every time, as Dysnomia does: it keeps its own state.
    expect(await recordedOperations(stage.log)).toEqual(['activate', 'deactivate', 'deactivate']);
  });

  it('activate clears a garbage mark', async () => {
    const { stage, run } = await setup();
    await run('activate');
    await run('deactivate');
    const result = await run('activate');
    expect(result.exitCode).toBe(0);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);
  });

  it('collect-garbage calls the module only for a component marked as garbage, then clears the mark', async () => {
    const { stage, run } = await setup();
    const never = await run('collect-garbage');
    expect(never.exitCode).toBe(0);
    expect(never.stderr).toContain('prod/testcomp is not marked as garbage; nothing collected');
    await run('activate');
    const active = await run('collect-garbage');
    expect(active.exitCode).toBe(0);
    expect(await recordedOperations(stage.log)).toEqual(['activate']);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);

    await run('deactivate');
    const collected = await run('collect-garbage');
    expect(collected.exitCode, collected.stderr).toBe(0);
    expect(collected.stderr).toContain('collected prod/testcomp');
    expect(await recordedOperations(stage.log)).toEqual(['activate', 'deactivate', 'collect-garbage']);
    expect(await markers(stage.stateDir)).toEqual([]);

    await run('collect-garbage');
    expect(await recordedOperations(stage.log)).toEqual(['activate', 'deactivate', 'collect-garbage']);
  });

  it('lock and unlock reach the module and change no marker', async () => {
    const { stage, run } = await setup();
    await run('activate');
    const before = await tree(stage.stateDir);
    expect((await run('lock')).exitCode).toBe(0);
    expect((await run('unlock')).exitCode).toBe(0);
    expect(await tree(stage.stateDir)).toEqual(before);
    expect(await recordedOperations(stage.log)).toEqual(['activate', 'lock', 'unlock']);
  });

  it('lock and unlock of a built-in plugin without them say that nothing was locked, and exit 0', async () => {
    const { stage, run } = await setup();
    const module = await run('lock');
    expect(module.stderr).toContain('dysnomia: [recorder] locked prod/testcomp\n');
    // As Disnix runs them: --environment, the type, and none of the plugin's properties.
    for (const type of ['git-repository', 'mysql-database', 'postgresql-database']) {
      for (const operation of ['lock', 'unlock']) {
        const result = await stage.dysnomia(['-o', operation, '-c', stage.component, '-E', '-t', type, '--json']);
        expect(result.exitCode, result.stderr).toBe(0);
        const message = `nothing to ${operation} for ${type}/testcomp (the ${type} plugin has no ${operation} step)`;
        expect(result.stderr).toBe(`dysnomia: [${type}] ${message}\n`);
        expect(JSON.parse(result.stdout)).toMatchObject({ operation, status: 'done', message });
      }
    }
  });

  it('a failing module leaves the markers unchanged', async () => {
    const { stage, run, retype } = await setup();
    await retype('failing');
    const activate = await run('activate');
    expect(activate.exitCode).toBe(1);
    expect(await tree(stage.stateDir)).toEqual({});

    await retype('recorder');
    await run('activate');
    await retype('failing');
    const active = await tree(stage.stateDir);
    expect((await run('deactivate')).exitCode).toBe(1);
    expect(await tree(stage.stateDir)).toEqual(active);

    await retype('recorder');
    await run('deactivate');
    await retype('failing');
    const garbage = await tree(stage.stateDir);
    expect((await run('collect-garbage')).exitCode).toBe(1);
    expect((await run('activate')).exitCode).toBe(1);
    expect(await tree(stage.stateDir)).toEqual(garbage);
    expect(await markers(stage.stateDir)).toEqual(['garbage/prod/testcomp']);
    expect(await recordedOperations(stage.log)).toEqual([
      'activate',
      'activate',
      'deactivate',
      'deactivate',
      'collect-garbage',
      'activate',
    ]);
  });
});
