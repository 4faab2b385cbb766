/**
 * mysql-database on the real server: a foreign key of another database that references the live
 * database's tables would follow them to `__dys_old` through the swap's RENAME TABLE, so a restore
 * refuses it before anything changes.
 */
import { describe, expect, it, onTestFinished } from 'vitest';
import { findMysql } from '../support/servers.js';
import { mysqlSetup } from '../support/sql-setup.js';

describe('mysql-database: foreign keys from other databases', () => {
  it('a restore refuses them, naming each key and how to drop it, and changes nothing', { timeout: 60_000 }, async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({
      scripts: { '1.sql': 'CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20));\nINSERT INTO customers VALUES (1, \'ann\'), (2, \'bob\');\n' },
    });
    const other = `${setup.name}_other`;
    onTestFinished(async () => {
      await server.query(`DROP DATABASE IF EXISTS \`${other}\``);
    });
    await setup.ok('activate');
    await server.query(`CREATE DATABASE \`${other}\``);
    await server.query(
      `CREATE TABLE \`${other}\`.child (id INT PRIMARY KEY, cust INT, CONSTRAINT to_customers FOREIGN KEY (cust) REFERENCES \`${setup.name}\`.customers (id))`,
    );
    await server.query(`INSERT INTO \`${other}\`.child VALUES (10, 1)`);
    await setup.ok('snapshot');
    await setup.query("UPDATE customers SET name = 'changed' WHERE id = 2");

    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`foreign keys of other databases reference its tables (${other}.child.to_customers -> ${setup.name}.customers)`);
    expect(result.stderr).toContain(`ALTER TABLE \`${other}\`.\`child\` DROP FOREIGN KEY \`to_customers\`;`);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(await setup.query('SELECT id, name FROM customers ORDER BY id')).toEqual([
      { id: 1, name: 'ann' },
      { id: 2, name: 'changed' },
    ]);
    expect(await setup.databases()).toEqual([setup.name]);
    const keys = await server.query(
      'SELECT REFERENCED_TABLE_SCHEMA AS db, REFERENCED_TABLE_NAME AS tbl FROM information_schema.KEY_COLUMN_USAGE WHERE CONSTRAINT_SCHEMA = ? AND CONSTRAINT_NAME = ?',
      [other, 'to_customers'],
    );
    expect(keys).toEqual([{ db: setup.name, tbl: 'customers' }]);
    // The referential check still guards the live table.
    await expect(setup.query('DELETE FROM customers WHERE id = 1')).rejects.toThrow(/foreign key constraint fails/);

    const snapshot = await setup.ok('snapshot');
    expect(snapshot.stderr).not.toMatch(/interrupted|did not put there/);
    expect(await setup.generations()).toEqual(['1', '2']);

    // Without the key, the restore (of that latest snapshot) goes through.
    await server.query(`ALTER TABLE \`${other}\`.child DROP FOREIGN KEY to_customers`);
    await setup.query('DELETE FROM customers WHERE id = 2');
    await setup.ok('restore');
    expect(await setup.query('SELECT id, name FROM customers ORDER BY id')).toEqual([
      { id: 1, name: 'ann' },
      { id: 2, name: 'changed' },
    ]);
    expect(await setup.databases()).toEqual([setup.name]);
  });
});
