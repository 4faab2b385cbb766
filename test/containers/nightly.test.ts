/**
 * A nightly `dysnomia-containers --snapshot` over three containers, one of whose database
 * servers has become unreachable: the others are snapshotted, the failure is reported, the exit
 * status is 1. Real MariaDB and git; the unreachable server is a closed port.
 */
import { createServer } from 'node:net';
import { chmod, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { programPath, runCli } from '../support/cli.js';
import { makeBundle, makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';
import { findMysql } from '../support/servers.js';
import { uniqueName } from '../support/temp.js';

/** A TCP port on 127.0.0.1 that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function generations(stateDir: string, key: string): Promise<string[]> {
  return readdir(path.join(stateDir, 'generations', key)).catch(() => []);
}

describe('nightly dysnomia-containers --snapshot', () => {
  it('snapshots the reachable components, reports the unreachable one, exits 1', async () => {
    const mysql = await findMysql();
    const machine = await useMachine();
    const shop = uniqueName('shop');
    const archive = uniqueName('archive');
    onTestFinished(async () => {
      for (const db of [shop, archive]) await mysql.query(`DROP DATABASE IF EXISTS \`${db}\``);
    });

    await machine.addContainer('mysql-production', mysql.properties);
    await machine.addContainer('mysql-legacy', mysql.properties);
    await machine.addContainer('git-repository', { type: 'git-repository', gitBaseDir: path.join(machine.root, 'repos') });
    await machine.addComponent('mysql-production', shop, {
      'mysql-databases/schema.sql': 'CREATE TABLE orders (id INT PRIMARY KEY, item VARCHAR(40));\nINSERT INTO orders VALUES (1, "tea");\n',
    });
    await machine.addComponent('mysql-legacy', archive, {
      'mysql-databases/schema.sql': 'CREATE TABLE old (id INT PRIMARY KEY);\n',
    });
    const work = await makeWorkRepo(path.join(machine.root, 'work'), { commits: 3 });
    const project = await machine.addComponent('git-repository', 'project', {});
    await makeBundle(work, path.join(project, 'git-repositories', 'initial.bundle'));

    const deployed = await runCli('dysnomia-containers', ['--deploy'], { env: machine.env });
    expect(deployed.exitCode, deployed.stderr).toBe(0);

    // The legacy server goes away: its container now points at a closed port, with a short timeout.
    await machine.addContainer('mysql-legacy', {
      type: 'mysql-database',
      mysqlUsername: mysql.user,
      mysqlHost: '127.0.0.1',
      mysqlPort: String(await closedPort()),
      timeout: '2',
    });

    const nightly = await runCli('dysnomia-containers', ['--snapshot'], { env: machine.env });
    expect(nightly.exitCode).toBe(1);
    expect(nightly.stdout).toMatch(new RegExp(`^git-repository/project\\s+done\\s+[0-9a-f]{12}\\s+\\d`, 'm'));
    expect(nightly.stdout).toMatch(new RegExp(`^mysql-production/${shop}\\s+done\\s+[0-9a-f]{12}\\s+\\d`, 'm'));
    expect(nightly.stdout).toMatch(new RegExp(`^mysql-legacy/${archive}\\s+FAILED\\s+-\\s+-`, 'm'));
    expect(nightly.stderr).toContain('1 of 3 components failed:');
    expect(nightly.stderr).toMatch(new RegExp(`snapshot of mysql-legacy/${archive} failed: \\[mysql-database\\] .*127\\.0\\.0\\.1`));
    // The failure's second line is indented under it in the closing list, as part of that item.
    expect(nightly.stderr).toContain(`\n    No snapshot of mysql-legacy/${archive} was stored; its generations are as they were.\n`);
    expect(await generations(machine.stateDir, `mysql-production/${shop}`)).toEqual(['1']);
    expect(await generations(machine.stateDir, 'git-repository/project')).toEqual(['1']);
    expect(await generations(machine.stateDir, `mysql-legacy/${archive}`)).toEqual([]);

    // The next night, with nothing changed: no new generations, and the failure is still loud.
    const again = await runCli('dysnomia-containers', ['--snapshot', '--json'], { env: machine.env });
    expect(again.exitCode).toBe(1);
    const json = JSON.parse(again.stdout) as {
      failed: number;
      outcomes: { component: string; status: string; result?: { snapshot?: { generation?: number } }; error?: { plugin?: string } }[];
    };
    expect(json.failed).toBe(1);
    expect(json.outcomes.map((o) => [o.component, o.status, o.result?.snapshot?.generation ?? o.error?.plugin])).toEqual([
      ['project', 'skipped', 1],
      [archive, 'failed', 'mysql-database'],
      [shop, 'skipped', 1],
    ]);
  });
});

describe('nightly dysnomia-containers --snapshot with the wrong state dir', () => {
  it('warns that the state dir does not exist instead of backing up nothing in silence', async () => {
    const machine = await useMachine();
    const missing = path.join(machine.root, 'no-such-state-dir');
    const result = await runCli('dysnomia-containers', ['--snapshot', '-q'], { env: { ...machine.env, DYSNOMIA_STATEDIR: missing } });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`the state dir ${missing} does not exist, so no component is activated in it`);
    expect(result.stderr).toContain('check DYSNOMIA_STATEDIR');
  });

  it('fails (exit 1, naming the path) when the state dir or a marker folder is a file, or cannot be read, instead of "nothing to do"', async () => {
    const machine = await useMachine();
    const file = path.join(machine.root, 'state-is-a-file');
    await writeFile(file, 'hello\n');
    for (const args of [['--snapshot'], ['--collect-garbage'], ['--query-activated-components']]) {
      const result = await runCli('dysnomia-containers', args, { env: { ...machine.env, DYSNOMIA_STATEDIR: file } });
      expect(result.exitCode, `${args}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toContain(`the state dir ${file} is not a folder`);
    }
    await mkdir(machine.stateDir, { recursive: true });
    await writeFile(path.join(machine.stateDir, 'activated'), '');
    const marker = await runCli('dysnomia-containers', ['--snapshot'], { env: machine.env });
    expect(marker.exitCode, marker.stderr).toBe(1);
    expect(marker.stderr).toContain(`the marker folder ${path.join(machine.stateDir, 'activated')} is not a folder`);
    await rm(path.join(machine.stateDir, 'activated'));
    // A file beside the container folders holds no markers and stops nothing.
    await mkdir(path.join(machine.stateDir, 'activated'));
    await writeFile(path.join(machine.stateDir, 'activated', 'README'), 'notes\n');
    const stray = await runCli('dysnomia-containers', ['--snapshot'], { env: machine.env });
    expect(stray.exitCode, stray.stderr).toBe(0);
    await mkdir(path.join(machine.stateDir, 'activated', 'git', 'project'), { recursive: true });
    await chmod(path.join(machine.stateDir, 'activated'), 0o700);
    await chmod(machine.root, 0o755);
    const denied = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, programPath('dysnomia-containers'), '--snapshot'],
      { env: { ...machine.env, HOME: machine.root }, reject: false },
    );
    expect(denied.exitCode, denied.stderr).toBe(1);
    expect(denied.stderr).toContain(`cannot read the marker folder ${path.join(machine.stateDir, 'activated')}: permission denied`);
    expect(denied.stderr).not.toContain('unexpected');
  });
});
