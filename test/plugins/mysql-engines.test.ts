/**
 * What mysql-database says about tables and servers whose consistency it cannot promise: a
 * snapshot warns about tables without transactions (real MariaDB), and the swap warns on servers
 * whose RENAME TABLE is not crash-safe (the version rule).
 */
import { describe, expect, it } from 'vitest';
import { crashSafeRename } from '../../src/plugins/mysql/swap.js';
import { mysqlSetup } from '../support/sql-setup.js';

describe('mysql-database: tables without transactions', () => {
  it('a snapshot warns about them, naming table and engine, and is still taken', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({
      scripts: {
        '1.sql': 'create table kept (id int primary key) engine=InnoDB;\ncreate table loose (id int primary key) engine=MyISAM;\ncreate table fleeting (id int primary key) engine=MEMORY;\ninsert into loose values (1);\n',
      },
    });
    await setup.ok('activate');
    const snapshot = await setup.ok('snapshot');
    expect(snapshot.stderr).toContain(`tables of ${setup.name} use a storage engine without transactions: fleeting (MEMORY), loose (MyISAM).`);
    expect(snapshot.stderr).not.toContain('kept');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('an all-InnoDB database snapshots without the warning', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({ scripts: { '1.sql': 'create table kept (id int primary key) engine=InnoDB;\n' } });
    await setup.ok('activate');
    const snapshot = await setup.ok('snapshot');
    expect(snapshot.stderr).not.toContain('without transactions');
  });
});

describe('mysql-database: tables that take a default from a sequence', () => {
  it('a snapshot warns that no restore of it will load, naming the tables, and is still taken', { timeout: 60_000 }, async () => {
    const setup = await mysqlSetup({ scripts: { '1.sql': 'create table plain (id int primary key);\n' } });
    await setup.ok('activate');
    // Made after the activation, as the docs advise (made by a script, its default would name the staging database).
    await setup.query('create sequence ids');
    await setup.query('create table numbered (id int primary key default (next value for ids), v int)');
    await setup.query('insert into numbered (v) values (1), (2)');
    const snapshot = await setup.ok('snapshot');
    expect(snapshot.stderr).toContain(`tables of ${setup.name} take a default from a sequence (DEFAULT NEXT VALUE FOR): numbered.`);
    expect(snapshot.stderr).toContain('no restore of this snapshot will work');
    expect(await setup.generations()).toEqual(['1']);
    // What the warning says: the restore fails, and leaves the live database as it was.
    await setup.query('insert into numbered (v) values (3)');
    const restore = await setup.run('restore');
    expect(restore.exitCode, restore.stderr).toBe(1);
    expect(restore.stderr).toContain('is unchanged');
    expect(await setup.query('select v from numbered order by v')).toEqual([{ v: 1 }, { v: 2 }, { v: 3 }]);
  });
});

describe('mysql-database: servers with a crash-safe RENAME TABLE', () => {
  it.each([
    ['10.11.19-MariaDB-0+deb12u1', true],
    ['10.6.0-MariaDB', true],
    ['11.4.2-MariaDB-log', true],
    ['10.5.23-MariaDB', false],
    ['5.5.68-MariaDB', false],
    ['8.0.36', true],
    ['8.4.0-log', true],
    ['5.7.44-log', false],
    ['not a version', false],
  ])('%s: %s', (version, safe) => {
    expect(crashSafeRename(version)).toBe(safe);
  });
});
