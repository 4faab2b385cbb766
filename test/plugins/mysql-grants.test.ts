/**
 * mysql-database on the real server: the swap drops and re-creates the routines, and the server
 * drops their grants with them; a restore gives them again, and says which it could not give.
 */
import mysql from 'mysql2/promise';
import { describe, expect, it, onTestFinished } from 'vitest';
import { findMysql, type MysqlServer } from '../support/servers.js';
import { mysqlSetup, type SqlSetup } from '../support/sql-setup.js';
import { uniqueName } from '../support/temp.js';

const SCHEMA = [
  'CREATE TABLE orders (id INT PRIMARY KEY, amount INT);',
  'CREATE PROCEDURE add_order(IN i INT, IN a INT) INSERT INTO orders VALUES (i, a);',
  'CREATE FUNCTION total() RETURNS INT READS SQL DATA RETURN (SELECT IFNULL(SUM(amount), 0) FROM orders);',
  'INSERT INTO orders VALUES (1, 5);',
  '',
].join('\n');

/** A user (and a role) with grants on the component's routines only, dropped after the test. */
async function routineUsers(server: MysqlServer, setup: SqlSetup) {
  const user = uniqueName('ro');
  const role = uniqueName('rr');
  const host = server.socket !== undefined ? 'localhost' : '%';
  onTestFinished(async () => {
    await server.query(`DROP USER IF EXISTS '${user}'@'${host}'`);
    await server.query(`DROP ROLE IF EXISTS '${role}'`);
  });
  await server.query(`CREATE USER '${user}'@'${host}' IDENTIFIED BY 'pw-${user}'`);
  await server.query(`CREATE ROLE '${role}'`);
  await server.query(`GRANT EXECUTE ON PROCEDURE \`${setup.name}\`.add_order TO '${user}'@'${host}'`);
  await server.query(`GRANT EXECUTE, ALTER ROUTINE ON FUNCTION \`${setup.name}\`.total TO '${user}'@'${host}' WITH GRANT OPTION`);
  await server.query(`GRANT EXECUTE ON FUNCTION \`${setup.name}\`.total TO '${role}'`);
  const grants = () =>
    server.query(
      'SELECT User AS user, Host AS host, Routine_name AS name, Routine_type AS type, Proc_priv AS privileges FROM mysql.procs_priv WHERE Db = ? AND User IN (?, ?) ORDER BY 1, 3',
      [setup.name, user, role],
    );
  const asUser = async <T>(work: (connection: mysql.Connection) => Promise<T>): Promise<T> => {
    const connection = await mysql.createConnection({
      user,
      password: `pw-${user}`,
      socketPath: server.socket,
      host: server.host,
      port: server.port,
      database: setup.name,
    });
    try {
      return await work(connection);
    } finally {
      await connection.end();
    }
  };
  return { user, role, host, grants, asUser };
}

describe('mysql-database: grants on routines', () => {
  it('a restore gives the grants on the routines again, and the user can call them', { timeout: 60_000 }, async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({ scripts: { '1.sql': SCHEMA } });
    await setup.ok('activate');
    const { grants, asUser } = await routineUsers(server, setup);
    const before = await grants();
    expect(before).toHaveLength(3);
    await setup.ok('snapshot');
    await setup.query('DELETE FROM orders');

    await setup.ok('restore');
    expect(await grants()).toEqual(before);
    await asUser(async (connection) => {
      await connection.query('CALL add_order(2, 7)');
      const [rows] = await connection.query('SELECT total() AS t');
      expect(rows).toEqual([{ t: 12 }]);
    });
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('a grant that cannot be given again is named with its statement; the data is restored all the same', { timeout: 60_000 }, async () => {
    const server = await findMysql();
    const setup = await mysqlSetup({ scripts: { '1.sql': SCHEMA } });
    await setup.ok('activate');
    const { grants } = await routineUsers(server, setup);
    // A grant row of a user that no longer exists: giving it again must fail, not create the user.
    const ghost = uniqueName('gh');
    onTestFinished(async () => {
      await server.query('DELETE FROM mysql.procs_priv WHERE User = ?', [ghost]);
      await server.query(`DROP USER IF EXISTS '${ghost}'@'localhost'`);
    });
    await server.query(
      "INSERT INTO mysql.procs_priv (Host, Db, User, Routine_name, Routine_type, Grantor, Proc_priv) VALUES ('localhost', ?, ?, 'add_order', 'PROCEDURE', 'root@localhost', 'Execute')",
      [setup.name, ghost],
    );
    const before = await grants();
    await setup.ok('snapshot');
    await setup.query('DELETE FROM orders');

    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`the restored data of ${setup.name} is in place, but a grant on its routines could not be given again`);
    expect(result.stderr).toContain(`GRANT EXECUTE ON PROCEDURE \`${setup.name}\`.\`add_order\` TO '${ghost}'@'localhost'; -- `);
    expect(await setup.query('SELECT id, amount FROM orders')).toEqual([{ id: 1, amount: 5 }]);
    expect(await grants()).toEqual(before);
    expect(await server.query('SELECT 1 FROM mysql.user WHERE User = ?', [ghost])).toEqual([]);
    expect(await setup.databases()).toEqual([setup.name]);
  });
});
