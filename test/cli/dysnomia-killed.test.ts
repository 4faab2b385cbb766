/**
 * `dysnomia` killed with SIGKILL (the OOM killer, `kill -9`, a deployer's hard timeout) while an
 * external module runs: the module goes on running, and may still be changing the component.
 * The next run must wait for it instead of taking the lock the killed run left.
 */
import { access, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it, onTestFinished } from 'vitest';
import { programPath } from '../support/cli.js';
import { useStage } from '../support/core.js';
import { hasEnded, until } from '../support/processes.js';

describe('dysnomia killed while a module runs', () => {
  it('the next run waits for the module the killed run left running, naming it, and goes on once it has ended', async () => {
    const stage = await useStage();
    const module = await stage.module('slow');
    const started = path.join(stage.root, 'started');
    const release = path.join(stage.root, 'release');
    onTestFinished(() => writeFile(release, ''));
    const file = await stage.container('prod', `type=slow\nstartedFile=${started}\nreleaseFile=${release}\n`);
    const args = ['-o', 'activate', '-c', stage.component, '-C', file];
    const first = execa(process.execPath, [programPath('dysnomia'), ...args], { env: stage.env, reject: false });
    await until('the module has started', () => access(started).then(() => true, () => false));
    // Its holder file is written right after the fork; the module may well be quicker.
    const locks = path.join(stage.stateDir, 'locks');
    const childFiles = async () => {
      const names = await readdir(locks).catch(() => []);
      const inside = await Promise.all(names.map((name) => readdir(path.join(locks, name)).catch(() => [])));
      return inside.flat().filter((name) => name.startsWith('child-exclusive-'));
    };
    await until('the module is recorded in the lock', async () => (await childFiles()).length === 1);
    first.kill('SIGKILL');
    expect((await first).signal).toBe('SIGKILL');

    const second = await stage.dysnomia([...args, '--lock-timeout', '0.5'], { timeoutMs: 20_000 });
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toContain(`took over the stale lock`);
    expect(second.stderr).toMatch(/gave up after 0\.5 s waiting for component prod\/testcomp \(activate\)/);
    const match = new RegExp(`pid (\\d+) since [^;]*; lock`).exec(second.stderr.slice(second.stderr.indexOf('gave up')));
    expect(second.stderr).toContain(`${module}, started by pid ${first.pid}, which has ended but left it running`);
    const modulePid = Number(match?.[1]);
    expect(hasEnded(modulePid)).toBe(false);

    await writeFile(release, '');
    await until('the module has ended', () => hasEnded(modulePid));
    const third = await stage.dysnomia([...args, '--lock-timeout', '5']);
    expect(third.exitCode, third.stderr).toBe(0);
    expect(third.stderr).toContain('activated prod/testcomp');
  });
});
