/**
 * postgresql-database on a server set up like stock Debian/Ubuntu (sql-cluster.ts): peer
 * authentication on the local socket, passwords over TCP. Dysnomia's test command sequence runs
 * unchanged, as root with a `root` role (NixOS style) and with postgresqlUsername=postgres
 * (Debian style, where dysnomia reaches the server as the OS user postgres); TCP works with the
 * right password and fails clearly with a wrong one.
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { createPeerCluster, type PeerCluster } from '../support/sql-cluster.js';
import { DYSNOMIA_TESTDB, postgresSetup } from '../support/sql-setup.js';
import { uniqueName, useTempDir } from '../support/temp.js';

let cluster: PeerCluster;

beforeAll(async () => {
  cluster = await createPeerCluster();
}, 120_000);

afterAll(async () => {
  await cluster?.drop();
}, 120_000);

/** Runs Dysnomia's tests/postgresql-database.nix command sequence; `psql` is how its checks run psql. */
async function dysnomiaSequence(user: string, psql: string): Promise<void> {
  const dir = await useTempDir();
  const name = uniqueName('testdb');
  const component = path.join(dir, name);
  await mkdir(path.join(component, 'postgresql-databases'), { recursive: true });
  await writeFile(path.join(component, 'postgresql-databases', 'testdb.sql'), DYSNOMIA_TESTDB);
  const bin = path.join(dir, 'bin');
  await mkdir(bin);
  await writeFile(path.join(bin, 'dysnomia'), `#!/bin/sh\nexec "${process.execPath}" "${programPath('dysnomia')}" "$@"\n`);
  await chmod(path.join(bin, 'dysnomia'), 0o755);
  // The server's port for both dysnomia and psql; the commands themselves are Dysnomia's.
  const env = {
    PATH: `${bin}:${process.env.PATH}`,
    DYSNOMIA_STATEDIR: path.join(dir, 'state'),
    postgresqlPort: String(cluster.port),
    PGPORT: String(cluster.port),
  };
  const shell = (command: string) => execa('bash', ['-c', command], { env, reject: false, cwd: '/' });
  const mustSucceed = async (command: string) => {
    const result = await shell(command);
    expect(result.exitCode, `${command}\n${result.stderr}`).toBe(0);
    return String(result.stdout);
  };
  const mustFail = async (command: string) => {
    expect((await shell(command)).exitCode, command).not.toBe(0);
  };
  const dysnomia = (operation: string) =>
    `postgresqlUsername=${user} dysnomia --type postgresql-database --operation ${operation} --component ${component} --environment`;
  const snapshots = `[ "$(ls $DYSNOMIA_STATEDIR/snapshots/postgresql-database/* | wc -l)" = `;
  try {
    await mustSucceed(dysnomia('activate'));
    expect(await mustSucceed(`echo 'select * from test' | ${psql} --file - ${name}`)).toMatch(/Hello world/);
    await mustSucceed(dysnomia('activate'));
    await mustSucceed(dysnomia('snapshot'));
    await mustSucceed(`${snapshots}"1" ]`);
    await mustSucceed(dysnomia('snapshot'));
    await mustSucceed(`${snapshots}"1" ]`);
    await mustSucceed(`echo "insert into test values ('Bye world');" | ${psql} --file - ${name}`);
    await mustSucceed(dysnomia('snapshot'));
    await mustSucceed(`${snapshots}"2" ]`);
    await mustSucceed(dysnomia('collect-garbage'));
    await mustSucceed(`echo 'select * from test;' | ${psql} --file - ${name}`);
    await mustSucceed(dysnomia('deactivate'));
    await mustSucceed(dysnomia('deactivate'));
    await mustSucceed(dysnomia('collect-garbage'));
    await mustFail(`echo 'select * from test;' | ${psql} --file - ${name}`);
    await mustSucceed(dysnomia('activate'));
    await mustSucceed(dysnomia('restore'));
    expect(await mustSucceed(`echo 'select * from test' | ${psql} --file - ${name}`)).toMatch(/Bye world/);
    const left = await cluster.server.query("SELECT datname FROM pg_database WHERE datname LIKE $1 || '%'", [name]);
    expect(left).toEqual([{ datname: name }]);
  } finally {
    await cluster.server.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}

describe('postgresql-database with peer authentication', () => {
  it('refuses root over the socket as the cluster is set up (the test is real)', async () => {
    const result = await execa('psql', ['--port', String(cluster.port), '--username', 'postgres', '--no-psqlrc', '--command', 'SELECT 1'], { reject: false, cwd: '/' });
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('Peer authentication failed for user "postgres"');
  });

  it("passes Dysnomia's test command sequence as root with a root role (NixOS style)", { timeout: 180_000 }, async () => {
    await cluster.server.query('CREATE ROLE root SUPERUSER LOGIN');
    try {
      await dysnomiaSequence('root', 'psql');
    } finally {
      await cluster.server.query('DROP ROLE IF EXISTS root');
    }
  });

  it("passes Dysnomia's test command sequence with postgresqlUsername=postgres, reaching the server as OS user postgres (Debian style)", { timeout: 180_000 }, async () => {
    await dysnomiaSequence('postgres', 'runuser -u postgres -- psql');
  });

  it('says what to do when the role has no OS user of its name', async () => {
    const role = uniqueName('role');
    await cluster.server.query(`CREATE ROLE ${role} SUPERUSER LOGIN`);
    try {
      const setup = await postgresSetup({ postgres: cluster.server, properties: { postgresqlUsername: role } });
      const result = await setup.run('activate');
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toContain(`Peer authentication failed for user "${role}"`);
      expect(result.stderr).toContain(`admits role ${role} only to the OS user of that name`);
      expect(result.stderr).toContain('set postgresqlHost and a password');
      expect(await setup.databases()).toEqual([]);
    } finally {
      await cluster.server.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });
});

describe('postgresql-database with a password over TCP', () => {
  it('works with the right password (inline or in a file) and fails clearly with a wrong one', async () => {
    const setup = await postgresSetup({
      postgres: cluster.server,
      properties: { postgresqlHost: '127.0.0.1', postgresqlPassword: cluster.password },
      scripts: { 'testdb.sql': DYSNOMIA_TESTDB },
    });
    const wrong = await setup.run('activate', { properties: { postgresqlPassword: 'not-the-password' } });
    expect(wrong.exitCode, wrong.stderr).toBe(1);
    expect(wrong.stderr).toContain(`cannot log in to the PostgreSQL server at 127.0.0.1:${cluster.port} as "postgres"`);
    expect(wrong.stderr).toContain('password authentication failed for user "postgres"');
    expect(wrong.stderr).toContain('check postgresqlUsername and postgresqlPassword');
    expect(wrong.stderr).not.toContain(cluster.password);
    expect(await setup.databases()).toEqual([]);

    const passwordFile = path.join(setup.dir, 'pgpassword');
    await writeFile(passwordFile, `${cluster.password}\n`, { mode: 0o600 });
    const fromFile = await setup.run('activate', { properties: { postgresqlPassword: '', postgresqlPasswordFile: passwordFile } });
    expect(fromFile.exitCode, fromFile.stderr).toBe(0);
    await setup.ok('snapshot');
    await setup.query("INSERT INTO test VALUES ('later')");
    await setup.ok('restore');
    expect(await setup.query('SELECT test FROM test')).toEqual([{ test: 'Hello world' }]);
  });
});
