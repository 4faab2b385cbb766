/**
 * postgresql-database: a restore keeps the database's own state, which a dump does not hold
 * (settings, per-role settings, privileges with grant options and grantors, comment, connection
 * limit, tablespace, ALLOW_CONNECTIONS, IS_TEMPLATE), taken from the live database. The state is
 * checked in the catalog and in effect (a role connects with its search_path; PUBLIC cannot
 * connect; the tables are in the tablespace). Names and values with quotes and spaces come over
 * as they are, and a part that cannot be carried over stops the restore before the swap.
 */
import { chown, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { expect, it, onTestFinished } from 'vitest';
import { setClause, splitSettingList } from '../../src/plugins/postgres/database-state.js';
import { findPostgres, type PostgresServer } from '../support/servers.js';
import { postgresSetup, type SqlSetup } from '../support/sql-setup.js';
import { uniqueName, useTempDir } from '../support/temp.js';

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** A login role dropped when the test ends (after the test's databases: register it first). */
async function useRole(server: PostgresServer, name: string): Promise<string> {
  await server.query(`CREATE ROLE ${ident(name)} LOGIN`);
  onTestFinished(async () => {
    await server.query(`DROP ROLE IF EXISTS ${ident(name)}`);
  });
  return name;
}

/**
 * A tablespace in an empty folder owned by the server's OS user, dropped when the test ends.
 * Needs root and the server on this machine (its data directory is visible here).
 */
async function useTablespace(server: PostgresServer): Promise<string> {
  const [row] = await server.query("SELECT current_setting('data_directory') AS dir");
  const owner = await stat(String(row!.dir));
  const dir = path.join(await useTempDir('dysnomia-ts-'), 'space');
  await mkdir(dir);
  await chown(path.dirname(dir), owner.uid, owner.gid);
  await chown(dir, owner.uid, owner.gid);
  const name = uniqueName('dysts');
  await server.query(`CREATE TABLESPACE ${ident(name)} LOCATION '${dir}'`);
  onTestFinished(async () => {
    await server.query(`DROP TABLESPACE IF EXISTS ${ident(name)}`);
  });
  return name;
}

/** What the catalog says about a database's own state, with names instead of oids. */
async function databaseState(server: PostgresServer, database: string): Promise<Record<string, unknown>> {
  const [row] = await server.query(
    `SELECT d.datconnlimit AS connlimit, d.datallowconn AS allowconn, d.datistemplate AS istemplate,
            t.spcname AS tablespace, shobj_description(d.oid, 'pg_database') AS comment, pg_get_userbyid(d.datdba) AS owner,
            (SELECT array_agg(item ORDER BY item) FROM (
               SELECT format('%s -> %s: %s%s', pg_get_userbyid(a.grantor), CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END,
                             a.privilege_type, CASE WHEN a.is_grantable THEN ' with grant option' ELSE '' END) AS item
                 FROM aclexplode(d.datacl) a) acl) AS acl,
            (SELECT array_agg(item ORDER BY item) FROM (
               SELECT coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '*') || ': ' || array_to_string(s.setconfig, ' | ') AS item
                 FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) settings) AS settings
       FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = $1`,
    [database],
  );
  return row!;
}

/** Runs `sql` in `database` as `role`, over the test server's own way in. */
async function queryAs(server: PostgresServer, role: string, database: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ host: server.socketDir ?? server.host, port: server.port, password: server.password, user: role, database });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

/** Snapshots, changes the data, restores, and checks that the state is what it was. */
async function snapshotAndRestore(setup: SqlSetup, server: PostgresServer): Promise<Record<string, unknown>> {
  const before = await databaseState(server, setup.name);
  await setup.ok('snapshot');
  await server.queryIn(setup.name, 'SELECT 1'); // the live database is still reachable as it was
  await setup.ok('restore');
  const after = await databaseState(server, setup.name);
  expect(after).toEqual(before);
  expect(await setup.databases()).toEqual([setup.name]);
  return after;
}

it('keeps the live database settings, role settings, privileges, comment, connection limit and tablespace', async () => {
  const server = await findPostgres();
  const app = await useRole(server, uniqueName('dysapp'));
  const helper = await useRole(server, uniqueName('dyshelp'));
  const outsider = await useRole(server, uniqueName('dysout'));
  const space = await useTablespace(server);
  const setup = await postgresSetup({
    scripts: {
      '01.sql': `CREATE SCHEMA app;
CREATE TABLE app.users (id int PRIMARY KEY, name text);
INSERT INTO app.users VALUES (1, 'ada');
GRANT USAGE ON SCHEMA app TO ${app}, ${helper};
GRANT SELECT ON app.users TO ${app}, ${helper};
`,
    },
  });
  await setup.ok('activate');
  const db = ident(setup.name);
  await server.query(`ALTER DATABASE ${db} SET TABLESPACE ${ident(space)}`);
  await server.query(`ALTER DATABASE ${db} SET search_path = app, public`);
  await server.query(`ALTER DATABASE ${db} SET work_mem = '3MB'`);
  await server.query(`ALTER ROLE ${app} IN DATABASE ${db} SET statement_timeout = '42s'`);
  await server.query(`REVOKE CONNECT, TEMPORARY ON DATABASE ${db} FROM PUBLIC`);
  await server.query(`GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO ${app}`);
  await server.query(`GRANT CONNECT ON DATABASE ${db} TO ${helper} WITH GRANT OPTION`);
  // A grant whose grantor is not the owner.
  await server.query(`SET ROLE ${helper}; GRANT CONNECT ON DATABASE ${db} TO ${app}; RESET ROLE`);
  await server.query(`COMMENT ON DATABASE ${db} IS 'the application''s database'`);
  await server.query(`ALTER DATABASE ${db} CONNECTION LIMIT 7`);
  await setup.query('INSERT INTO app.users VALUES (2, $1)', ['bob']);

  const state = await snapshotAndRestore(setup, server);
  expect(state).toMatchObject({
    connlimit: 7,
    tablespace: space,
    comment: "the application's database",
    settings: [`*: search_path=app, public | work_mem=3MB`, `${app}: statement_timeout=42s`],
  });
  expect(state.acl).toEqual(
    expect.arrayContaining([`${helper} -> ${app}: CONNECT`, `postgres -> ${app}: CONNECT`, `postgres -> ${helper}: CONNECT with grant option`]),
  );
  expect(JSON.stringify(state.acl)).not.toContain('PUBLIC');

  // In effect: the role connects, finds its table through search_path, and gets its own setting.
  expect(await queryAs(server, app, setup.name, "SELECT name, current_setting('statement_timeout') AS timeout, current_setting('work_mem') AS mem FROM users ORDER BY id")).toEqual([
    { name: 'ada', timeout: '42s', mem: '3MB' },
    { name: 'bob', timeout: '42s', mem: '3MB' },
  ]);
  await expect(queryAs(server, outsider, setup.name, 'SELECT 1')).rejects.toThrow(/permission denied for database/);
  // The load wrote into the tablespace.
  const [files] = await setup.query(
    `SELECT pg_relation_filepath('app.users') AS heap, (SELECT oid::text FROM pg_tablespace WHERE spcname = $1) AS space`,
    [space],
  );
  expect(String(files!.heap)).toMatch(new RegExp(`^pg_tblspc/${String(files!.space)}/`));
});

it('carries over role names, setting values and comments with quotes, spaces and backslashes as they are', async () => {
  const server = await findPostgres();
  const odd = await useRole(server, `${uniqueName('dysq')} it's "odd"; x`);
  const other = await useRole(server, `${uniqueName('dysq')} \\ two`);
  const schema = `my "odd" schema, 'x'`;
  const setup = await postgresSetup({
    scripts: {
      '01.sql': `CREATE SCHEMA ${ident(schema)};
CREATE TABLE ${ident(schema)}.things (id int);
INSERT INTO ${ident(schema)}.things VALUES (1);
GRANT USAGE ON SCHEMA ${ident(schema)} TO ${ident(odd)};
GRANT SELECT ON ALL TABLES IN SCHEMA ${ident(schema)} TO ${ident(odd)};
`,
    },
  });
  await setup.ok('activate');
  const db = ident(setup.name);
  const note = `O'Brien said "hi"; DROP DATABASE postgres; -- \\ and \\'`;
  await server.query(`ALTER DATABASE ${db} SET search_path = ${ident(schema)}, "$user", public`);
  await server.query(`ALTER DATABASE ${db} SET dysnomia.note = ${`E'${note.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`}`);
  await server.query(`ALTER ROLE ${ident(odd)} IN DATABASE ${db} SET application_name = 'it''s "mine", really'`);
  await server.query(`REVOKE ALL ON DATABASE ${db} FROM PUBLIC`);
  await server.query(`GRANT CONNECT ON DATABASE ${db} TO ${ident(odd)} WITH GRANT OPTION`);
  await server.query(`SET ROLE ${ident(odd)}; GRANT CONNECT ON DATABASE ${db} TO ${ident(other)}; RESET ROLE`);
  await server.query(`COMMENT ON DATABASE ${db} IS ${`E'${note.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}\\nsecond line'`}`);

  const state = await snapshotAndRestore(setup, server);
  expect(state.comment).toBe(`${note}\nsecond line`);
  expect(state.acl).toEqual(expect.arrayContaining([`${odd} -> ${other}: CONNECT`]));
  const [seen] = await queryAs(
    server,
    odd,
    setup.name,
    "SELECT (SELECT count(*)::int FROM things) AS things, current_setting('search_path') AS path, current_setting('dysnomia.note') AS note, current_setting('application_name') AS app",
  );
  expect(seen).toEqual({ things: 1, path: `"my ""odd"" schema, 'x'", "$user", public`, note, app: `it's "mine", really` });
  expect(await queryAs(server, other, setup.name, 'SELECT 1 AS one')).toEqual([{ one: 1 }]);
});

it('keeps ALLOW_CONNECTIONS false and IS_TEMPLATE, and drops the replaced template', async () => {
  const server = await findPostgres();
  const setup = await postgresSetup({ scripts: { '01.sql': 'CREATE TABLE t (id int);\n' } });
  await setup.ok('activate');
  await setup.ok('snapshot');
  onTestFinished(async () => {
    for (const database of await setup.databases()) await server.query(`ALTER DATABASE ${ident(database)} IS_TEMPLATE false ALLOW_CONNECTIONS true`);
  });
  await server.query(`ALTER DATABASE ${ident(setup.name)} IS_TEMPLATE true ALLOW_CONNECTIONS false`);
  await setup.ok('restore');
  expect(await databaseState(server, setup.name)).toMatchObject({ allowconn: false, istemplate: true });
  expect(await setup.databases()).toEqual([setup.name]);
});

it('stops before the swap when a setting cannot be carried over, leaving the live database as it was', async () => {
  const server = await findPostgres();
  const owner = await useRole(server, uniqueName('dysown'));
  await server.query(`ALTER ROLE ${ident(owner)} CREATEDB`);
  const setup = await postgresSetup({ scripts: { '01.sql': 'CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n' }, properties: { postgresqlUsername: owner } });
  await setup.ok('activate');
  await setup.ok('snapshot');
  // A setting only a superuser may make; dysnomia logs in as the (non-superuser) owner.
  await server.query(`ALTER DATABASE ${ident(setup.name)} SET log_min_duration_statement = 0`);
  await setup.query('INSERT INTO t VALUES (2)');
  const before = await databaseState(server, setup.name);

  const result = await setup.run('restore');
  expect(result.exitCode, result.stderr).toBe(1);
  expect(result.stderr).toContain(`cannot carry the settings, privileges and comment of database ${setup.name} over to the restored copy`);
  expect(result.stderr).toMatch(/permission denied to set parameter "log_min_duration_statement"/);
  expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
  expect(await setup.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
  expect(await databaseState(server, setup.name)).toEqual(before);
  expect(await setup.databases()).toEqual([setup.name]);
});

it('reads a stored list setting as the server wrote it', () => {
  expect(splitSettingList('app, public')).toEqual(['app', 'public']);
  expect(splitSettingList('"my ""odd"" schema, \'x\'", "$user",public')).toEqual([`my "odd" schema, 'x'`, '$user', 'public']);
  expect(splitSettingList('""')).toEqual(['']);
  expect(splitSettingList('  ')).toEqual([]);
  expect(splitSettingList('"open')).toBeUndefined();
  expect(splitSettingList('a b')).toBeUndefined();
  expect(setClause('search_path="a b", c')).toBe(`SET "search_path" TO 'a b', 'c'`);
  expect(setClause("x.note=it's \\ here=1")).toBe(`SET "x.note" TO E'it''s \\\\ here=1'`);
});
