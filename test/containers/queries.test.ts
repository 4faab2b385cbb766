/**
 * `dysnomia-containers --query-*` and usage errors, through the built CLI.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { useMachine } from '../support/machine.js';

describe('dysnomia-containers queries', () => {
  it('--query-containers lists the container files of every folder of the path, first one winning', async () => {
    const machine = await useMachine();
    await machine.addContainer('mysql-database', { type: 'mysql-database' });
    await machine.addContainer('echo', { type: 'echo' });
    const second = path.join(machine.root, 'more-containers');
    await mkdir(second);
    await writeFile(path.join(second, 'echo'), 'type=echo\n');
    await writeFile(path.join(second, 'git-repository'), 'type=git-repository\n');
    await writeFile(path.join(second, '.hidden'), 'type=echo\n');
    const env = { ...machine.env, DYSNOMIA_CONTAINERS_PATH: `${machine.containersDir}:${second}:${path.join(machine.root, 'missing')}` };

    const text = await runCli('dysnomia-containers', ['--query-containers'], { env });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toBe('echo\nmysql-database\ngit-repository\n');

    const json = await runCli('dysnomia-containers', ['--query-containers', '--json'], { env });
    expect(JSON.parse(json.stdout)).toEqual([
      { name: 'echo', file: path.join(machine.containersDir, 'echo') },
      { name: 'mysql-database', file: path.join(machine.containersDir, 'mysql-database') },
      { name: 'git-repository', file: path.join(second, 'git-repository') },
    ]);
  });

  it('--query-available-components lists container/component, with -C and --json', async () => {
    const machine = await useMachine();
    await machine.addComponent('mysql-database', 'testdb');
    await machine.addComponent('mysql-database', 'otherdb');
    const storeLike = path.join(machine.root, 'nix', 'store', `${'a'.repeat(32)}-repo`);
    await mkdir(storeLike, { recursive: true });
    await mkdir(path.join(machine.componentsDir, 'git-repository'));
    // A profile symlink to a Nix store path names the component after the store path, as Dysnomia does.
    await symlink(storeLike, path.join(machine.componentsDir, 'git-repository', 'link'));
    const env = { ...machine.env, NIX_STORE_DIR: path.join(machine.root, 'nix', 'store') };

    const all = await runCli('dysnomia-containers', ['--query-available-components'], { env });
    expect(all.exitCode, all.stderr).toBe(0);
    expect(all.stdout).toBe('git-repository/repo\nmysql-database/otherdb\nmysql-database/testdb\n');

    const one = await runCli('dysnomia-containers', ['--query-available-components', '-C', 'mysql-database', '--json'], { env });
    expect(JSON.parse(one.stdout)).toEqual([
      { container: 'mysql-database', component: 'otherdb', path: path.join(machine.componentsDir, 'mysql-database', 'otherdb') },
      { container: 'mysql-database', component: 'testdb', path: path.join(machine.componentsDir, 'mysql-database', 'testdb') },
    ]);
  });

  it('--query-available-components warns about stray files and dangling links and skips them', async () => {
    const machine = await useMachine();
    await machine.addComponent('echo', 'good');
    await writeFile(path.join(machine.componentsDir, 'README'), 'stray\n');
    await symlink(path.join(machine.root, 'gone'), path.join(machine.componentsDir, 'echo', 'dangling'));
    const result = await runCli('dysnomia-containers', ['--query-available-components'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('echo/good\n');
    expect(result.stderr).toContain(`warning: skipping ${path.join(machine.componentsDir, 'README')}: a file in the components tree`);
    expect(result.stderr).toContain(`warning: skipping ${path.join(machine.componentsDir, 'echo', 'dangling')}: a dangling symlink`);
  });

  it('--query-available-components names a second entry of a container that resolves to the same component as another folder', async () => {
    const machine = await useMachine();
    const builds = path.join(machine.root, 'builds', 'site');
    const other = path.join(machine.root, 'other', 'site');
    await mkdir(builds, { recursive: true });
    await mkdir(other, { recursive: true });
    await mkdir(path.join(machine.componentsDir, 'echo'));
    await symlink(builds, path.join(machine.componentsDir, 'echo', 'a'));
    await symlink(other, path.join(machine.componentsDir, 'echo', 'b'));
    // A second link to the same folder is the same component, and no reason to warn.
    await symlink(builds, path.join(machine.componentsDir, 'echo', 'c'));
    const result = await runCli('dysnomia-containers', ['--query-available-components'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('echo/site\n');
    const b = path.join(machine.componentsDir, 'echo', 'b');
    expect(result.stderr).toContain(`warning: skipping ${b}: it resolves to ${other}, so it is the component echo/site, as ${path.join(machine.componentsDir, 'echo', 'a')} (${builds}) already is`);
    expect(result.stderr).not.toContain(path.join(machine.componentsDir, 'echo', 'c'));
  });

  it('--query-activated-components reads the markers of the state dir', async () => {
    const machine = await useMachine();
    await machine.addContainer('echo', { type: 'echo' });
    await machine.addComponent('echo', 'one');
    await machine.addComponent('echo', 'two');
    const empty = await runCli('dysnomia-containers', ['--query-activated-components'], { env: machine.env });
    expect(empty.exitCode, empty.stderr).toBe(0);
    expect(empty.stdout).toBe('');

    expect((await runCli('dysnomia-containers', ['--deploy'], { env: machine.env })).exitCode).toBe(0);
    const listed = await runCli('dysnomia-containers', ['--query-activated-components'], { env: machine.env });
    expect(listed.stdout).toBe('echo/one\necho/two\n');
    const json = await runCli('dysnomia-containers', ['--query-activated-components', '--json', '-C', 'other'], {
      env: machine.env,
    });
    expect(JSON.parse(json.stdout)).toEqual([]);
  });

  it.each([
    [[], /no action given: use one of --query-containers/],
    [['--deploy', '--snapshot'], /give one action, not --deploy and --snapshot/],
    [['--operation', 'explode'], /unknown operation "explode"; expected one of activate/],
    [['--operation', 'shell'], /unknown operation "shell"/],
    [['--snapshot', 'extra'], /unexpected argument "extra"/],
    [['--snapshot', '--lock-timeout', 'soon'], /--lock-timeout "soon": expected a number of seconds/],
    [['--bogus'], /unknown option '--bogus'/],
    [['--snapshot', '-C', 'a', '-C', 'b'], /-C\/--container is given twice; give it once/],
    [['-o', 'lock', '--operation=unlock'], /-o\/--operation is given twice/],
  ])('usage error for %j: exit 2', async (args, message) => {
    const machine = await useMachine();
    const result = await runCli('dysnomia-containers', args, { env: machine.env });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(message);
    expect(result.stdout).toBe('');
  });

  it('-C with a name no container file or activated component has warns (a typo would back up nothing in silence)', async () => {
    const machine = await useMachine();
    await machine.addContainer('echo', { type: 'echo' });
    const typo = await runCli('dysnomia-containers', ['--snapshot', '-C', 'ehco'], { env: machine.env });
    expect(typo.exitCode, typo.stderr).toBe(0);
    expect(typo.stderr).toContain('warning: -C ehco: there is no container file of that name in DYSNOMIA_CONTAINERS_PATH');
    const known = await runCli('dysnomia-containers', ['--snapshot', '-C', 'echo'], { env: machine.env });
    expect(known.exitCode, known.stderr).toBe(0);
    expect(known.stderr).not.toContain('-C echo');
    // Under Disnix the properties come from the environment: no container file, but markers.
    await mkdir(path.join(machine.stateDir, 'activated', 'mysql-database'), { recursive: true });
    await writeFile(path.join(machine.stateDir, 'activated', 'mysql-database', 'shop'), '');
    const marked = await runCli('dysnomia-containers', ['--collect-garbage', '-C', 'mysql-database'], { env: machine.env });
    expect(marked.exitCode, marked.stderr).toBe(0);
    expect(marked.stderr).not.toContain('-C mysql-database');
  });

  it.each([
    ['--query-containers'],
    ['--query-available-components'],
    ['--query-activated-components'],
    ['--generate-expr'],
    ['--generate-dot'],
  ])('%s -C with a name nothing has warns as the component actions do; a known name does not', async (action) => {
    const machine = await useMachine();
    await machine.addContainer('echo', { type: 'echo' });
    await machine.addComponent('echo', 'one');
    expect((await runCli('dysnomia-containers', ['--deploy'], { env: machine.env })).exitCode).toBe(0);
    const typo = await runCli('dysnomia-containers', [action, '-C', 'zzz'], { env: machine.env });
    expect(typo.exitCode, typo.stderr).toBe(0);
    expect(typo.stderr).toContain('warning: -C zzz: there is no container file of that name in DYSNOMIA_CONTAINERS_PATH, and no component of it is activated');
    const known = await runCli('dysnomia-containers', [action, '-C', 'echo'], { env: machine.env });
    expect(known.exitCode, known.stderr).toBe(0);
    expect(known.stderr).not.toContain('-C echo');
    // A stray entry among the container files is warned about once, not again by the check.
    await mkdir(path.join(machine.containersDir, 'subfolder'));
    const stray = await runCli('dysnomia-containers', [action, '-C', 'zzz'], { env: machine.env });
    expect(stray.stderr.split('skipping').length - 1, stray.stderr).toBe(1);
  });

  it('--restore asks first: no answer is a usage error, "n" restores nothing', async () => {
    const machine = await useMachine();
    await machine.addContainer('echo', { type: 'echo' });
    await machine.addComponent('echo', 'one');
    expect((await runCli('dysnomia-containers', ['--deploy'], { env: machine.env })).exitCode).toBe(0);

    const eof = await runCli('dysnomia-containers', ['--restore'], { env: machine.env, input: '' });
    expect(eof.exitCode).toBe(2);
    expect(eof.stderr).toContain('--restore needs a confirmation; answer y, or pass -y in scripts');

    const no = await runCli('dysnomia-containers', ['--restore'], { env: machine.env, input: 'n\n' });
    expect(no.exitCode).toBe(0);
    expect(no.stderr).toContain('not restoring anything');
    expect(no.stdout).toBe('');

    const yes = await runCli('dysnomia-containers', ['--restore'], { env: machine.env, input: 'y\n' });
    expect(yes.exitCode, yes.stderr).toBe(0);
    expect(yes.stdout).toMatch(/^echo\/one\s+done/m);
    const confirmed = await runCli('dysnomia-containers', ['--restore', '-y'], { env: machine.env });
    expect(confirmed.exitCode, confirmed.stderr).toBe(0);
    expect(confirmed.stderr).not.toContain('Are you sure');
  });
});
