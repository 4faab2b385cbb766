/**
 * The machine-wide library calls (deploy, runOnActivated, collectAllGarbage): outcomes as data,
 * warnings through the logger, and cancellation part-way through a run.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { makeBundle, makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';

function recordingLogger() {
  const lines: string[] = [];
  const logger: dysnomia.Logger = {
    info: (m) => lines.push(`info ${m}`),
    warn: (m) => lines.push(`warn ${m}`),
    debug: () => {},
    child: () => logger,
  };
  return { logger, lines };
}

async function gitMachine(names: string[]) {
  const machine = await useMachine();
  const baseDir = path.join(machine.root, 'repos');
  await machine.addContainer('git', { type: 'git-repository', gitBaseDir: baseDir });
  for (const name of names) {
    const work = await makeWorkRepo(path.join(machine.root, 'work', name));
    const component = await machine.addComponent('git', name, {});
    await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  }
  return { machine, baseDir, options: { env: machine.env, stateDir: machine.stateDir } };
}

describe('library API: machine-wide actions', () => {
  it('deploy returns each outcome, calls onOutcome as it goes, and logs what it does', async () => {
    const { machine, baseDir, options } = await gitMachine(['a', 'b']);
    const { logger, lines } = recordingLogger();
    const seen: string[] = [];
    const result = await dysnomia.deploy({ ...options, log: logger, onOutcome: (o) => seen.push(`${o.component}:${o.status}`) });
    expect(seen).toEqual(['a:done', 'b:done']);
    expect(result.failures).toEqual([]);
    expect(result.outcomes.map((o) => [o.operation, o.container, o.component, o.result?.status])).toEqual([
      ['activate', 'git', 'a', 'done'],
      ['activate', 'git', 'b', 'done'],
    ]);
    expect(lines).toContain('info activating git/a');
    expect(existsSync(path.join(baseDir, 'a'))).toBe(true);
    expect(existsSync(path.join(baseDir, 'b'))).toBe(true);

    await machine.removeComponent('git', 'b');
    const second = await dysnomia.deploy(options);
    expect(second.outcomes.map((o) => `${o.operation} ${o.component} ${o.status}`)).toEqual(['deactivate b done']);
    const gc = await dysnomia.collectAllGarbage(options);
    expect(gc.outcomes.map((o) => `${o.operation} ${o.component} ${o.status}`)).toEqual(['collect-garbage b done']);
    expect(existsSync(path.join(baseDir, 'b'))).toBe(false);
    expect(existsSync(path.join(baseDir, 'a'))).toBe(true);
  });

  it('reports a failing component as data with its typed error and goes on', async () => {
    const { machine, options } = await gitMachine(['good']);
    // A component whose bundle folder is a file: the git plugin refuses it with a ConfigError.
    const bad = await machine.addComponent('git', 'bad', {});
    await writeFile(path.join(bad, 'git-repositories'), 'not a folder\n');
    const { logger, lines } = recordingLogger();
    const result = await dysnomia.deploy({ ...options, log: logger });
    expect(result.outcomes.map((o) => `${o.component} ${o.status}`)).toEqual(['bad failed', 'good done']);
    expect(result.failures).toHaveLength(1);
    expect(result.failures[0]!.error).toBeInstanceOf(dysnomia.ConfigError);
    expect(lines.some((l) => l.startsWith('warn activate of git/bad failed:'))).toBe(true);
    expect(dysnomia.formatFailures(result)).toEqual([
      expect.stringMatching(/^activate of git\/bad failed: \[git-repository\] .*git-repositories.*is a file/),
    ]);
    expect(dysnomia.outcomesToJson(result.failures)[0]!.error).toMatchObject({ name: 'ConfigError', plugin: 'git-repository' });
  });

  it('stops starting components once the signal fires; the rest are cancelled, not failed silently', async () => {
    const { options } = await gitMachine(['one', 'two', 'three']);
    const controller = new AbortController();
    const result = await dysnomia.deploy({
      ...options,
      signal: controller.signal,
      onOutcome: () => controller.abort(),
    });
    expect(result.outcomes.map((o) => `${o.component} ${o.status}`)).toEqual(['one done', 'three cancelled', 'two cancelled']);
    expect(result.failures.map((o) => o.component)).toEqual(['three', 'two']);
    expect(result.failures[0]!.error).toBeInstanceOf(dysnomia.AbortedError);
    expect(await dysnomia.listActivatedComponents(options)).toEqual([{ container: 'git', component: 'one' }]);
  });

  it('runOnActivated runs any operation over the activated components of one container', async () => {
    const { machine, options } = await gitMachine(['x']);
    await machine.addContainer('other', { type: 'echo' });
    await machine.addComponent('other', 'y');
    await dysnomia.deploy({ ...options, print: () => {} });
    const printed: string[] = [];
    const result = await dysnomia.runOnActivated('lock', { ...options, container: 'other', print: (t) => printed.push(t) });
    expect(result.outcomes.map((o) => `${o.operation} ${o.container}/${o.component} ${o.status}`)).toEqual(['lock other/y done']);
    expect(printed.join('')).toContain(`echo: lock ${path.join(machine.componentsDir, 'other', 'y')}`);
  });

  it('runOnActivated refuses shell and unknown operations once, up front, with a UsageError', async () => {
    const { options } = await gitMachine(['x']);
    await dysnomia.deploy({ ...options, print: () => {} });
    for (const operation of ['shell', 'frobnicate']) {
      const error = await dysnomia.runOnActivated(operation as dysnomia.ComponentOperation, options).catch((e: unknown) => e);
      expect(error, operation).toBeInstanceOf(dysnomia.UsageError);
      expect((error as Error).message).toContain(`"${operation}" is not an operation runOnActivated can run`);
    }
  });
  it('a throwing onOutcome is reported once and every batch function still does all its components', async () => {
    const { machine, baseDir, options } = await gitMachine(['a', 'b', 'c']);
    const throwing = () => {
      throw new Error('callback bug');
    };
    const calls = () => {
      const { logger, lines } = recordingLogger();
      let count = 0;
      const onOutcome = () => {
        count += 1;
        throwing();
      };
      return { log: logger, onOutcome, lines, count: () => count };
    };
    const warned = (lines: string[]) => lines.filter((l) => l.startsWith('warn ') && l.includes('onOutcome'));
    const statuses = (result: dysnomia.BatchResult) => result.outcomes.map((o) => `${o.operation} ${o.component} ${o.status}`);

    const deployCalls = calls();
    const deployed = await dysnomia.deploy({ ...options, ...deployCalls });
    expect(statuses(deployed)).toEqual(['activate a done', 'activate b done', 'activate c done']);
    expect(warned(deployCalls.lines)).toEqual(['warn the onOutcome callback threw (callback bug); it is not called again for this run']);
    expect(deployCalls.count()).toBe(1);
    for (const name of ['a', 'b', 'c']) expect(existsSync(path.join(baseDir, name))).toBe(true);

    const snapshotCalls = calls();
    const snapshotted = await dysnomia.snapshotAll({ ...options, ...snapshotCalls });
    expect(statuses(snapshotted)).toEqual(['snapshot a done', 'snapshot b done', 'snapshot c done']);
    expect(warned(snapshotCalls.lines)).toHaveLength(1);
    expect((await dysnomia.latestSnapshots(options)).map((s) => s.component)).toEqual(['a', 'b', 'c']);

    const restoreCalls = calls();
    // Restoring what is already live has nothing to do: skipped, but attempted for every component.
    expect(statuses(await dysnomia.restoreAll({ ...options, ...restoreCalls }))).toEqual(['restore a skipped', 'restore b skipped', 'restore c skipped']);
    expect(warned(restoreCalls.lines)).toHaveLength(1);

    const lockCalls = calls();
    expect(statuses(await dysnomia.runOnActivated('lock', { ...options, ...lockCalls }))).toEqual(['lock a done', 'lock b done', 'lock c done']);
    expect(warned(lockCalls.lines)).toHaveLength(1);

    await machine.removeComponent('git', 'b');
    await machine.removeComponent('git', 'c');
    await dysnomia.deploy(options);
    const gcCalls = calls();
    expect(statuses(await dysnomia.collectAllGarbage({ ...options, ...gcCalls }))).toEqual(['collect-garbage b done', 'collect-garbage c done']);
    expect(warned(gcCalls.lines)).toHaveLength(1);
    expect(existsSync(path.join(baseDir, 'b'))).toBe(false);
    expect(existsSync(path.join(baseDir, 'c'))).toBe(false);

    // An async callback that rejects is told the same way, not left as an unhandled rejection.
    const asyncLog = recordingLogger();
    const rejecting = await dysnomia.snapshotAll({ ...options, log: asyncLog.logger, onOutcome: async () => throwing() });
    expect(statuses(rejecting)).toEqual(['snapshot a skipped']);
    await new Promise((resolve) => setImmediate(resolve));
    expect(warned(asyncLog.lines)).toEqual(['warn the onOutcome callback threw (callback bug); it is not called again for this run']);
  });
});
