/**
 * `dysnomia-containers --generate-expr`: the output is valid Nix (checked with the parser in
 * test/support, there being no nix binary here) and holds exactly the machine's properties.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { containerText, useMachine } from '../support/machine.js';
import { parseNix } from '../support/nix-parser.js';

describe('dysnomia-containers --generate-expr', () => {
  it('prints valid Nix with the machine properties, every container and the system', async () => {
    const machine = await useMachine();
    await writeFile(
      machine.env.DYSNOMIA_PROPERTIES!,
      containerText({
        hostname: 'db1.example.org',
        system: 'x86_64-linux',
        supportedTypes: ['mysql-database', 'postgresql-database'],
        tricky: 'quote " backslash \\ dollar $HOME ${interpolated} $${x} tab\there',
      }),
    );
    await machine.addContainer('mysql-production', { type: 'mysql-database', mysqlPort: '3306', mysqlUsername: 'root' });
    await machine.addContainer('postgresql-database', { type: 'postgresql-database' });
    await machine.addContainer('9.weird name', { type: 'echo', let: 'keyword as a property name' });
    // A folder among the container files is not a container: warned about and skipped.
    await mkdir(path.join(machine.containersDir, 'subfolder'));

    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`skipping ${path.join(machine.containersDir, 'subfolder')}: a directory`);
    const expected = {
      properties: {
        hostname: 'db1.example.org',
        system: 'x86_64-linux',
        supportedTypes: ['mysql-database', 'postgresql-database'],
        tricky: 'quote " backslash \\ dollar $HOME ${interpolated} $${x} tab\there',
      },
      containers: {
        '9.weird name': { let: 'keyword as a property name' },
        'mysql-production': { mysqlPort: '3306', mysqlUsername: 'root' },
        'postgresql-database': {},
      },
      system: 'x86_64-linux',
    };
    expect(parseNix(result.stdout)).toEqual(expected);
    // Container names that are Nix identifiers stay bare, as Dysnomia prints them.
    expect(result.stdout).toMatch(/^ {4}mysql-production = \{$/m);
    expect(result.stdout).toMatch(/^ {4}"9\.weird name" = \{$/m);

    const json = await runCli('dysnomia-containers', ['--generate-expr', '--json'], { env: machine.env });
    expect(json.exitCode, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(expected);
  });

  it('-C restricts the containers to the one named; the properties stay the machine\'s', async () => {
    const machine = await useMachine();
    await writeFile(machine.env.DYSNOMIA_PROPERTIES!, containerText({ hostname: 'h1', system: 'x86_64-linux' }));
    await machine.addContainer('gitc', { type: 'git-repository', gitBaseDir: '/srv/git' });
    await machine.addContainer('echo', { type: 'echo', greeting: 'hello' });
    const expected = { properties: { hostname: 'h1', system: 'x86_64-linux' }, containers: { gitc: { gitBaseDir: '/srv/git' } }, system: 'x86_64-linux' };
    const text = await runCli('dysnomia-containers', ['--generate-expr', '-C', 'gitc'], { env: machine.env });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(parseNix(text.stdout)).toEqual(expected);
    const json = await runCli('dysnomia-containers', ['--generate-expr', '--json', '-C', 'gitc'], { env: machine.env });
    expect(json.exitCode, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toEqual(expected);
  });

  it('gives empty properties when the properties file does not exist', async () => {
    const machine = await useMachine();
    await machine.addContainer('echo', { type: 'echo', greeting: 'hello' });
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(parseNix(result.stdout)).toEqual({ properties: {}, containers: { echo: { greeting: 'hello' } } });
  });

  it('gives empty containers when the containers path does not exist', async () => {
    const machine = await useMachine();
    const env = { ...machine.env, DYSNOMIA_CONTAINERS_PATH: path.join(machine.root, 'missing') };
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(parseNix(result.stdout)).toEqual({ properties: {}, containers: {} });
  });

  it('evaluates the properties file with bash, as Dysnomia does: shell substitutions, arrays, quoting', async () => {
    const machine = await useMachine();
    // As NixOS's dysnomia module and Dysnomia's own tests write it.
    await writeFile(
      machine.env.DYSNOMIA_PROPERTIES!,
      [
        'hostname="$(echo db1.example.org)"',
        `mem="$(grep 'MemTotal:' /proc/meminfo | sed -e 's/kB//' -e 's/MemTotal://' -e 's/ //g')"`,
        'supportedTypes=("process" "$(echo wrapper)")',
        'echo "a line the file prints"',
        "quoted='$HOME stays as written'",
        'export name=plain',
        '',
      ].join('\n'),
    );
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    const memTotal = /MemTotal:\s+(\d+) kB/.exec(await readFile('/proc/meminfo', 'utf8'))![1];
    expect(parseNix(result.stdout)).toEqual({
      properties: {
        hostname: 'db1.example.org',
        mem: memTotal,
        supportedTypes: ['process', 'wrapper'],
        quoted: '$HOME stays as written',
        name: 'plain',
      },
      containers: {},
    });
    // What the file prints is not part of the expression.
    expect(result.stdout).not.toContain('a line the file prints');
    expect(result.stderr).toContain(`${machine.env.DYSNOMIA_PROPERTIES}: a line the file prints`);
  });

  it('a command of the properties file that fails gives an empty value and a warning naming the file', async () => {
    const machine = await useMachine();
    await writeFile(machine.env.DYSNOMIA_PROPERTIES!, 'hostname=db1\nmem="$(no-such-tool-for-dysnomia)"\n');
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(parseNix(result.stdout)).toEqual({ properties: { hostname: 'db1', mem: '' }, containers: {} });
    expect(result.stderr).toMatch(new RegExp(`${machine.env.DYSNOMIA_PROPERTIES}: .*no-such-tool-for-dysnomia: command not found`));
  });

  it('reads every property of a file with exit or return in it, as Dysnomia does, and warns naming the line', async () => {
    const machine = await useMachine();
    // Sourced whole, `exit 0` ended the evaluation: `properties = { };`, even hostname lost.
    await writeFile(machine.env.DYSNOMIA_PROPERTIES!, 'hostname=h1\nexit 0\nsystem=x86_64-linux\n');
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(parseNix(result.stdout)).toEqual({ properties: { hostname: 'h1', system: 'x86_64-linux' }, containers: {}, system: 'x86_64-linux' });
    expect(result.stderr).toContain(`${machine.env.DYSNOMIA_PROPERTIES}: line 2: "exit 0" skipped`);

    // Under set -eu, in a condition, a top-level return: each ends only itself, as in Dysnomia,
    // which evaluates each line on its own. An exit inside $(...) still ends only that.
    await writeFile(
      machine.env.DYSNOMIA_PROPERTIES!,
      ['set -eu', 'hostname=h1', '[ -e /no/such/file ] || exit 1', 'mem="$(echo 512; exit 0; echo not skipped in a subshell)"', 'if true; then return; fi', 'system=x86_64-linux', 'exit 0', ''].join('\n'),
    );
    const more = await runCli('dysnomia-containers', ['--generate-expr', '--json'], { env: machine.env });
    expect(more.exitCode, more.stderr).toBe(0);
    expect(JSON.parse(more.stdout)).toEqual({ properties: { hostname: 'h1', mem: '512', system: 'x86_64-linux' }, containers: {}, system: 'x86_64-linux' });
    for (const line of ['line 3: "exit 1" skipped', 'line 5: "return" skipped', 'line 7: "exit 0" skipped']) {
      expect(more.stderr).toContain(`${machine.env.DYSNOMIA_PROPERTIES}: ${line}`);
    }
  });

  it('names the file and line of an exec that ends the evaluation early, exit 2, nothing printed', async () => {
    const machine = await useMachine();
    await writeFile(machine.env.DYSNOMIA_PROPERTIES!, 'hostname=h1\nexec >/dev/null\nexec true\nsystem=x86_64-linux\n');
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(
      `${machine.env.DYSNOMIA_PROPERTIES}: the evaluation of the machine properties file stopped before its end (line 3: "exec true" replaces the shell`,
    );
  });

  it('names a properties file bash cannot read, exit 2, nothing printed', async () => {
    const machine = await useMachine();
    await writeFile(machine.env.DYSNOMIA_PROPERTIES!, 'hostname=db1\nmem="$(free -m\n');
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`${machine.env.DYSNOMIA_PROPERTIES}: cannot evaluate the machine properties file (bash exited with 2:`);
  });

  it('names a bad container file, exit 2', async () => {
    const machine = await useMachine();
    await writeFile(path.join(machine.containersDir, 'broken'), 'type=echo\nvalue="unclosed\n');
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain(`${path.join(machine.containersDir, 'broken')}:2: value: double quote is not closed`);
  });

  it('reports a properties path that is a folder, exit 2', async () => {
    const machine = await useMachine();
    await mkdir(machine.env.DYSNOMIA_PROPERTIES!);
    const result = await runCli('dysnomia-containers', ['--generate-expr'], { env: machine.env });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`${machine.env.DYSNOMIA_PROPERTIES}: cannot read the machine properties file (EISDIR)`);
  });
});

describe('dysnomia-containers --generate-dot', () => {
  it('prints a cluster per container holding its available components', async () => {
    const machine = await useMachine();
    await machine.addComponent('mysql-database', 'shop');
    await machine.addComponent('mysql-database', 'crm');
    await machine.addComponent('git-repository', 'project');
    const result = await runCli('dysnomia-containers', ['--generate-dot'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      [
        'digraph G {',
        '  subgraph "cluster_git-repository" {',
        '    style=filled;',
        '    label="git-repository";',
        '    fillcolor=grey;',
        '    node [style=filled,fillcolor=white,color=black];',
        '    "git-repository/project" [label="project"];',
        '  }',
        '  subgraph "cluster_mysql-database" {',
        '    style=filled;',
        '    label="mysql-database";',
        '    fillcolor=grey;',
        '    node [style=filled,fillcolor=white,color=black];',
        '    "mysql-database/crm" [label="crm"];',
        '    "mysql-database/shop" [label="shop"];',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  });
});
