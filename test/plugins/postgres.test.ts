/**
 * postgresql-database on the real PostgreSQL server: the shared lifecycle suite, activation
 * (script order, a failing script, an existing database), collect-garbage (terminating sessions),
 * shell, secrets, and every bad input: properties, component names, a server that is down.
 * Peer authentication and passwords are in postgres-peer.test.ts.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { lifecycleSuite } from '../support/lifecycle.js';
import { findPostgres } from '../support/servers.js';
import { watchSecrets } from '../support/sql-secrets.js';
import { DYSNOMIA_TESTDB, postgresSetup, writeContainer } from '../support/sql-setup.js';
import { uniqueName, useTempDir } from '../support/temp.js';

lifecycleSuite('postgresql-database', {
  async setup() {
    const setup = await postgresSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    return {
      properties: setup.properties,
      componentPath: setup.component,
      exists: setup.exists,
      state: async () => JSON.stringify(await setup.query('SELECT test FROM test ORDER BY test')),
      change: async () => {
        await setup.query("INSERT INTO test VALUES ('Bye world')");
      },
      // The databases are dropped when the test finishes (sql-setup registers that).
      cleanup: async () => {},
    };
  },
});

describe('postgresql-database activate', () => {
  it('creates the database and loads the scripts in name order; a second activate changes nothing', async () => {
    const setup = await postgresSetup({
      scripts: {
        '02-data.sql': "INSERT INTO t VALUES (1, 'one');\n",
        '01-schema.sql': 'CREATE TABLE t (id int PRIMARY KEY, s text);\n',
        '10-more.sql': "INSERT INTO t SELECT id + 1, 'two' FROM t;\n",
        'README': 'not SQL, never loaded',
      },
    });
    const result = await setup.ok('activate');
    expect(result.stderr).toContain(`created database ${setup.name}`);
    expect(await setup.query('SELECT id, s FROM t ORDER BY id')).toEqual([
      { id: 1, s: 'one' },
      { id: 2, s: 'two' },
    ]);
    await setup.query("INSERT INTO t VALUES (3, 'three')");
    await setup.ok('activate');
    expect(await setup.query('SELECT count(*)::int AS n FROM t')).toEqual([{ n: 3 }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('on a failing script: reports the file and the server error, and leaves no database behind', async () => {
    const setup = await postgresSetup({
      scripts: {
        '01-ok.sql': 'CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t VALUES (1);\n',
        '02-bad.sql': 'INSERT INTO t VALUES (2);\nINSERT INTO no_such_table VALUES (3);\nINSERT INTO t VALUES (4);\n',
        '03-never.sql': 'CREATE TABLE never (id int);\n',
      },
    });
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('02-bad.sql');
    expect(result.stderr).toMatch(/psql:<stdin>:2: ERROR: +relation "no_such_table" does not exist/);
    expect(result.stderr).toContain('Nothing was created');
    expect(await setup.databases()).toEqual([]);
    await writeFile(path.join(setup.component, 'postgresql-databases', '02-bad.sql'), 'INSERT INTO t VALUES (2);\n');
    await setup.ok('activate');
    expect(await setup.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
  });
});

describe('postgresql-database leftovers of a killed activation', () => {
  it('drops the staging database of an activation that never finished, saying the live one does not exist, then activates', async () => {
    const server = await findPostgres();
    const setup = await postgresSetup({ scripts: { '01.sql': 'CREATE TABLE t (x int);\n' } });
    await server.query(`CREATE DATABASE "${setup.name}__dys_new"`);
    const result = await setup.ok('activate');
    expect(result.stderr).toContain(
      `dropping ${setup.name}__dys_new, left behind by an interrupted restore or activation of ${setup.name} (${setup.name} does not exist: an activation that never finished`,
    );
    expect(result.stderr).not.toContain('itself is complete');
    expect(await setup.databases()).toEqual([setup.name]);
  });
});

describe('postgresql-database collect-garbage and shell', () => {
  it('drops the database only after deactivate, terminating the sessions on it with a log line', async () => {
    const server = await findPostgres();
    const setup = await postgresSetup({ scripts: { 'a.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    await setup.ok('collect-garbage');
    expect(await setup.exists()).toBe(true);
    await setup.ok('deactivate');
    const idle = new pg.Client({ host: server.socketDir ?? server.host, port: server.port, user: server.user, password: server.password, database: setup.name, application_name: 'idle-app' });
    await idle.connect();
    idle.on('error', () => {});
    try {
      const result = await setup.ok('collect-garbage');
      expect(result.stderr).toMatch(new RegExp(`terminating 1 session\\(s\\) connected to database ${setup.name} .*idle-app`));
      expect(result.stderr).toContain(`dropped database ${setup.name}`);
      expect(await setup.exists()).toBe(false);
    } finally {
      await idle.end().catch(() => {});
    }
  });

  it('shell sets PGHOST, PGPORT, PGUSER and PGDATABASE so that psql reaches the database', async () => {
    const setup = await postgresSetup({ scripts: { 'a.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    const result = await runCli(
      'dysnomia',
      ['--shell', '--component', setup.component, '--container', setup.containerFile, '--command', 'psql -X -At -c "SELECT test FROM test"'],
      { env: { DYSNOMIA_STATEDIR: setup.stateDir } },
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('Hello world\n');
    expect(result.stderr).toContain(`PostgreSQL database '${setup.name}'`);
    expect(result.stderr).toContain('psql');
  });
});

describe('postgresql-database bad input', () => {
  it('refuses an injection attempt in the component name with exit 2, before anything runs', async () => {
    const server = await findPostgres();
    const dir = await useTempDir();
    const canary = uniqueName('canary');
    await server.query(`CREATE DATABASE ${canary}`);
    try {
      const stateDir = path.join(dir, 'state');
      const container = path.join(dir, 'c');
      await writeContainer(container, server.properties);
      for (const name of [`x;drop database ${canary}`, `x"; drop database ${canary}; --`, 'has space', 'dotted.name', `${canary}__dys_old`]) {
        const component = path.join(dir, name);
        await mkdir(path.join(component, 'postgresql-databases'), { recursive: true });
        await writeFile(path.join(component, 'postgresql-databases', 'a.sql'), 'CREATE TABLE t (id int);\n');
        for (const operation of ['activate', 'snapshot', 'restore', 'collect-garbage']) {
          const result = await runCli('dysnomia', ['--operation', operation, '--component', component, '--container', container], {
            env: { DYSNOMIA_STATEDIR: stateDir },
          });
          expect(result.exitCode, `${name} ${operation}: ${result.stderr}`).toBe(2);
          expect(result.stderr).toMatch(/not a usable component name|cannot be a database name|reserves/);
        }
      }
      expect(await server.query('SELECT 1 FROM pg_database WHERE datname = $1', [canary])).toHaveLength(1);
      expect(await server.query("SELECT datname FROM pg_database WHERE datname LIKE 'x%' OR datname LIKE 'has%'")).toEqual([]);
      // Not even a lock: exit 2 leaves the state dir as it was (here: not there at all).
      expect(existsSync(stateDir)).toBe(false);
    } finally {
      await server.query(`DROP DATABASE IF EXISTS ${canary}`);
    }
  });

  it('names the container file and key of a bad property (exit 2)', async () => {
    const setup = await postgresSetup();
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [{ postgresqlPort: 'fivefourthreetwo' }, 'postgresqlPort', /"fivefourthreetwo" is not a port number/],
      [{ postgresqlPort: '0' }, 'postgresqlPort', /not a port number/],
      [{ timeout: 'x' }, 'timeout', /not a number of seconds/],
      // The drivers would take a relative socket folder for a host name and wait for it to resolve.
      [{ postgresqlRuntimeDir: 'run/postgresql' }, 'postgresqlRuntimeDir', /"run\/postgresql" is not an absolute path/],
      [{ timeout: '3000000' }, 'timeout', /"3000000" is too long: at most 2147483 seconds/],
      [{ postgresqlRowOrder: 'random' }, 'postgresqlRowOrder', /"random" is not one of physical, key/],
      [{ postgresqlPasswordFile: '/dev/null/nope' }, 'postgresqlPasswordFile', /cannot read the password file \/dev\/null\/nope \(ENOTDIR\)/],
      [{ postgresqlPassword: 'a', postgresqlPasswordFile: '/etc/hostname' }, 'postgresqlPasswordFile', /either postgresqlPassword or postgresqlPasswordFile/],
    ];
    for (const [properties, key, message] of cases) {
      const result = await setup.run('activate', { properties });
      expect(result.exitCode, result.stderr).toBe(2);
      expect(result.stderr).toContain('-container-');
      expect(result.stderr).toContain(`: ${key}: `);
      expect(result.stderr).toMatch(message);
    }
    expect(await setup.databases()).toEqual([]);
  });

  it('fails clearly after `timeout` when the server is down (closed port, missing socket)', async () => {
    const setup = await postgresSetup();
    const down: Array<Record<string, string>> = [
      { postgresqlHost: '127.0.0.1', postgresqlPort: '1', timeout: '2' },
      { postgresqlHost: '', postgresqlRuntimeDir: path.join(setup.dir, 'no-such-dir'), timeout: '2' },
    ];
    for (const properties of down) {
      const started = performance.now();
      const result = await setup.run('activate', { properties });
      const seconds = (performance.now() - started) / 1000;
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toMatch(/the PostgreSQL server at \S+ did not answer within 2 s \(.*(ECONNREFUSED|ENOENT).*\); start the server/);
      expect(seconds).toBeGreaterThanOrEqual(1.8);
    }
    expect(await readdir(path.join(setup.stateDir, 'activated')).catch(() => [])).toEqual([]);
  });

  it('a snapshot that fails says that nothing was stored, and makes no generation', async () => {
    const setup = await postgresSetup();
    expect((await setup.run('activate')).exitCode).toBe(0);
    const result = await setup.run('snapshot', { properties: { postgresqlHost: '127.0.0.1', postgresqlPort: '1', timeout: '1' } });
    expect(result.exitCode, result.stderr).toBe(1);
    // Said once: the fingerprint, read first, does not wait on its own and then leave it to the dump.
    expect(result.stderr.match(/did not answer within 1 s/g), result.stderr).toHaveLength(1);
    expect(result.stderr).not.toContain('fingerprint');
    expect(result.stderr).toMatch(/No snapshot of \S+ was stored; its generations are as they were\./);
    expect(await readdir(path.join(setup.stateDir, 'generations')).catch(() => [])).toEqual([]);
  });

  it('never puts the password on a command line, and removes its private password file', async () => {
    const password = `pw-${uniqueName('s')}`;
    const setup = await postgresSetup({
      properties: { postgresqlPassword: password },
      scripts: { '01.sql': "CREATE TABLE big AS SELECT g AS id, md5(g::text) AS s FROM generate_series(1, 20000) g;\n" },
    });
    const tmp = path.join(setup.dir, 'tmp');
    await mkdir(tmp);
    for (const operation of ['activate', 'snapshot', 'restore']) {
      const seen = await watchSecrets(password, tmp, () => setup.run(operation, { env: { TMPDIR: tmp } }));
      expect(seen.result.exitCode, seen.result.stderr).toBe(0);
      expect(seen.commandLines, `${operation}: the password on a command line`).toEqual([]);
      expect(seen.badModes, `${operation}: secret files readable by others`).toEqual([]);
      expect(await readdir(tmp), `${operation} left files in TMPDIR`).toEqual([]);
      expect(seen.secretFiles, `${operation} used no password file`).toBeGreaterThan(0);
    }
    expect(await setup.query('SELECT count(*)::int AS n FROM big')).toEqual([{ n: 20000 }]);
  });
});
