/**
 * mysql-database against Dysnomia's own expectations: its test command sequence
 * (tests/mysql-database.nix) run unchanged through a shell, with `dysnomia` on PATH; and
 * snapshots that Dysnomia itself took (`dump.sql.xz`) restored, safely.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { findMysql } from '../support/servers.js';
import { DYSNOMIA_TESTDB, mysqlSetup } from '../support/sql-setup.js';
import { uniqueName, useTempDir } from '../support/temp.js';

/** A folder with a `dysnomia` executable running the built CLI. */
async function dysnomiaOnPath(dir: string): Promise<string> {
  const bin = path.join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  await writeFile(path.join(bin, 'dysnomia'), `#!/bin/sh\nexec "${process.execPath}" "${programPath('dysnomia')}" "$@"\n`);
  await chmod(path.join(bin, 'dysnomia'), 0o755);
  return bin;
}

/** Dysnomia's snapshot pipeline: the dump without its last (dated) line, through xz. */
async function dysnomiaSnapshot(stateDir: string, container: string, component: string, database: string): Promise<string> {
  const tmp = await mkdtemp(path.join(stateDir, '.tmp-'));
  const file = path.join(tmp, 'dump.sql.xz');
  await execa('sh', ['-c', `mysqldump --single-transaction --quick "$1" | head -n-1 | xz > "$2"`, 'sh', database, file]);
  const { stdout } = await execa('sha256sum', [file]);
  const hash = stdout.slice(0, 64);
  const folder = path.join(stateDir, 'snapshots', container, component, hash);
  await mkdir(folder, { recursive: true });
  await execa('mv', [file, folder]);
  const generations = path.join(stateDir, 'generations', container, component);
  await mkdir(generations, { recursive: true });
  const next = (await readdir(generations)).length + 1;
  await symlink(`../../../snapshots/${container}/${component}/${hash}`, path.join(generations, String(next)));
  return folder;
}

describe('mysql-database and Dysnomia', () => {
  it("passes Dysnomia's test command sequence unchanged", { timeout: 180_000 }, async () => {
    const server = await findMysql();
    const dir = await useTempDir();
    const name = uniqueName('testdb');
    const user = uniqueName('root');
    await server.query('CREATE USER ?@? IDENTIFIED BY ?', [user, 'localhost', 'verysecret']);
    try {
      await server.query('GRANT ALL ON *.* TO ?@?', [user, 'localhost']);
      // The component as Dysnomia's deployment/mysql-database.nix builds it.
      const component = path.join(dir, name);
      await mkdir(path.join(component, 'mysql-databases'), { recursive: true });
      await writeFile(path.join(component, 'mysql-databases', 'testdb.sql'), DYSNOMIA_TESTDB);
      const bin = await dysnomiaOnPath(dir);
      const stateDir = path.join(dir, 'state');
      // Where the server is, when it is not on the default socket (never a secret).
      const location = Object.fromEntries(Object.entries(server.properties).filter(([key]) => /^mysql(Socket|Host|Port)$/.test(key)));
      const shell = (command: string) =>
        execa('bash', ['-c', command], {
          env: { PATH: `${bin}:${process.env.PATH}`, DYSNOMIA_STATEDIR: stateDir, ...location },
          reject: false,
        });
      const mustSucceed = async (command: string) => {
        const result = await shell(command);
        expect(result.exitCode, `${command}\n${result.stderr}`).toBe(0);
        return String(result.stdout);
      };
      const mustFail = async (command: string) => {
        const result = await shell(command);
        expect(result.exitCode, command).not.toBe(0);
      };
      const dysnomia = (operation: string) =>
        `mysqlUsername=${user} mysqlPassword=verysecret dysnomia --type mysql-database --operation ${operation} --component ${component} --environment`;
      const client = `mysql --user=${user} --password=verysecret -N ${name}`;
      const snapshots = `[ "$(ls $DYSNOMIA_STATEDIR/snapshots/mysql-database/* | wc -l)" = `;

      await mustSucceed(dysnomia('activate'));
      expect(await mustSucceed(`echo 'select * from test' | ${client}`)).toMatch(/Hello world/);
      await mustSucceed(dysnomia('activate'));
      await mustSucceed(dysnomia('snapshot'));
      await mustSucceed(`${snapshots}"1" ]`);
      await mustSucceed(dysnomia('snapshot'));
      await mustSucceed(`${snapshots}"1" ]`);
      await mustSucceed(`echo "insert into test values ('Bye world');" | ${client}`);
      await mustSucceed(dysnomia('snapshot'));
      await mustSucceed(`${snapshots}"2" ]`);
      await mustSucceed(dysnomia('collect-garbage'));
      await mustSucceed(`echo 'select * from test' | ${client}`);
      await mustSucceed(dysnomia('deactivate'));
      await mustSucceed(dysnomia('deactivate'));
      await mustSucceed(dysnomia('collect-garbage'));
      await mustFail(`echo 'select * from test' | ${client}`);
      await mustSucceed(dysnomia('activate'));
      await mustSucceed(dysnomia('restore'));
      expect(await mustSucceed(`echo 'select * from test' | ${client}`)).toMatch(/Bye world/);
    } finally {
      await server.query(`DROP DATABASE IF EXISTS ${name}`);
      await server.query('DROP USER IF EXISTS ?@?', [user, 'localhost']);
    }
  });

  it('restores a snapshot Dysnomia took (dump.sql.xz)', async () => {
    const setup = await mysqlSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    await setup.query("INSERT INTO test VALUES ('from Dysnomia')");
    const container = path.basename(setup.containerFile);
    const folder = await dysnomiaSnapshot(setup.stateDir, container, setup.name, setup.name);
    expect(await readdir(folder)).toEqual(['dump.sql.xz']);
    await setup.query("DELETE FROM test WHERE Test = 'Hello world'");
    await setup.query("INSERT INTO test VALUES ('later')");

    await setup.ok('restore');
    const rows = (await setup.query('SELECT Test FROM test')).map((row) => row.Test).sort();
    expect(rows).toEqual(['Hello world', 'from Dysnomia']);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('stops at an error in a Dysnomia snapshot and leaves the live database as it was', async () => {
    const setup = await mysqlSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    const container = path.basename(setup.containerFile);
    const broken = "DROP TABLE IF EXISTS `test`;\nCREATE TABLE `test` (`Test` varchar(255) NOT NULL, PRIMARY KEY (`Test`));\nINSERT INTO `test` VALUES ('half');\nTHIS IS NOT SQL;\nINSERT INTO `test` VALUES ('never');\n";
    const xz = Buffer.from((await execa('xz', ['-c'], { input: broken, encoding: 'buffer' })).stdout);
    // Named as Dysnomia names it: the SHA-256 of the dump file (a restore checks that first).
    const id = createHash('sha256').update(xz).digest('hex');
    const folder = path.join(setup.stateDir, 'snapshots', container, setup.name, id);
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'dump.sql.xz'), xz);
    const generations = path.join(setup.stateDir, 'generations', container, setup.name);
    await mkdir(generations, { recursive: true });
    await symlink(`../../../snapshots/${container}/${setup.name}/${id}`, path.join(generations, '1'));

    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/ERROR 1064 .* at line 4/);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(await setup.query('SELECT Test FROM test')).toEqual([{ Test: 'Hello world' }]);
    expect(await setup.databases()).toEqual([setup.name]);
    expect((await stat(folder)).isDirectory()).toBe(true);
  });
});
