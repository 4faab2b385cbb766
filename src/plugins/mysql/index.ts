/**
 * `mysql-database`: a MariaDB/MySQL database named after the component. Activation creates it
 * from the component's `mysql-databases/*.sql`; snapshots are consistent mysqldumps; a restore
 * loads into a staging database and swaps it in (swap.ts), so the live database is never lost.
 */
import { randomBytes } from 'node:crypto';
import { OperationError } from '../../core/errors.js';
import type { Plugin, PluginContext, ShellInfo, SnapshotSink, SnapshotSource } from '../../core/plugin.js';
import { appeared, checkDatabaseName, databaseNames, type DatabaseNames } from '../sql/names.js';
import { SHARED_PROPERTIES } from '../sql/properties.js';
import { dropStagingAfterFailure, notCreated, unchanged } from '../sql/staging.js';
import { initialScripts } from '../sql/scripts.js';
import type { ToolOptions } from '../sql/tool.js';
import { databaseExists, lockWaitTimedOut, query, quoteName, setLockWait, withConnection, type MysqlConnection } from './client.js';
import { DUMP_STREAM, dumpDatabase, historyArguments, warnInconsistentTables, warnSequenceDefaults } from './dump.js';
import { checkLoaded, loadDump, loadFile } from './load.js';
import { lockDatabase } from './lock.js';
import { maxAllowedPacket, warnLongStatement } from './packet.js';
import { describeServer, type MysqlOptions, parseMysqlOptions, PLUGIN, PROPERTIES } from './options.js';
import { recoverSwap, refuseOutsideForeignKeys, swapOrSettle } from './swap.js';

/** MariaDB and MySQL identifiers are at most 64 characters. */
const MAX_NAME = 64;

/** The component's folder of initial scripts, as in Dysnomia. */
const SCRIPTS_FOLDER = 'mysql-databases';

type Context = PluginContext<MysqlOptions>;

function namesOf(ctx: Context): DatabaseNames {
  return databaseNames(ctx.component.name, PLUGIN, MAX_NAME);
}

function toolOptions(ctx: Context): ToolOptions {
  return { plugin: PLUGIN, signal: ctx.signal, debug: (message) => ctx.log.debug(message) };
}


/** Creates the staging database with the live one's character set (or the server's default). */
async function createStaging(connection: MysqlConnection, names: DatabaseNames): Promise<void> {
  const [live] = await query(
    connection,
    'SELECT DEFAULT_CHARACTER_SET_NAME AS cs, DEFAULT_COLLATION_NAME AS coll FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
    [names.live],
  );
  const charset = live === undefined ? '' : ` CHARACTER SET ${String(live.cs)} COLLATE ${String(live.coll)}`;
  await query(connection, `CREATE DATABASE ${quoteName(names.staging)}${charset}`);
}

async function dropStaging(connection: MysqlConnection, names: DatabaseNames): Promise<void> {
  await query(connection, `DROP DATABASE IF EXISTS ${quoteName(names.staging)}`);
}

async function stagingTables(connection: MysqlConnection, names: DatabaseNames): Promise<string[]> {
  const rows = await query(
    connection,
    "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW'",
    [names.staging],
  );
  return rows.map((row) => String(row.name));
}


async function activate(ctx: Context): Promise<void> {
  const names = namesOf(ctx);
  const options = ctx.options;
  await withConnection(options, ctx.signal, async (connection) => {
    await lockDatabase(connection, options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(connection, names, ctx.log, ctx.options.timeoutMs / 1000);
    if (await databaseExists(connection, names.live)) {
      ctx.log.debug(`database ${names.live} exists; nothing to create`);
      return;
    }
    const scripts = await initialScripts(ctx.component.path, SCRIPTS_FOLDER, PLUGIN);
    await createStaging(connection, names);
    try {
      for (const script of scripts) {
        ctx.log.debug(`loading ${script}`);
        await loadFile(options, names.staging, script, toolOptions(ctx));
      }
    } catch (error) {
      await dropStagingAfterFailure(() => dropStaging(connection, names), names.staging, ctx.log);
      throw notCreated(error, names.live, PLUGIN, ctx.signal);
    }
    // Looked at again: a database of that name made by someone else while the scripts loaded must
    // stay as it is, not be swapped out like an old copy.
    if (await databaseExists(connection, names.live)) {
      await dropStaging(connection, names);
      throw new OperationError(appeared(names.live), { plugin: PLUGIN });
    }
    await swapOrSettle(connection, (work) => withConnection(options, undefined, work), names, options.timeoutMs / 1000, ctx.log);
    ctx.log.info(`created database ${names.live} on ${describeServer(options)} from ${scripts.length} script(s)`);
  });
}

async function snapshot(ctx: Context, sink: SnapshotSink): Promise<void> {
  const names = namesOf(ctx);
  await withConnection(ctx.options, ctx.signal, async (connection) => {
    // Held through the dump: a swap drops the live triggers for a moment and replaces the views
    // and routines after its commit, so a dump taken beside one could miss them. The snapshot
    // holds the store's shared lock already; that is safe because no run waits for a store lock
    // while it holds this one (a restore takes the store lock first, see store.ts withLatest).
    await lockDatabase(connection, ctx.options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(connection, names, ctx.log, ctx.options.timeoutMs / 1000);
    if (!(await databaseExists(connection, names.live))) {
      throw new OperationError(`database ${names.live} does not exist on ${describeServer(ctx.options)}; activate the component first`, {
        plugin: PLUGIN,
      });
    }
    await warnInconsistentTables(connection, names.live, ctx.log);
    await warnSequenceDefaults(connection, names.live, ctx.log);
    const history = await historyArguments(connection, names.live, ctx.log, toolOptions(ctx));
    const longest = await dumpDatabase(ctx.options, names.live, sink, toolOptions(ctx), history);
    warnLongStatement(longest, await maxAllowedPacket(connection), names.live, ctx.log);
  });
}

async function restore(ctx: Context, source: SnapshotSource): Promise<void> {
  const names = namesOf(ctx);
  const stream = source.streams.includes(DUMP_STREAM) ? DUMP_STREAM : undefined;
  if (stream === undefined) {
    throw new OperationError(
      `snapshot ${source.identity} has no ${DUMP_STREAM} stream (it has: ${source.streams.join(', ') || 'none'}); it was not taken by ${PLUGIN}`,
      { plugin: PLUGIN },
    );
  }
  const options = ctx.options;
  await withConnection(options, ctx.signal, async (connection) => {
    await lockDatabase(connection, options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(connection, names, ctx.log, ctx.options.timeoutMs / 1000);
    const what = `loading snapshot ${source.identity} into ${names.staging}`;
    try {
      await refuseOutsideForeignKeys(connection, names);
      await createStaging(connection, names);
      try {
        const maxPacket = await maxAllowedPacket(connection);
        const report = await loadDump(options, names.staging, source.open(stream), what, toolOptions(ctx), maxPacket);
        checkLoaded(report, await stagingTables(connection, names), source.size(stream), what);
      } catch (error) {
        await dropStagingAfterFailure(() => dropStaging(connection, names), names.staging, ctx.log);
        throw error;
      }
    } catch (error) {
      throw unchanged(error, names.live, PLUGIN);
    }
    await swapOrSettle(connection, (work) => withConnection(options, undefined, work), names, options.timeoutMs / 1000, ctx.log);
  });
}

/**
 * DROP DATABASE, waiting at most the container's timeout for other sessions' locks on its tables.
 * The server's own bound (lock_wait_timeout, a day by default) let a pooled connection with an
 * open transaction hold collect-garbage without a word. MariaDB takes the locks on all the tables
 * before it drops any, so a wait that times out has dropped nothing.
 */
async function dropHeldDatabase(connection: MysqlConnection, database: string, options: MysqlOptions): Promise<void> {
  const seconds = Math.max(1, Math.ceil(options.timeoutMs / 1000));
  await setLockWait(connection, seconds);
  try {
    await query(connection, `DROP DATABASE ${quoteName(database)}`);
  } catch (error) {
    if (!lockWaitTimedOut(error)) throw error;
    const sessions = await query(
      connection,
      'SELECT ID AS id, USER AS user, HOST AS host, COMMAND AS command, TIME AS time FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID() ORDER BY ID',
      [database],
    ).catch(() => []);
    const named = sessions.map((row) => `${String(row.id)} (${String(row.user)}@${String(row.host)}, ${String(row.command)} for ${String(row.time)} s)`);
    throw new OperationError(
      `cannot drop database ${database} on ${describeServer(options)}: other sessions hold locks on its tables (an open transaction that used them, or LOCK TABLES) and did not release them within ${seconds} s (the container's timeout)` +
        `${named.length > 0 ? `; sessions using it: ${named.join(', ')}` : ''}. Nothing was dropped: end those sessions (KILL <id>) or run collect-garbage again`,
      { plugin: PLUGIN, cause: error },
    );
  }
}

async function collectGarbage(ctx: Context): Promise<void> {
  const names = namesOf(ctx);
  await withConnection(ctx.options, ctx.signal, async (connection) => {
    await lockDatabase(connection, ctx.options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(connection, names, ctx.log, ctx.options.timeoutMs / 1000);
    if (!(await databaseExists(connection, names.live))) {
      ctx.log.info(`database ${names.live} does not exist on ${describeServer(ctx.options)}; nothing to drop`);
      return;
    }
    await dropHeldDatabase(connection, names.live, ctx.options);
    ctx.log.info(`dropped database ${names.live} on ${describeServer(ctx.options)}`);
  });
}

async function shell(ctx: Context): Promise<ShellInfo> {
  const names = namesOf(ctx);
  const options = ctx.options;
  const env: Record<string, string> =
    options.socket !== undefined
      ? { MYSQL_UNIX_PORT: options.socket }
      : { MYSQL_HOST: options.host!, MYSQL_TCP_PORT: String(options.port) };
  const connect = options.socket !== undefined ? '' : ' --protocol=TCP';
  const password = options.password !== undefined ? ' -p' : '';
  return {
    help: [
      `This is a shell session for the MariaDB/MySQL database '${names.live}' on ${describeServer(options)}.`,
      '',
      'Module specific environment variables:',
      'mysqlUsername      user with the privileges to administer the database',
      'mysqlPassword      that user\'s password (from the container; never printed)',
      options.socket !== undefined ? 'MYSQL_UNIX_PORT    the server\'s socket' : 'MYSQL_HOST, MYSQL_TCP_PORT  the server\'s address',
      '',
      'Some useful commands:',
      `mysql --user=${options.user}${password}${connect} ${names.live}   open an interactive session on the database`,
      `mysqldump --user=${options.user}${password}${connect} --single-transaction ${names.live} | less   look at its content`,
    ],
    env,
  };
}

/** Whether the server is a Galera cluster node (wsrep on); a server without Galera has no such variable. */
async function isGaleraNode(connection: MysqlConnection): Promise<boolean> {
  try {
    const [row] = await query(connection, 'SELECT @@GLOBAL.wsrep_on AS galera');
    return Number(row?.galera) === 1;
  } catch {
    return false;
  }
}

const plugin: Plugin<MysqlOptions> = {
  type: PLUGIN,
  checkComponent: async (ctx) => checkDatabaseName(ctx.operation, ctx.component.name, PLUGIN, MAX_NAME),
  parseOptions: parseMysqlOptions,
  properties: PROPERTIES,
  unprefixedProperties: SHARED_PROPERTIES,
  activate,
  snapshot,
  restore,
  collectGarbage,
  shell,
  location: (options, component) => `mysql://${describeServer(options)}/${component.name}`,
  // A user lock with a random name, taken through `mine`, is in use seen through `theirs` only on
  // one server: no privilege needed, and no two servers can be mistaken for one (as host name,
  // port and data directory can be, on cloned machines). User locks stay on one node of a Galera
  // cluster, whose nodes share their data: there, "not in use" cannot tell.
  sameServer: (mine, theirs, _log, signal) =>
    withConnection(mine, signal, async (held) => {
      const probe = `dysnomia-probe:${randomBytes(8).toString('hex')}`;
      const [row] = await query(held, 'SELECT GET_LOCK(?, 0) AS taken', [probe]);
      if (Number(row?.taken) !== 1) throw new OperationError(`cannot take the probe lock ${probe} on ${describeServer(mine)}`, { plugin: PLUGIN });
      return withConnection(theirs, signal, async (other) => {
        const [seen] = await query(other, 'SELECT IS_USED_LOCK(?) AS holder', [probe]);
        if (seen?.holder !== null && seen?.holder !== undefined) return true;
        if ((await isGaleraNode(held)) || (await isGaleraNode(other))) {
          throw new OperationError(
            `${describeServer(mine)} or ${describeServer(theirs)} is a node of a Galera cluster, whose nodes share their data but not their locks`,
            { plugin: PLUGIN },
          );
        }
        return false;
      });
    }),
};

export default plugin;
