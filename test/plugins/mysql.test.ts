/**
 * mysql-database on the real MariaDB/MySQL server: the shared lifecycle suite, activation
 * (script order, a failing script, an existing database), collect-garbage, shell, and every bad
 * input: properties, component names, a wrong password, a server that is down.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { HostLineFilter, HostLineRemover } from '../../src/plugins/mysql/dump.js';
import { runCli } from '../support/cli.js';
import { watchSecrets } from '../support/sql-secrets.js';
import { lifecycleSuite } from '../support/lifecycle.js';
import { filterInReusedMemory } from '../support/pieces.js';
import { findMysql } from '../support/servers.js';
import { DYSNOMIA_TESTDB, mysqlSetup, writeContainer } from '../support/sql-setup.js';
import { uniqueName, useTempDir } from '../support/temp.js';

lifecycleSuite('mysql-database', {
  async setup() {
    const setup = await mysqlSetup({ scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    const rows = async () => JSON.stringify(await setup.query('SELECT Test FROM test ORDER BY Test'));
    return {
      properties: setup.properties,
      componentPath: setup.component,
      exists: setup.exists,
      state: rows,
      change: async () => {
        await setup.query("INSERT INTO test VALUES ('Bye world')");
      },
      // The databases are dropped when the test finishes (sql-setup registers that).
      cleanup: async () => {},
    };
  },
});

describe('mysql-database activate', () => {
  it('creates the database and loads the scripts in name order; a second activate changes nothing', async () => {
    const setup = await mysqlSetup({
      scripts: {
        '02-data.sql': "INSERT INTO t VALUES (1, 'one');\n",
        '01-schema.sql': 'CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10));\n',
        '10-more.sql': "INSERT INTO t SELECT id + 1, 'two' FROM t;\n",
        'notes.txt': 'not SQL, never loaded',
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
    expect(await setup.query('SELECT COUNT(*) AS n FROM t')).toEqual([{ n: 3 }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('creates an empty database when the component has no scripts', async () => {
    const setup = await mysqlSetup();
    await setup.ok('activate');
    expect(await setup.exists()).toBe(true);
    expect(await setup.query('SHOW TABLES')).toEqual([]);
  });

  it('on a failing script: reports the file and the server error, and leaves no database behind', async () => {
    const setup = await mysqlSetup({
      scripts: {
        '01-ok.sql': 'CREATE TABLE t (id INT PRIMARY KEY);\nINSERT INTO t VALUES (1);\n',
        '02-bad.sql': 'INSERT INTO t VALUES (2);\nINSERT INTO no_such_table VALUES (3);\nINSERT INTO t VALUES (4);\n',
        '03-never.sql': 'CREATE TABLE never (id INT);\n',
      },
    });
    const result = await setup.run('activate');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('02-bad.sql');
    expect(result.stderr).toMatch(/ERROR 1146 .*at line 2.*no_such_table/);
    expect(result.stderr).toContain('Nothing was created');
    expect(await setup.databases()).toEqual([]);
    // A retry after fixing the script starts clean.
    await writeFile(path.join(setup.component, 'mysql-databases', '02-bad.sql'), 'INSERT INTO t VALUES (2);\n');
    await setup.ok('activate');
    expect(await setup.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
    expect(await setup.query('SHOW TABLES')).toEqual([{ [`Tables_in_${setup.name}`]: 'never' }, { [`Tables_in_${setup.name}`]: 't' }]);
  });

  it('keeps views, routines, triggers and events of the initial scripts', async () => {
    const setup = await mysqlSetup({
      scripts: {
        '01.sql': [
          'CREATE TABLE t (id INT PRIMARY KEY);',
          'CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, msg TEXT);',
          "CREATE TRIGGER t_ins AFTER INSERT ON t FOR EACH ROW INSERT INTO audit (msg) VALUES (CONCAT('added ', NEW.id));",
          'CREATE VIEW v AS SELECT id * 2 AS doubled FROM t;',
          'CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;',
          'CREATE EVENT tidy ON SCHEDULE EVERY 1 DAY STARTS \'2030-01-01 00:00:00\' DISABLE DO DELETE FROM audit;',
          '',
        ].join('\n'),
      },
    });
    await setup.ok('activate');
    await setup.query('INSERT INTO t VALUES (21)');
    expect(await setup.query('SELECT msg FROM audit')).toEqual([{ msg: 'added 21' }]);
    expect(await setup.query('SELECT doubled, twice(5) AS f FROM v')).toEqual([{ doubled: 42, f: 10 }]);
    expect(await setup.query('SELECT EVENT_NAME AS e FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()')).toEqual([
      { e: 'tidy' },
    ]);
  });
});

/** A dump's header as mariadb-dump 10.11 writes it, and a routine body that looks like it. */
const HEADER = [
  '/*M!999999\\- enable the sandbox mode */ ',
  '-- MariaDB dump 10.19  Distrib 10.11.6-MariaDB, for debian-linux-gnu (x86_64)',
  '--',
  '-- Host: localhost    Database: testdb',
  '-- ------------------------------------------------------',
  '-- Server version\t10.11.6-MariaDB-0+deb12u1',
  '',
  '/*!40101 SET NAMES utf8mb4 */;',
  'DELIMITER ;;',
  'CREATE PROCEDURE `p`()',
  'BEGIN',
  '-- Host: kept, a comment in a body',
  'SELECT 1;',
  'END ;;',
  'DELIMITER ;',
  '',
].join('\n');

describe('mysql-database snapshot identity', () => {
  it('leaves the host line out of the dump header, and only there, however the stream is cut', async () => {
    const filter = async (pieces: Buffer[]) => {
      const streamed = (await buffer(Readable.from(pieces).pipe(new HostLineRemover()))).toString('utf8');
      // The same in reused memory, as a snapshot reads the dump (sql/tool-output.ts).
      expect(filterInReusedMemory(new HostLineFilter(), pieces).toString('utf8')).toBe(streamed);
      return streamed;
    };
    const expected = HEADER.replace('-- Host: localhost    Database: testdb\n', '');
    expect(await filter([Buffer.from(HEADER)])).toBe(expected);
    expect(expected).toContain('-- Host: kept, a comment in a body');
    const bytes = Buffer.from(HEADER);
    for (let cut = 1; cut < bytes.length; cut += 3) {
      expect(await filter([bytes.subarray(0, cut), bytes.subarray(cut)])).toBe(expected);
    }
    expect(await filter(Array.from(bytes).map((b) => Buffer.from([b])))).toBe(expected);
    // A stream without a header, or shorter than one, passes unchanged.
    expect(await filter([Buffer.from('SELECT 1;\n-- Host: x\n')])).toBe('SELECT 1;\n-- Host: x\n');
    expect(await filter([Buffer.from('-- Host: x')])).toBe('-- Host: x');
    // mysqldump's header (no sandbox line) loses its host line too.
    expect(await filter([Buffer.from('-- MySQL dump 10.13\n--\n-- Host: 127.0.0.1    Database: d\n-- ---\nSELECT 1;\n')])).toBe(
      '-- MySQL dump 10.13\n--\n-- ---\nSELECT 1;\n',
    );
    // A header longer than the filter looks at, cut in one-byte pieces: no line is cut in two or glued to another.
    const long = `-- x\n-- ${'y'.repeat(4000)}\n-- Host: h    Database: d\n-- more\nrest\n`;
    expect(await filter(Array.from(Buffer.from(long)).map((b) => Buffer.from([b])))).toBe(long.replace('-- Host: h    Database: d\n', ''));
    const longer = `-- x\n-- ${'y'.repeat(4090)}\n-- Host: h    Database: d\nrest\n`;
    expect(await filter(Array.from(Buffer.from(longer)).map((b) => Buffer.from([b])))).toBe(longer);
  });

  it('gives an unchanged database the same snapshot whether the server is reached over the socket or over TCP', async () => {
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { 'testdb.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // The same server the other way: TCP to 127.0.0.1 instead of the socket (or the reverse).
    const { mysqlSocket, mysqlHost, ...rest } = setup.properties;
    const otherWay =
      mysqlSocket !== undefined || mysqlHost === 'localhost'
        ? { ...rest, mysqlHost: '127.0.0.1', mysqlPort: rest.mysqlPort ?? '3306' }
        : { ...rest, mysqlHost: 'localhost' };
    await writeContainer(setup.containerFile, otherWay);
    const result = await setup.ok('snapshot');
    expect(result.stderr).toMatch(/unchanged: \S+ is already generation 1/);
    expect(await setup.generations()).toEqual(['1']);
  });
});

describe('mysql-database collect-garbage and shell', () => {
  it('drops the database only after deactivate', async () => {
    const setup = await mysqlSetup({ scripts: { 'a.sql': DYSNOMIA_TESTDB } });
    await setup.ok('activate');
    await setup.ok('collect-garbage');
    expect(await setup.exists()).toBe(true);
    await setup.ok('deactivate');
    expect(await setup.exists()).toBe(true);
    const result = await setup.ok('collect-garbage');
    expect(result.stderr).toContain(`dropped database ${setup.name}`);
    expect(await setup.exists()).toBe(false);
  });

  it('shell prints how to reach the database, sets MYSQL_UNIX_PORT, and never shows the password', async () => {
    const setup = await mysqlSetup({ properties: { mysqlPassword: 'pw-never-shown-7731' } });
    const result = await runCli(
      'dysnomia',
      ['--shell', '--component', setup.component, '--container', setup.containerFile, '--command', 'echo "socket=$MYSQL_UNIX_PORT"'],
      { env: { DYSNOMIA_STATEDIR: setup.stateDir } },
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`mysql --user=${setup.properties.mysqlUsername} -p`);
    expect(result.stderr).toContain(setup.name);
    expect(result.stderr).not.toContain('pw-never-shown-7731');
    const socket = setup.properties.mysqlSocket;
    if (socket !== undefined) expect(result.stdout).toContain(`socket=${socket}`);
    else expect(result.stdout).toContain('socket=');
  });
});

describe('mysql-database bad input', () => {
  it('refuses an injection attempt in the component name with exit 2, before anything runs', async () => {
    const server = await findMysql();
    const dir = await useTempDir();
    const canary = uniqueName('canary');
    await server.query(`CREATE DATABASE ${canary}`);
    try {
      const stateDir = path.join(dir, 'state');
      const container = path.join(dir, 'c');
      await writeContainer(container, server.properties);
      for (const name of [`x;drop database ${canary}`, `x\`; drop database ${canary}; --`, 'has space', 'dotted.name', `${canary}__dys_new`]) {
        const component = path.join(dir, name);
        await mkdir(path.join(component, 'mysql-databases'), { recursive: true });
        await writeFile(path.join(component, 'mysql-databases', 'a.sql'), 'CREATE TABLE t (id INT);\n');
        // The core refuses names that cannot be a state-dir folder, the plugin the rest: for every
        // operation that names the database, before the component is locked.
        for (const operation of ['activate', 'snapshot', 'restore', 'collect-garbage']) {
          const result = await runCli('dysnomia', ['--operation', operation, '--component', component, '--container', container], {
            env: { DYSNOMIA_STATEDIR: stateDir },
          });
          expect(result.exitCode, `${name} ${operation}: ${result.stderr}`).toBe(2);
          expect(result.stderr).toMatch(/not a usable component name|cannot be a database name|reserves/);
        }
      }
      expect(await server.query('SHOW DATABASES LIKE ?', [canary])).toHaveLength(1);
      expect(await server.query("SHOW DATABASES LIKE 'x%'")).toEqual([]);
      // Not even a lock: exit 2 leaves the state dir as it was (here: not there at all).
      expect(existsSync(stateDir)).toBe(false);
    } finally {
      await server.query(`DROP DATABASE IF EXISTS ${canary}`);
    }
  });

  it('refuses a component that is a file, or whose mysql-databases is a file (exit 2, naming it), and creates nothing', async () => {
    const setup = await mysqlSetup();
    await rm(setup.component, { recursive: true, force: true });
    await writeFile(setup.component, 'not a folder\n');
    const file = await setup.run('activate');
    expect(file.exitCode, file.stderr).toBe(2);
    expect(file.stderr).toContain(`${setup.component}: the component is a file, not a folder`);
    await rm(setup.component);
    await mkdir(setup.component);
    await writeFile(path.join(setup.component, 'mysql-databases'), 'CREATE TABLE t (x INT);\n');
    const scripts = await setup.run('activate');
    expect(scripts.exitCode, scripts.stderr).toBe(2);
    expect(scripts.stderr).toContain(`${path.join(setup.component, 'mysql-databases')}: is a file; it should be a folder of *.sql scripts`);
    expect(await setup.exists()).toBe(false);
    expect(await setup.databases()).toEqual([]);
  });

  it('names the container file and key of a bad property (exit 2)', async () => {
    const setup = await mysqlSetup();
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [{ mysqlPort: 'abc' }, 'mysqlPort', /"abc" is not a port number/],
      [{ mysqlPort: '70000' }, 'mysqlPort', /not a port number/],
      [{ timeout: '-3' }, 'timeout', /not a number of seconds/],
      [{ timeout: 'soon' }, 'timeout', /not a number of seconds/],
      [{ timeout: '0x10' }, 'timeout', /"0x10" is not a number of seconds/],
      // Node's timers overflow past 24.8 days and fire at once: every connection attempt failed.
      [{ timeout: '1e9' }, 'timeout', /"1e9" is not a number of seconds/],
      [{ timeout: '2147484' }, 'timeout', /"2147484" is too long: at most 2147483 seconds/],
      [{ mysqlPort: ' 3306' }, 'mysqlPort', /" 3306" is not a port number/],
      [{ mysqlPasswordFile: '/dev/null/nope' }, 'mysqlPasswordFile', /cannot read the password file \/dev\/null\/nope \(ENOTDIR\)/],
      [{ mysqlPasswordFile: setup.dir }, 'mysqlPasswordFile', /cannot read the password file .* \(EISDIR\)/],
      [{ mysqlPassword: 'a', mysqlPasswordFile: '/etc/hostname' }, 'mysqlPasswordFile', /either mysqlPassword or mysqlPasswordFile/],
      [{ mysqlHost: '127.0.0.1', mysqlSocket: '/run/x.sock' }, 'mysqlHost', /both mysqlSocket and mysqlHost/],
    ];
    for (const [properties, key, message] of cases) {
      const result = await setup.run('activate', { properties });
      expect(result.exitCode, result.stderr).toBe(2);
      expect(result.stderr).toContain(`-container-`);
      expect(result.stderr).toContain(`: ${key}: `);
      expect(result.stderr).toMatch(message);
    }
    expect(await setup.databases()).toEqual([]);
  });

  it('reads the password from mysqlPasswordFile, and says so when it is wrong (exit 1)', async () => {
    const server = await findMysql();
    const user = uniqueName('u');
    await server.query('CREATE USER ?@? IDENTIFIED BY ?', [user, 'localhost', 'right "pass\\word #1']);
    await server.query('CREATE USER ?@? IDENTIFIED BY ?', [user, '127.0.0.1', 'right "pass\\word #1']);
    try {
      await server.query('GRANT ALL ON *.* TO ?@?', [user, 'localhost']);
      await server.query('GRANT ALL ON *.* TO ?@?', [user, '127.0.0.1']);
      const setup = await mysqlSetup({ properties: { mysqlUsername: user }, scripts: { 'a.sql': DYSNOMIA_TESTDB } });
      const passwordFile = path.join(setup.dir, 'password');
      await writeFile(passwordFile, 'right "pass\\word #1\n');
      await chmod(passwordFile, 0o600);

      const wrong = await setup.run('activate', { properties: { mysqlPassword: 'wrong' } });
      expect(wrong.exitCode, wrong.stderr).toBe(1);
      expect(wrong.stderr).toContain(`cannot log in to the MariaDB/MySQL server`);
      expect(wrong.stderr).toContain(JSON.stringify(user));
      expect(wrong.stderr).toContain('check mysqlUsername and mysqlPassword');
      expect(wrong.stderr).not.toContain('right "pass');
      expect(await setup.databases()).toEqual([]);

      const right = await setup.run('activate', { properties: { mysqlPasswordFile: passwordFile } });
      expect(right.exitCode, right.stderr).toBe(0);
      expect(await setup.query('SELECT Test FROM test')).toEqual([{ Test: 'Hello world' }]);
    } finally {
      await server.query('DROP USER IF EXISTS ?@?, ?@?', [user, 'localhost', user, '127.0.0.1']);
    }
  });

  it('fails clearly after `timeout` when the server is down (closed port, missing socket)', async () => {
    const setup = await mysqlSetup();
    for (const properties of [
      { mysqlHost: '127.0.0.1', mysqlPort: '1', mysqlSocket: '', timeout: '2' },
      { mysqlSocket: path.join(setup.dir, 'no-such.sock'), mysqlHost: '', mysqlPort: '', timeout: '2' },
    ]) {
      const started = performance.now();
      const result = await setup.run('activate', { properties });
      const seconds = (performance.now() - started) / 1000;
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toMatch(/the MariaDB\/MySQL server at \S+ did not answer within 2 s \(.*(ECONNREFUSED|ENOENT).*\); start the server/);
      expect(seconds).toBeGreaterThanOrEqual(1.8);
    }
    const marker = await readdir(path.join(setup.stateDir, 'activated')).catch(() => []);
    expect(marker).toEqual([]);
  });
});

describe('mysql-database secrets', () => {
  it('never puts the password on a command line, and removes its private option file', async () => {
    const server = await findMysql();
    const user = uniqueName('u');
    const password = `pw-${uniqueName('s')}`;
    await server.query('CREATE USER ?@? IDENTIFIED BY ?', [user, 'localhost', password]);
    try {
      await server.query('GRANT ALL ON *.* TO ?@?', [user, 'localhost']);
      const rows = ['CREATE TABLE big (id INT PRIMARY KEY, s CHAR(64));', "INSERT INTO big VALUES (1, SHA2('1', 256));"];
      for (let i = 0; i < 13; i++) rows.push('INSERT INTO big SELECT id + (SELECT MAX(id) FROM big), SHA2(id, 256) FROM big;');
      const setup = await mysqlSetup({ properties: { mysqlUsername: user, mysqlPassword: password }, scripts: { '01.sql': `${rows.join('\n')}\n` } });
      const tmp = path.join(setup.dir, 'tmp');
      await mkdir(tmp);
      for (const operation of ['activate', 'snapshot', 'restore']) {
        const seen = await watchSecrets(password, tmp, () => setup.run(operation, { env: { TMPDIR: tmp } }));
        expect(seen.result.exitCode, seen.result.stderr).toBe(0);
        expect(seen.commandLines, `${operation}: the password on a command line`).toEqual([]);
        expect(seen.badModes, `${operation}: secret files readable by others`).toEqual([]);
        expect(await readdir(tmp), `${operation} left files in TMPDIR`).toEqual([]);
        if (operation !== 'activate') expect(seen.secretFiles, `${operation} used no option file`).toBeGreaterThan(0);
      }
      expect(await setup.query('SELECT COUNT(*) AS n FROM big')).toEqual([{ n: 8192 }]);
    } finally {
      await server.query('DROP USER IF EXISTS ?@?', [user, 'localhost']);
    }
  });
});
