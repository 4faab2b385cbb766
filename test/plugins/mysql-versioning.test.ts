/**
 * mysql-database on the real server: the history of system-versioned tables (MariaDB) is in the
 * snapshot and comes back with a restore; where the dump tool cannot keep it, the snapshot says so.
 */
import { describe, expect, it } from 'vitest';
import { mysqlSetup } from '../support/sql-setup.js';

const HISTORY = 'SELECT id, v, CAST(row_start AS CHAR) AS s, CAST(row_end AS CHAR) AS e FROM ver FOR SYSTEM_TIME ALL ORDER BY row_start, id';

describe('mysql-database: system-versioned tables', () => {
  it('a restore brings back their history, and the snapshot identity stays stable', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({
      scripts: {
        '1.sql': 'CREATE TABLE ver (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING;\nCREATE TABLE plain (id INT PRIMARY KEY);\nINSERT INTO plain VALUES (1);\n',
      },
    });
    await setup.ok('activate');
    await setup.query('INSERT INTO ver VALUES (1, 1), (2, 10)');
    await setup.query('UPDATE ver SET v = 2 WHERE id = 1');
    await setup.query('UPDATE ver SET v = 3 WHERE id = 1');
    const before = await setup.query(HISTORY);
    expect(before).toHaveLength(4);

    const first = await setup.ok('snapshot');
    expect(first.stderr).not.toContain('history');
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);

    await setup.query('UPDATE ver SET v = 4 WHERE id = 2');
    await setup.query('DELETE FROM ver WHERE id = 1');
    await setup.ok('restore');
    expect(await setup.query(HISTORY)).toEqual(before);
    expect(await setup.query('SELECT COUNT(*) AS n FROM ver FOR SYSTEM_TIME ALL WHERE id = 1')).toEqual([{ n: 3 }]);
    expect(await setup.query('SELECT id, v FROM ver ORDER BY id')).toEqual([
      { id: 1, v: 3 },
      { id: 2, v: 10 },
    ]);
    expect(await setup.databases()).toEqual([setup.name]);

    // The restored database dumps to the same snapshot.
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('a snapshot warns, naming the tables, when their history cannot be dumped', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({
      scripts: {
        '1.sql': [
          'CREATE TABLE precise (id INT PRIMARY KEY, v INT, s BIGINT UNSIGNED GENERATED ALWAYS AS ROW START INVISIBLE, e BIGINT UNSIGNED GENERATED ALWAYS AS ROW END INVISIBLE, PERIOD FOR SYSTEM_TIME (s, e)) WITH SYSTEM VERSIONING ENGINE=InnoDB;',
          'CREATE TABLE ver (id INT PRIMARY KEY, v INT) WITH SYSTEM VERSIONING;',
          'INSERT INTO precise VALUES (1, 1);',
          'UPDATE precise SET v = 2;',
          '',
        ].join('\n'),
      },
    });
    await setup.ok('activate');
    const snapshot = await setup.ok('snapshot');
    expect(snapshot.stderr).toContain(
      `the snapshot of ${setup.name} keeps only the current rows of its system-versioned tables, not their history: precise, ver (precise keeps transaction-precise history`,
    );
    expect(await setup.generations()).toEqual(['1']);
  });
});
