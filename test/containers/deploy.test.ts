/**
 * `dysnomia-containers --deploy` and `--collect-garbage` through the built CLI, on a components
 * tree served by a real Dysnomia-protocol module (folders copied into a target folder).
 */
import { existsSync } from 'node:fs';
import { chmod, readdir, readFile, rename, symlink, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { programPath, runCli } from '../support/cli.js';
import { type Machine, useMachine, writeDirCopyModule } from '../support/machine.js';

interface Setup {
  machine: Machine;
  env: Record<string, string>;
  /** Target folders of the two containers. */
  alpha: string;
  beta: string;
}

async function setup(): Promise<Setup> {
  const machine = await useMachine();
  const modules = path.join(machine.root, 'modules');
  await writeDirCopyModule(modules);
  const alpha = path.join(machine.root, 'alpha-target');
  const beta = path.join(machine.root, 'beta-target');
  await machine.addContainer('alpha', { type: 'dir-copy', targetDir: alpha });
  await machine.addContainer('beta', { type: 'dir-copy', targetDir: beta });
  return { machine, env: { ...machine.env, DYSNOMIA_MODULES_PATH: modules }, alpha, beta };
}

const marker = (m: Machine, kind: 'activated' | 'garbage', key: string) => existsSync(path.join(m.stateDir, kind, key));

describe('dysnomia-containers --deploy', () => {
  it('activates every available component, then does nothing on a second run', async () => {
    const { machine, env, alpha, beta } = await setup();
    await machine.addComponent('alpha', 'one');
    await machine.addComponent('alpha', 'two');
    await machine.addComponent('beta', 'three');

    const first = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(first.exitCode, first.stderr).toBe(0);
    for (const key of ['alpha/one', 'alpha/two', 'beta/three']) expect(marker(machine, 'activated', key)).toBe(true);
    expect(existsSync(path.join(alpha, 'one', 'README'))).toBe(true);
    expect(existsSync(path.join(alpha, 'two', 'README'))).toBe(true);
    expect(existsSync(path.join(beta, 'three', 'README'))).toBe(true);
    // The result table: one row per component.
    expect(first.stdout).toMatch(/^COMPONENT\s+RESULT\s+SNAPSHOT\s+STORED\s+SECONDS$/m);
    expect(first.stdout).toMatch(/^alpha\/one\s+done\s+-\s+0 B\s+\d+\.\d\d$/m);
    expect(first.stdout).toMatch(/^beta\/three\s+done/m);
    expect(first.stderr).toContain('activating alpha/one');

    const second = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(second.exitCode, second.stderr).toBe(0);
    expect(second.stdout).toBe('');
    expect(second.stderr).toContain('nothing to do');
    expect((await readFile(path.join(alpha, '.log'), 'utf8')).trim().split('\n')).toEqual([
      'activate alpha/one',
      'activate alpha/two',
    ]);
  });

  it('deactivates a removed component and activates an added one; collect-garbage removes the old one', async () => {
    const { machine, env, alpha } = await setup();
    await machine.addComponent('alpha', 'old');
    await machine.addComponent('alpha', 'kept');
    expect((await runCli('dysnomia-containers', ['--deploy'], { env })).exitCode).toBe(0);

    await machine.removeComponent('alpha', 'old');
    await machine.addComponent('alpha', 'new');
    const result = await runCli('dysnomia-containers', ['--deploy', '--json'], { env });
    expect(result.exitCode, result.stderr).toBe(0);
    const json = JSON.parse(result.stdout) as { outcomes: { operation: string; container: string; component: string; status: string }[] };
    expect(json.outcomes.map((o) => `${o.operation} ${o.container}/${o.component} ${o.status}`)).toEqual([
      'deactivate alpha/old done',
      'activate alpha/new done',
    ]);
    expect(marker(machine, 'activated', 'alpha/old')).toBe(false);
    expect(marker(machine, 'garbage', 'alpha/old')).toBe(true);
    expect(marker(machine, 'activated', 'alpha/new')).toBe(true);
    expect(marker(machine, 'activated', 'alpha/kept')).toBe(true);
    // Deactivation keeps the data until collect-garbage.
    expect(existsSync(path.join(alpha, 'old'))).toBe(true);

    const gc = await runCli('dysnomia-containers', ['--collect-garbage'], { env });
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(gc.stdout).toMatch(/^alpha\/old\s+done/m);
    expect(existsSync(path.join(alpha, 'old'))).toBe(false);
    expect(existsSync(path.join(alpha, 'kept'))).toBe(true);
    expect(marker(machine, 'garbage', 'alpha/old')).toBe(false);
  });

  it('goes on past a failing component, reports every failure and exits 1', async () => {
    const { machine, env, beta } = await setup();
    await machine.addComponent('alpha', 'bad', { 'fail-activate': '' });
    await machine.addComponent('beta', 'good');
    await machine.addComponent('nocontainer', 'orphan');

    const result = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(result.exitCode).toBe(1);
    expect(marker(machine, 'activated', 'beta/good')).toBe(true);
    expect(existsSync(path.join(beta, 'good'))).toBe(true);
    expect(marker(machine, 'activated', 'alpha/bad')).toBe(false);
    expect(result.stdout).toMatch(/^alpha\/bad\s+FAILED/m);
    expect(result.stdout).toMatch(/^beta\/good\s+done/m);
    expect(result.stdout).toMatch(/^nocontainer\/orphan\s+FAILED/m);
    expect(result.stderr).toContain('2 of 3 components failed');
    expect(result.stderr).toMatch(/activate of alpha\/bad failed: \[dir-copy\] .*exit status 3/);
    expect(result.stderr).toMatch(/activate of nocontainer\/orphan failed: no container file named "nocontainer"/);
  });

  it('does not activate a component whose name dysnomia refuses, which no snapshot could ever take', async () => {
    const { machine, env, alpha } = await setup();
    await machine.addComponent('alpha', 'shop~');
    await machine.addComponent('alpha', 'good');

    const result = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('activate of alpha/shop~ failed: "shop~" (from ');
    expect(result.stderr).toContain('is not a usable component name');
    expect(marker(machine, 'activated', 'alpha/shop~')).toBe(false);
    expect(existsSync(path.join(alpha, 'shop~'))).toBe(false);
    expect(marker(machine, 'activated', 'alpha/good')).toBe(true);
  });

  it('warns about a stray file in the components tree and skips it', async () => {
    const { machine, env } = await setup();
    await machine.addComponent('alpha', 'one');
    await writeFile(path.join(machine.componentsDir, 'stray.txt'), 'not a container folder\n');
    await writeFile(path.join(machine.componentsDir, 'alpha', 'notes.txt'), 'not a component\n');

    const result = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`warning: skipping ${path.join(machine.componentsDir, 'stray.txt')}: a file`);
    expect(result.stderr).toContain(`warning: skipping ${path.join(machine.componentsDir, 'alpha', 'notes.txt')}: a file`);
    expect(marker(machine, 'activated', 'alpha/one')).toBe(true);
    expect(marker(machine, 'activated', 'alpha/notes.txt')).toBe(false);
  });

  it('changes nothing when the components tree is missing, or a component\'s link dangles, and something would be deactivated', async () => {
    const { machine, env, alpha } = await setup();
    await machine.addComponent('alpha', 'one');
    await machine.addComponent('alpha', 'two');
    expect((await runCli('dysnomia-containers', ['--deploy'], { env })).exitCode).toBe(0);
    const state = async () => (await readdir(path.join(machine.stateDir, 'activated', 'alpha'))).sort();
    expect(await state()).toEqual(['one', 'two']);

    // A mount that is missing, or a typo in the search path: the tree is not there at all.
    const moved = `${machine.componentsDir}.away`;
    await rename(machine.componentsDir, moved);
    const missing = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(missing.exitCode, missing.stderr).toBe(2);
    expect(missing.stderr).toContain(`the components tree ${machine.componentsDir} (DYSNOMIA_COMPONENTS_PATH) does not exist`);
    expect(missing.stderr).toContain('cannot tell whether alpha/one, alpha/two really left the tree');
    expect(missing.stderr).toContain('Nothing was changed');
    // An optional folder of the search path that is missing is fine while nothing would go.
    const optional = await runCli('dysnomia-containers', ['--deploy'], { env: { ...env, DYSNOMIA_COMPONENTS_PATH: `${moved}:${machine.root}/optional` } });
    expect(optional.exitCode, optional.stderr).toBe(0);
    expect(optional.stderr).toContain('nothing to do');
    await rename(moved, machine.componentsDir);

    // A component whose store path is gone (a failed build): its symlink dangles.
    const two = path.join(machine.componentsDir, 'alpha', 'two');
    await rename(two, `${two}.real`);
    await symlink(path.join(machine.root, 'gone'), two);
    const dangling = await runCli('dysnomia-containers', ['--deploy'], { env });
    expect(dangling.exitCode, dangling.stderr).toBe(2);
    expect(dangling.stderr).toContain(`${two} is a dangling symlink; so --deploy cannot tell whether alpha/two really left the tree`);
    expect(dangling.stderr).toContain('Nothing was changed');

    expect(await state()).toEqual(['one', 'two']);
    expect(existsSync(path.join(machine.stateDir, 'garbage'))).toBe(false);
    expect(existsSync(path.join(alpha, 'two', 'README'))).toBe(true);
  });

  it('deploys on a fresh machine without a components tree as a no-op', async () => {
    const { machine, env } = await setup();
    const result = await runCli('dysnomia-containers', ['--deploy'], { env: { ...env, DYSNOMIA_COMPONENTS_PATH: path.join(machine.root, 'not-yet') } });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('nothing to do');
  });

  it('changes nothing when a part of the components tree cannot be read', async () => {
    const { machine, env } = await setup();
    await machine.addComponent('alpha', 'one');
    await machine.addComponent('beta', 'two');
    expect((await runCli('dysnomia-containers', ['--deploy'], { env })).exitCode).toBe(0);
    await chmod(machine.root, 0o755);
    await execa('chown', ['-R', 'nobody', machine.root]);
    const beta = path.join(machine.componentsDir, 'beta');
    await chmod(beta, 0o000);
    const result = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, programPath('dysnomia-containers'), '--deploy'],
      { env: { ...env, HOME: machine.root }, reject: false },
    );
    await chmod(beta, 0o755);
    expect(result.exitCode, result.stderr).toBe(2);
    expect(result.stderr).toContain('cannot read the components tree');
    expect(result.stderr).toContain(beta);
    expect(result.stderr).toContain('--deploy changed nothing');
    expect(marker(machine, 'activated', 'beta/two')).toBe(true);
    expect(marker(machine, 'garbage', 'beta/two')).toBe(false);
  });

  it('restricts the deployment to one container with -C', async () => {
    const { machine, env } = await setup();
    await machine.addComponent('alpha', 'one');
    await machine.addComponent('beta', 'two');
    const result = await runCli('dysnomia-containers', ['--deploy', '-C', 'beta'], { env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(marker(machine, 'activated', 'beta/two')).toBe(true);
    expect(marker(machine, 'activated', 'alpha/one')).toBe(false);
  });
});
