/**
 * The server lock of a database (sql/server-lock.ts) on MariaDB/MySQL: a user-level lock
 * (GET_LOCK) named `dysnomia:<database in lower case>`, at most 64 characters since database names
 * that reach here are at most 55 (sql/names.ts). Lower case: with lower_case_table_names set,
 * `Shop` and `shop` are one database (without it, they only wait for each other).
 */
import type { Logger } from '../../core/log.js';
import { takeServerLock } from '../sql/server-lock.js';
import { type MysqlConnection, query } from './client.js';
import { describeServer, type MysqlOptions, PLUGIN } from './options.js';

function userLock(connection: MysqlConnection, database: string) {
  const name = `dysnomia:${database.toLowerCase()}`;
  return {
    tryTake: async () => {
      const [row] = await query(connection, 'SELECT GET_LOCK(?, 0) AS taken', [name]);
      return Number(row?.taken) === 1;
    },
    holder: async () => {
      const [row] = await query(
        connection,
        'SELECT p.ID AS id, p.USER AS user, p.HOST AS host FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(?)',
        [name],
      );
      return row === undefined ? undefined : `server connection ${String(row.id)}, ${String(row.user)}@${String(row.host)}`;
    },
  };
}

/**
 * Takes the server lock of `database` for the rest of the connection, waiting while another run
 * holds it. The connection may then sit idle through a long load or dump; the server must not
 * close it for that (wait_timeout, often lowered to minutes), or the lock goes with it.
 */
export async function lockDatabase(
  connection: MysqlConnection,
  options: MysqlOptions,
  database: string,
  log: Logger,
  signal?: AbortSignal,
  timeoutMs?: number,
): Promise<void> {
  await query(connection, 'SET SESSION wait_timeout = 31536000');
  return takeServerLock(userLock(connection, database), { database, server: describeServer(options), plugin: PLUGIN, log, signal, timeoutMs });
}

/** Takes the server lock of `database` if it is free; false when another run holds it. */
export function tryLockDatabase(connection: MysqlConnection, database: string): Promise<boolean> {
  return userLock(connection, database).tryTake();
}
