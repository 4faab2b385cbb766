/**
 * mysql-database snapshots and restores on the real server: what a naive dump loses comes back
 * (routines, triggers, events, views, utf8mb4 text, binary strings, NULLs), an unchanged database
 * keeps its identity, and a restore never loses the live database: not on a corrupted snapshot,
 * not on a load error, not when killed at any moment (through the CLI, and statement by statement
 * through the swap itself).
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import mysql from 'mysql2/promise';
import { describe, expect, it, onTestFinished } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { MysqlConnection } from '../../src/plugins/mysql/client.js';
import { recoverSwap, swapIn, swapOrSettle, SwapOutcomeUnknown } from '../../src/plugins/mysql/swap.js';
import { databaseNames } from '../../src/plugins/sql/names.js';
import { findMysql } from '../support/servers.js';
import { mysqlSetup, type SqlSetup } from '../support/sql-setup.js';
import { uniqueName } from '../support/temp.js';

/** Every byte value, as MySQL hex. */
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex');
const TEXT = "utf8mb4: 🦄 漢字 Ünïcödé ‘quotes’ 'single' \"double\" back\\slash tab\t newline\n end";

const RICH_SCHEMA = [
  'CREATE TABLE data (id INT PRIMARY KEY, txt TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin, bin BLOB, vb VARBINARY(300), maybe VARCHAR(10), amount DECIMAL(30,10), at DATETIME(6), js JSON);',
  'CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, msg VARCHAR(200));',
  'CREATE TABLE parent (id INT PRIMARY KEY);',
  'CREATE TABLE child (id INT PRIMARY KEY, parent_id INT, CONSTRAINT fk_child_parent FOREIGN KEY (parent_id) REFERENCES parent (id));',
  "CREATE TRIGGER data_ins BEFORE INSERT ON data FOR EACH ROW SET NEW.maybe = IFNULL(NEW.maybe, 'trig');",
  "CREATE TRIGGER data_audit AFTER INSERT ON data FOR EACH ROW INSERT INTO audit (msg) VALUES (CONCAT('inserted ', NEW.id));",
  'CREATE VIEW data_view AS SELECT id, LENGTH(bin) AS len FROM data;',
  'CREATE VIEW data_view2 AS SELECT COUNT(*) AS n FROM data_view;',
  'CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;',
  "CREATE PROCEDURE add_row(IN i INT) INSERT INTO data (id, txt) VALUES (i, 'from procedure');",
  "CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2031-01-01 03:00:00' DISABLE COMMENT 'kept' DO DELETE FROM audit;",
  '',
].join('\n');

async function fillRich(setup: SqlSetup): Promise<void> {
  await setup.query('INSERT INTO data VALUES (1, ?, UNHEX(?), UNHEX(?), NULL, 12345678901234567890.0123456789, ?, ?)', [
    TEXT,
    ALL_BYTES,
    ALL_BYTES,
    '2024-02-29 23:59:59.123456',
    JSON.stringify({ emoji: '🦄', nested: [1, null, 'x'] }),
  ]);
  await setup.query("INSERT INTO data (id, txt, bin, maybe) VALUES (2, '', '', '')");
  await setup.query('INSERT INTO data (id) VALUES (3)');
  await setup.query('INSERT INTO parent VALUES (1), (2)');
  await setup.query('INSERT INTO child VALUES (10, 1), (11, 2), (12, NULL)');
}

/** Everything a restore must bring back, as text. */
async function richState(setup: SqlSetup): Promise<string> {
  const rows = await setup.query(
    'SELECT id, HEX(txt) AS txt, HEX(bin) AS bin, HEX(vb) AS vb, maybe, maybe IS NULL AS maybe_null, CAST(amount AS CHAR) AS amount, CAST(at AS CHAR) AS at, js FROM data ORDER BY id',
  );
  const other = await setup.query('SELECT (SELECT GROUP_CONCAT(msg ORDER BY id) FROM audit) AS audit, (SELECT GROUP_CONCAT(CONCAT(id, ":", IFNULL(parent_id, "-")) ORDER BY id) FROM child) AS child');
  const objects = await setup.query(
    `SELECT 'trigger' AS kind, TRIGGER_NAME AS name, ACTION_STATEMENT AS body FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()
     UNION ALL SELECT 'view', TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()
     UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()
     UNION ALL SELECT 'event', EVENT_NAME, CONCAT(STATUS, ' ', STARTS, ' ', EVENT_COMMENT, ' ', EVENT_DEFINITION) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()
     ORDER BY 1, 2`,
  );
  const fk = await setup.query(
    "SELECT CONSTRAINT_NAME AS name FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = DATABASE() ORDER BY 1",
  );
  return JSON.stringify({ rows, other, objects, fk }, null, 1);
}

/** Damages every kind of thing the snapshot holds. */
async function mangle(setup: SqlSetup): Promise<void> {
  await setup.query('DROP TRIGGER data_ins');
  await setup.query('DROP VIEW data_view2');
  await setup.query('DROP PROCEDURE add_row');
  await setup.query('DROP EVENT nightly');
  await setup.query("UPDATE data SET txt = 'changed', bin = NULL WHERE id = 1");
  await setup.query('DELETE FROM child WHERE id = 12');
  await setup.query('CREATE TABLE extra (id INT)');
  await setup.query('CREATE VIEW extra_view AS SELECT 1 AS one');
}

/** The biggest pack file of the latest snapshot, with one byte flipped in its middle. */
async function corruptSnapshot(setup: SqlSetup): Promise<string> {
  const folders = await setup.snapshots();
  const newest = (await Promise.all(folders.map(async (f) => ({ f, t: (await stat(f)).mtimeMs })))).sort((a, b) => b.t - a.t)[0]!.f;
  const packs = (await readdir(newest)).filter((name) => name.endsWith('.pack'));
  const sized = await Promise.all(packs.map(async (name) => ({ file: path.join(newest, name), size: (await stat(path.join(newest, name))).size })));
  const biggest = sized.sort((a, b) => b.size - a.size)[0]!;
  const data = await readFile(biggest.file);
  data[Math.floor(data.length / 2)]! ^= 0xff;
  await writeFile(biggest.file, data);
  return biggest.file;
}

/** Makes `big` hold 2^doublings rows of 64 hex characters each. */
function bigTable(doublings: number): string {
  const lines = ['CREATE TABLE big (id INT PRIMARY KEY, s CHAR(64) NOT NULL);', "INSERT INTO big VALUES (1, SHA2('1', 256));"];
  for (let i = 0; i < doublings; i++) {
    lines.push('INSERT INTO big SELECT id + (SELECT MAX(id) FROM big), SHA2(id + (SELECT MAX(id) FROM big), 256) FROM big;');
  }
  return `${lines.join('\n')}\n`;
}

describe('mysql-database snapshot and restore', () => {
  it('brings back routines, triggers, events, views, foreign keys, utf8mb4, binary strings and NULLs', async () => {
    const setup = await mysqlSetup({ scripts: { '01-schema.sql': RICH_SCHEMA } });
    await setup.ok('activate');
    await fillRich(setup);
    const before = await richState(setup);
    expect(before).toContain('"maybe": "trig"'); // the BEFORE trigger ran
    expect(before).toContain('inserted 1');

    await setup.ok('snapshot');
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);

    await mangle(setup);
    expect(await richState(setup)).not.toBe(before);
    await setup.ok('restore');
    expect(await richState(setup)).toBe(before);
    expect(await setup.query('SHOW TABLES LIKE ?', ['extra'])).toEqual([]);
    expect(await setup.databases()).toEqual([setup.name]);

    // The restored objects work, and a snapshot of the restored database is the same snapshot.
    await setup.query('CALL add_row(4)');
    expect(await setup.query('SELECT maybe, twice(21) AS f FROM data WHERE id = 4')).toEqual([{ maybe: 'trig', f: 42 }]);
    await setup.query('DELETE FROM data WHERE id = 4');
    await setup.query("DELETE FROM audit WHERE msg = 'inserted 4'");
    await setup.query('ALTER TABLE audit AUTO_INCREMENT = 1');
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('refuses a corrupted snapshot and leaves the live database as it was', async () => {
    const setup = await mysqlSetup({ scripts: { '01.sql': bigTable(14) } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await setup.query('DELETE FROM big WHERE id % 3 = 0');
    const live = JSON.stringify(await setup.query('SELECT COUNT(*) AS n, SUM(CRC32(s)) AS c FROM big'));
    const pack = await corruptSnapshot(setup);

    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/does not match its checksum/);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(JSON.stringify(await setup.query('SELECT COUNT(*) AS n, SUM(CRC32(s)) AS c FROM big'))).toBe(live);
    expect(await setup.databases()).toEqual([setup.name]);
    expect(pack).toMatch(/\.pack$/);
  });

  it('stops at a load error and leaves the live database as it was', async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({ scripts: { '01.sql': 'CREATE TABLE t (id INT PRIMARY KEY);\nINSERT INTO t VALUES (1), (2);\n' } });
    const other = `${setup.name}_x`;
    await server.query(`CREATE DATABASE ${other}`);
    try {
      await server.query(`CREATE TABLE ${other}.o (id INT)`);
      await setup.ok('activate');
      // A view on another database's table: the dump is fine, its load fails once that is gone.
      await setup.query(`CREATE VIEW v AS SELECT id FROM ${other}.o`);
      await setup.ok('snapshot');
      await server.query(`DROP DATABASE ${other}`);
      await setup.query('INSERT INTO t VALUES (3)');

      const result = await setup.run('restore');
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toContain(`loading snapshot`);
      expect(result.stderr).toMatch(/ERROR 1146 .*doesn't exist/);
      expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
      expect(await setup.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
      expect(await setup.query('SELECT COUNT(*) AS n FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()')).toEqual([{ n: 1 }]);
      expect(await setup.databases()).toEqual([setup.name]);
    } finally {
      await server.query(`DROP DATABASE IF EXISTS ${other}`);
    }
  });

  it('restores a routine whose body creates a table: only top-level CREATE TABLEs count as tables the dump creates', async () => {
    // mariadb-dump writes a routine's body as it was written, inside a DELIMITER block: a body line
    // starting with CREATE TABLE `t_archive` is no table of the snapshot, and must not make the
    // load check refuse every restore of it.
    const setup = await mysqlSetup({
      name: uniqueName('qq_my'),
      scripts: {
        '01.sql': [
          'CREATE TABLE t (id INT PRIMARY KEY);',
          'INSERT INTO t VALUES (1);',
          'DELIMITER //',
          'CREATE PROCEDURE archive()',
          'BEGIN',
          'CREATE TABLE `t_archive` (id INT);',
          'END//',
          "CREATE EVENT monthly ON SCHEDULE EVERY 1 MONTH STARTS '2031-01-01 00:00:00' DISABLE DO",
          'BEGIN',
          'CREATE TABLE `t_event` (id INT);',
          'END//',
          'DELIMITER ;',
          '',
        ].join('\n'),
      },
    });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await setup.query('DELETE FROM t');
    await setup.ok('restore');
    expect(await setup.query('SELECT id FROM t')).toEqual([{ id: 1 }]);
    expect(await setup.query('SHOW TABLES')).toHaveLength(1);
    expect(await setup.query('SELECT ROUTINE_NAME AS name FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()')).toEqual([
      { name: 'archive' },
    ]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('replaces a live view named like a table of the snapshot with that table', async () => {
    const setup = await mysqlSetup({
      name: uniqueName('qq_my'),
      scripts: {
        '01.sql': [
          'CREATE TABLE x (id INT PRIMARY KEY);',
          'INSERT INTO x VALUES (1);',
          'CREATE TABLE y (id INT PRIMARY KEY);',
          'INSERT INTO y VALUES (2);',
          'CREATE TABLE z (id INT PRIMARY KEY);',
          'INSERT INTO z VALUES (3);',
          'CREATE TABLE log (id INT);',
          'CREATE TRIGGER y_log AFTER INSERT ON y FOR EACH ROW INSERT INTO log VALUES (NEW.id);',
          '',
        ].join('\n'),
      },
    });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // x becomes a view over y; z a view whose table is gone (invalid, and not lockable).
    await setup.query('DROP TABLE x');
    await setup.query('CREATE VIEW x AS SELECT id FROM y');
    await setup.query('DROP TABLE z');
    await setup.query('CREATE TABLE w (id INT)');
    await setup.query('CREATE VIEW z AS SELECT id FROM w');
    await setup.query('DROP TABLE w');

    await setup.ok('restore');
    expect(await setup.query('SELECT TABLE_NAME AS name, TABLE_TYPE AS type FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() ORDER BY 1')).toEqual([
      { name: 'log', type: 'BASE TABLE' },
      { name: 'x', type: 'BASE TABLE' },
      { name: 'y', type: 'BASE TABLE' },
      { name: 'z', type: 'BASE TABLE' },
    ]);
    expect(await setup.query('SELECT (SELECT id FROM x) AS x, (SELECT id FROM z) AS z')).toEqual([{ x: 1, z: 3 }]);
    expect(await setup.query('SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()')).toEqual([{ name: 'y_log' }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('survives SIGKILL at any moment of a restore: the data is fully old or fully new', { timeout: 300_000 }, async () => {
    const setup = await mysqlSetup({ scripts: { '01.sql': `${bigTable(16)}${RICH_SCHEMA}` } });
    await setup.ok('activate');
    await fillRich(setup);
    await setup.ok('snapshot');
    const fresh = JSON.stringify(await setup.query('SELECT COUNT(*) AS n FROM big'));
    const damage = async () => {
      await setup.query('DELETE FROM big WHERE id % 2 = 0');
      await setup.query('DROP VIEW IF EXISTS data_view2');
    };
    await damage();
    const old = JSON.stringify(await setup.query('SELECT COUNT(*) AS n FROM big'));

    const started = performance.now();
    await setup.ok('restore');
    const duration = performance.now() - started;
    expect(JSON.stringify(await setup.query('SELECT COUNT(*) AS n FROM big'))).toBe(fresh);

    const outcomes: string[] = [];
    for (const fraction of [0.1, 0.3, 0.5, 0.7, 0.85, 0.92, 0.96, 0.99]) {
      if (JSON.stringify(await setup.query('SELECT COUNT(*) AS n FROM big')) === fresh) await damage();
      const child = setup.spawn('restore');
      await new Promise((resolve) => setTimeout(resolve, fraction * duration));
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // it had finished
      }
      await child;
      const count = JSON.stringify(await setup.query('SELECT COUNT(*) AS n FROM big'));
      expect([old, fresh], `after a kill at ${Math.round(fraction * 100)}%`).toContain(count);
      outcomes.push(count === old ? 'old' : 'new');
      // The next operation finishes or undoes what the kill left, and the objects are whole.
      await setup.ok('activate');
      expect(await setup.databases()).toEqual([setup.name]);
      expect(await setup.query('SELECT COUNT(*) AS n FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()')).toEqual([{ n: 2 }]);
      expect([old, fresh]).toContain(JSON.stringify(await setup.query('SELECT COUNT(*) AS n FROM big')));
    }
    expect(outcomes).toContain('old');
  });
});

describe('mysql-database swap, cut after every statement', () => {
  it('is fully old or fully new after recovery, wherever the connection died', { timeout: 300_000 }, async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({ scripts: { '01-schema.sql': RICH_SCHEMA } });
    const names = databaseNames(setup.name, 'mysql-database', 64);
    const connect = () =>
      mysql.createConnection({
        user: server.user,
        password: server.password,
        socketPath: server.socket,
        host: server.host,
        port: server.port,
      });
    await setup.ok('activate');
    await fillRich(setup);
    const newState = await richState(setup);
    // A template of the new content, copied into the staging database before every round, as a
    // restore would have loaded it.
    const template = uniqueName('tpl');
    const tables = ['parent', 'data', 'audit', 'child'];
    const copyTables = async (from: string, to: string) => {
      const connection = await connect();
      try {
        await connection.query(`CREATE DATABASE ${to}`);
        await connection.query(`USE ${to}`);
        await connection.query('SET foreign_key_checks = 0');
        for (const table of tables) {
          const [[created]] = (await connection.query(`SHOW CREATE TABLE ${from}.${table}`)) as unknown as [[Record<string, string>]];
          await connection.query(created['Create Table']!);
          await connection.query(`INSERT INTO ${to}.${table} SELECT * FROM ${from}.${table}`);
        }
      } finally {
        await connection.end();
      }
    };
    const stage = async () => {
      await copyTables(template, names.staging);
      const connection = await connect();
      try {
        await connection.query(`USE ${names.staging}`);
        for (const statement of RICH_SCHEMA.split('\n').filter((line) => /^CREATE (TRIGGER|VIEW|FUNCTION|PROCEDURE|EVENT)/.test(line))) {
          await connection.query(statement);
        }
      } finally {
        await connection.end();
      }
    };
    await copyTables(names.live, template);
    onTestFinished(() => server.query(`DROP DATABASE IF EXISTS ${template}`).then(() => {}));
    await mangle(setup);
    const oldState = await richState(setup);

    const outcomes = new Set<string>();
    for (let cut = 0; ; cut++) {
      await stage();
      const connection = await connect();
      let calls = 0;
      const dying = new Proxy(connection, {
        get(target, property, receiver) {
          if (property === 'query') {
            return (...args: unknown[]) => {
              if (calls++ >= cut) return Promise.reject(new Error('connection cut'));
              return (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
            };
          }
          return Reflect.get(target, property, receiver);
        },
      }) as MysqlConnection;
      let finished = true;
      try {
        await swapIn(dying, names, 10, silentLogger);
      } catch {
        finished = false;
      }
      await connection.end();
      const recovery = await connect();
      try {
        await recoverSwap(recovery, names, silentLogger, 10);
      } finally {
        await recovery.end();
      }
      const state = await richState(setup);
      expect([oldState, newState], `cut after ${cut} statements`).toContain(state);
      outcomes.add(state === oldState ? 'old' : 'new');
      expect(await setup.databases()).toEqual([setup.name]);
      if (finished) break;
      // Back to the old state for the next round.
      if (state === newState) await mangle(setup);
    }
    expect([...outcomes].sort()).toEqual(['new', 'old']);
  });
});

/** A connection of the test's own, as another client of the live database would hold. */
async function otherSession(): Promise<mysql.Connection> {
  const server = await findMysql();
  const connection = await mysql.createConnection({
    user: server.user,
    password: server.password,
    socketPath: server.socket,
    host: server.host,
    port: server.port,
  });
  onTestFinished(() => connection.end().catch(() => {}));
  return connection;
}

/** A table whose every insert an AFTER INSERT trigger logs, and a table another session locks. */
/**
 * Another session that has read `table` of `database` in a transaction it keeps open: it holds a
 * lock on the table until it rolls back (or the test ends).
 */
async function holding(database: string, table: string): Promise<mysql.Connection> {
  const holder = await otherSession();
  await holder.query(`USE \`${database}\``);
  await holder.query('BEGIN');
  await holder.query(`SELECT * FROM ${table}`);
  return holder;
}

const LOGGED_SCHEMA = [
  'CREATE TABLE aa (id INT PRIMARY KEY);',
  'CREATE TABLE log (id INT AUTO_INCREMENT PRIMARY KEY, t_id INT NOT NULL);',
  'CREATE TABLE t (id INT AUTO_INCREMENT PRIMARY KEY, v INT NOT NULL);',
  'CREATE TRIGGER t_log AFTER INSERT ON t FOR EACH ROW INSERT INTO log (t_id) VALUES (NEW.id);',
  'INSERT INTO t (v) VALUES (0);',
  '',
].join('\n');

/** Rows of t without their log row (written while t had no trigger), and the live triggers. */
async function unlogged(setup: SqlSetup): Promise<unknown> {
  const [row] = await setup.query('SELECT COUNT(*) AS n FROM t WHERE id NOT IN (SELECT t_id FROM log)');
  const triggers = await setup.query('SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()');
  return { unlogged: Number(row?.n), triggers };
}

describe('mysql-database swap beside sessions that hold locks on the live tables', () => {
  it('waits for their locks with the live triggers in place, and gives up saying the live database is unchanged', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA }, properties: { timeout: '3' } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    // Another session reads aa in a transaction it keeps open: the swap cannot move aa.
    const holder = await holding(setup.name, 'aa');
    // Meanwhile the application goes on inserting into t, which nobody else locks.
    const writer = await otherSession();
    let writing = true;
    let written = 0;
    const writes = (async () => {
      while (writing) {
        await writer.query(`INSERT INTO \`${setup.name}\`.t (v) VALUES (1)`);
        written += 1;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    let result;
    try {
      result = await setup.run('restore');
    } finally {
      writing = false;
      await writes;
      await holder.query('ROLLBACK');
    }
    expect(result.exitCode, result.stderr).toBe(1);
    expect(written).toBeGreaterThan(20);
    // Every row written while the restore waited went through its trigger: nothing was dropped.
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(result.stderr).toContain(`other sessions hold locks on tables of ${setup.name}`);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('collect-garbage waits at most the timeout for a session holding a table, names it, and drops nothing', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA }, properties: { timeout: '2' } });
    await setup.ok('activate');
    await setup.ok('deactivate');
    // t is the last table in name order: a drop that took aa and log first would show it.
    const holder = await holding(setup.name, 't');
    const [[{ id }]] = (await holder.query('SELECT CONNECTION_ID() AS id')) as unknown as [[{ id: number }]];
    const started = Date.now();
    const held = await setup.run('collect-garbage');
    expect(Date.now() - started).toBeLessThan(30_000);
    await holder.query('ROLLBACK');
    expect(held.exitCode, held.stderr).toBe(1);
    expect(held.stderr).toContain(`cannot drop database ${setup.name}`);
    expect(held.stderr).toContain('within 2 s (the container\'s timeout)');
    expect(held.stderr).toContain(`sessions using it: ${id} (`);
    expect(held.stderr).toContain('Nothing was dropped');
    expect(await setup.databases()).toEqual([setup.name]);
    expect(await setup.query('SELECT table_name AS name FROM information_schema.tables WHERE table_schema = DATABASE() ORDER BY 1')).toHaveLength(3);
    await setup.ok('collect-garbage');
    expect(await setup.databases()).toEqual([]);
  });

  it('swaps once a lock held for a moment is released', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA }, properties: { timeout: '10' } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await setup.query('INSERT INTO t (v) VALUES (2)');
    const holder = await holding(setup.name, 'aa');
    const release = setTimeout(() => void holder.query('ROLLBACK'), 1500);
    onTestFinished(() => clearTimeout(release));
    await setup.ok('restore');
    expect(await setup.query('SELECT v FROM t ORDER BY id')).toEqual([{ v: 0 }]);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  /**
   * The swap on a connection that, the first time it lets go of its LOCK TABLES, sees another
   * session take a lock on aa before its RENAME can: the race the swap's retry is for.
   * `holdMs`: how long that session keeps its lock. `after` and `table`: another statement of the
   * swap after which another table is locked.
   */
  async function raceAfterUnlock(holdMs: number, lockWaitSeconds: number, after = (sql: string): boolean => sql === 'UNLOCK TABLES', table = 'aa') {
    const server = await findMysql();
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA } });
    const names = databaseNames(setup.name, 'mysql-database', 64);
    await setup.ok('activate');
    await server.query(`CREATE DATABASE \`${names.staging}\``);
    await server.queryIn(names.staging, LOGGED_SCHEMA.replace('VALUES (0)', 'VALUES (7)'));
    const holder = await otherSession();
    const connection = await otherSession();
    let raced = false;
    const racing = new Proxy(connection, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver);
        return async (...args: unknown[]) => {
          const result = await (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
          if (typeof args[0] === 'string' && after(args[0]) && !raced) {
            raced = true;
            await holder.query(`USE \`${setup.name}\``);
            await holder.query('BEGIN');
            await holder.query(`SELECT * FROM ${table}`);
            setTimeout(() => void holder.query('ROLLBACK').catch(() => {}), holdMs);
          }
          return result;
        };
      },
    }) as MysqlConnection;
    const messages: string[] = [];
    const log = { ...silentLogger, debug: (m: string) => messages.push(m), warn: (m: string) => messages.push(m) };
    const outcome = await swapIn(racing, names, lockWaitSeconds, log).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    return { setup, outcome, raced, messages, holder, names };
  }

  it('puts the live triggers back when another session takes a lock before its RENAME, and tries again', { timeout: 60_000 }, async () => {
    const { setup, outcome, raced, messages } = await raceAfterUnlock(2000, 10);
    expect(raced).toBe(true);
    expect(outcome).toBeUndefined();
    expect(messages.join('\n')).toMatch(/trying again/);
    expect(await setup.query('SELECT v FROM t ORDER BY id')).toEqual([{ v: 7 }]);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('finishes the swap when a session locks a new table for longer than the RENAME may wait, within timeout', { timeout: 60_000 }, async () => {
    // Right after the commit another session reads the new t in a transaction: creating t's
    // trigger waits for it as long as the timeout allows, not the RENAME's one second.
    const { setup, outcome, raced } = await raceAfterUnlock(2500, 10, (sql) => sql.startsWith('RENAME TABLE'), 't');
    expect(raced).toBe(true);
    expect(outcome).toBeUndefined();
    expect(await setup.query('SELECT v FROM t ORDER BY id')).toEqual([{ v: 7 }]);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('says that the triggers were dropped and put back when it gives up after dropping them', { timeout: 60_000 }, async () => {
    const { setup, outcome, raced } = await raceAfterUnlock(8000, 2);
    expect(raced).toBe(true);
    expect(outcome?.message).toContain(`The live database ${setup.name} has its old data: the swap did not happen`);
    expect(outcome?.message).toMatch(/triggers were dropped for the swap's RENAME TABLE once, .* and are back/);
    expect(outcome?.message).not.toMatch(/is unchanged/);
    expect(await setup.query('SELECT v FROM t ORDER BY id')).toEqual([{ v: 0 }]);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('waits on for the sessions holding a table to put its triggers back, and says how long they were gone', { timeout: 60_000 }, async () => {
    // After UNLOCK TABLES another session takes t (which has the trigger) for longer than the
    // timeout: the RENAME times out, and CREATE TRIGGER must wait for that session too.
    const { setup, outcome, raced, messages } = await raceAfterUnlock(6000, 2, (sql) => sql === 'UNLOCK TABLES', 't');
    expect(raced).toBe(true);
    // Known not to have happened on a live connection: no "outcome unknown".
    expect(outcome).toBeDefined();
    expect(outcome).not.toBeInstanceOf(SwapOutcomeUnknown);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(messages.join('\n')).toMatch(/putting back the trigger t_log of .* waits for other sessions/);
    expect(outcome!.message).toContain(`The live database ${setup.name} has its old data: the swap did not happen`);
    // The triggers were gone until the holder let go (6 s), and the message says so.
    const absent = /RENAME TABLE once, for (\d+\.\d) s, and are back/.exec(outcome!.message);
    expect(absent, outcome!.message).not.toBeNull();
    expect(Number(absent![1])).toBeGreaterThanOrEqual(4);
    expect(await setup.query('SELECT v FROM t ORDER BY id')).toEqual([{ v: 0 }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('names the triggers it could not put back, and the next run puts them back saying they were missing', { timeout: 60_000 }, async () => {
    const { setup, outcome, raced, holder, names } = await raceAfterUnlock(30_000, 1, (sql) => sql === 'UNLOCK TABLES', 't');
    expect(raced).toBe(true);
    expect(outcome).not.toBeInstanceOf(SwapOutcomeUnknown);
    expect(outcome?.message).toContain(`the trigger t_log of ${setup.name} is missing`);
    expect(outcome?.message).toContain('writes to its tables bypass that trigger now');
    expect(outcome?.message).toContain(`The next restore, activate or snapshot of ${setup.name} puts it back`);
    expect(outcome?.message).not.toMatch(/could not be undone|holds either its old or the restored data/);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [] });
    expect(await setup.databases()).toContain(names.old);
    await holder.query('ROLLBACK');
    const next = await setup.run('snapshot');
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stderr).toContain(`after it had dropped the trigger t_log of ${setup.name} for its RENAME TABLE`);
    expect(next.stderr).toContain('that trigger was missing');
    expect(next.stderr).not.toContain(`${setup.name} is as it was`);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('recovering a left-behind swap waits at most the timeout for a session holding a table, and says for what', { timeout: 90_000 }, async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA }, properties: { timeout: '2' } });
    const names = databaseNames(setup.name, 'mysql-database', 64);
    await setup.ok('activate');
    await server.query(`CREATE DATABASE \`${names.staging}\``);
    await server.queryIn(names.staging, LOGGED_SCHEMA);
    // A swap whose connection dies right after it dropped the live trigger.
    const connection = await otherSession();
    let cut = false;
    const dying = new Proxy(connection, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver);
        return async (...args: unknown[]) => {
          if (cut) throw new Error('connection cut');
          const result = await (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
          if (typeof args[0] === 'string' && args[0].startsWith(`DROP TRIGGER IF EXISTS \`${setup.name}\`.`)) cut = true;
          return result;
        };
      },
    }) as MysqlConnection;
    await expect(swapIn(dying, names, 2, silentLogger)).rejects.toBeInstanceOf(SwapOutcomeUnknown);
    connection.destroy();
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [] });
    const holder = await holding(setup.name, 't');
    const started = Date.now();
    const held = setup.run('snapshot');
    const first = await Promise.race([held, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 20_000))]);
    await holder.query('ROLLBACK');
    expect(first, 'still waiting after 20 s').not.toBe('waiting');
    const result = await held;
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain('that trigger was missing');
    expect(result.stderr).toContain(`the trigger t_log of ${setup.name} is missing`);
    expect(result.stderr).toContain('waited 2 s for other sessions that hold locks');
    await setup.ok('snapshot');
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('stops without dropping anything when another session creates a trigger while the swap waits for its lock', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA }, properties: { timeout: '3' } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const holder = await holding(setup.name, 'aa');
    const restoring = setup.run('restore');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const admin = await otherSession();
    await admin.query(`USE \`${setup.name}\``);
    await admin.query('CREATE TRIGGER t_new BEFORE INSERT ON t FOR EACH ROW SET NEW.v = NEW.v');
    // A writer queued behind the swap's lock keeps its transaction open: were the triggers
    // dropped, the RENAME would time out and only the journal's would be put back.
    const writer = await otherSession();
    await writer.query(`USE \`${setup.name}\``);
    await writer.query('BEGIN');
    const inserting = writer.query('INSERT INTO aa VALUES (42)');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await holder.query('ROLLBACK');
    await inserting;
    const result = await restoring;
    await writer.query('ROLLBACK');
    // The trigger made while the swap waited is still there.
    expect(await setup.query('SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE() ORDER BY 1')).toEqual([
      { name: 't_log' },
      { name: 't_new' },
    ]);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`another session changed the triggers of ${setup.name} while the swap waited for its lock (created: t_new)`);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('settling a swap whose connection died names the live triggers it cannot put back, not "old or restored data"', { timeout: 60_000 }, async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({ name: uniqueName('qq_my'), scripts: { '01.sql': LOGGED_SCHEMA } });
    const names = databaseNames(setup.name, 'mysql-database', 64);
    await setup.ok('activate');
    await server.query(`CREATE DATABASE \`${names.staging}\``);
    await server.queryIn(names.staging, LOGGED_SCHEMA);
    const holder = await otherSession();
    await holder.query(`USE \`${setup.name}\``);
    const connect = () =>
      mysql.createConnection({ user: server.user, password: server.password, socketPath: server.socket, host: server.host, port: server.port });
    // The swap's connection dies right after it dropped the live trigger; another session then
    // reads t in a transaction it keeps open.
    const connection = await connect();
    let cut = false;
    const dying = new Proxy(connection, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver);
        return async (...args: unknown[]) => {
          if (cut) throw new Error('connection cut');
          const result = await (target.query as (...a: unknown[]) => Promise<unknown>)(...args);
          if (typeof args[0] === 'string' && args[0].startsWith(`DROP TRIGGER IF EXISTS \`${setup.name}\`.`)) {
            cut = true;
            target.destroy();
            await holder.query('BEGIN');
            await holder.query('SELECT * FROM t');
          }
          return result;
        };
      },
    }) as MysqlConnection;
    const reconnect = async <T>(work: (c: MysqlConnection) => Promise<T>): Promise<T> => {
      const fresh = await connect();
      try {
        return await work(fresh);
      } finally {
        await fresh.end();
      }
    };
    const outcome = await swapOrSettle(dying, reconnect, names, 2, silentLogger).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    await holder.query('ROLLBACK');
    expect(outcome).toBeDefined();
    expect(outcome).not.toBeInstanceOf(SwapOutcomeUnknown);
    expect(outcome!.message).toContain(`cannot swap the new tables into ${setup.name}`);
    expect(outcome!.message).toContain(`the trigger t_log of ${setup.name} is missing`);
    expect(outcome!.message).not.toMatch(/holds either its old or the restored data/);
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [] });
    await setup.ok('snapshot');
    expect(await unlogged(setup)).toEqual({ unlogged: 0, triggers: [{ name: 't_log' }] });
    expect(await setup.databases()).toEqual([setup.name]);
  });
});
