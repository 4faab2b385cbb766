/**
 * `postgresql-database`: a PostgreSQL database named after the component. Activation creates it
 * from the component's `postgresql-databases/*.sql`; snapshots are consistent pg_dumps; a restore
 * loads into a staging database, gives it the live database's own state (database-state.ts) and
 * swaps the names in one transaction (swap.ts), so the live database is never lost.
 */
import { randomBytes } from 'node:crypto';
import { OperationError } from '../../core/errors.js';
import type { Plugin, PluginContext, ShellInfo, SnapshotSink, SnapshotSource } from '../../core/plugin.js';
import { appeared, checkDatabaseName, databaseNames, type DatabaseNames } from '../sql/names.js';
import { SHARED_PROPERTIES } from '../sql/properties.js';
import { dropStagingAfterFailure, notCreated, unchanged } from '../sql/staging.js';
import { initialScripts } from '../sql/scripts.js';
import { databaseExists, quoteName, withSession, withToolAccess } from './client.js';
import { carryOverDatabaseState } from './database-state.js';
import { DUMP_STREAM, dumpDatabase } from './dump.js';
import { fingerprint } from './fingerprint.js';
import { loadDump, loadFile } from './load.js';
import { lockDatabase } from './lock.js';
import { describeServer, parsePostgresOptions, PLUGIN, type PostgresOptions, PROPERTIES } from './options.js';
import { primeKnowsRestrict } from './restrict.js';
import { createStaging, dropCopy, dropDatabase, recoverSwap, swapIn } from './swap.js';

/** PostgreSQL identifiers are at most 63 bytes. */
const MAX_NAME = 63;

/** The component's folder of initial scripts, as in Dysnomia. */
const SCRIPTS_FOLDER = 'postgresql-databases';

type Context = PluginContext<PostgresOptions>;

function namesOf(ctx: Context): DatabaseNames {
  return databaseNames(ctx.component.name, PLUGIN, MAX_NAME);
}



async function activate(ctx: Context): Promise<void> {
  const names = namesOf(ctx);
  const options = ctx.options;
  await withSession(options, ctx.log, ctx.signal, async (session) => {
    await lockDatabase(session, options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(session, names, options.timeoutMs, ctx.log);
    if (await databaseExists(session, names.live)) {
      ctx.log.debug(`database ${names.live} exists; nothing to create`);
      return;
    }
    const scripts = await initialScripts(ctx.component.path, SCRIPTS_FOLDER, PLUGIN);
    await createStaging(session, names);
    try {
      await withToolAccess(options, session, ctx.signal, async (tool) => {
        for (const script of scripts) {
          ctx.log.debug(`loading ${script}`);
          await loadFile(options, names.staging, script, tool);
        }
      });
    } catch (error) {
      await dropStagingAfterFailure(() => dropDatabase(session, names.staging, 'to drop it', options.timeoutMs, ctx.log), names.staging, ctx.log);
      throw notCreated(error, names.live, PLUGIN, ctx.signal);
    }
    // Not swapIn: a database of that name made by someone else while the scripts loaded must stay
    // as it is. The rename fails if the name is taken, so nothing is replaced.
    try {
      await session.query(`ALTER DATABASE ${quoteName(names.staging)} RENAME TO ${quoteName(names.live)}`);
    } catch (error) {
      if ((error as { code?: string }).code !== '42P04') throw error;
      await dropDatabase(session, names.staging, 'to drop it', options.timeoutMs, ctx.log);
      throw new OperationError(appeared(names.live), { plugin: PLUGIN, cause: error });
    }
    ctx.log.info(`created database ${names.live} on ${describeServer(options)} from ${scripts.length} script(s)`);
  });
}

async function snapshot(ctx: Context, sink: SnapshotSink): Promise<void> {
  const names = namesOf(ctx);
  const options = ctx.options;
  await withSession(options, ctx.log, ctx.signal, async (session) => {
    if (!(await databaseExists(session, names.live))) {
      throw new OperationError(`database ${names.live} does not exist on ${describeServer(options)}; activate the component first`, {
        plugin: PLUGIN,
      });
    }
    await withToolAccess(options, session, ctx.signal, (tool) => dumpDatabase(options, session, names.live, sink, tool, ctx.log));
  });
}

async function restore(ctx: Context, source: SnapshotSource): Promise<void> {
  const names = namesOf(ctx);
  if (!source.streams.includes(DUMP_STREAM)) {
    throw new OperationError(
      `snapshot ${source.identity} has no ${DUMP_STREAM} stream (it has: ${source.streams.join(', ') || 'none'}); it was not taken by ${PLUGIN}`,
      { plugin: PLUGIN },
    );
  }
  const options = ctx.options;
  // psql's version (is the \restrict guard needed?) while the session connects.
  primeKnowsRestrict('psql');
  await withSession(options, ctx.log, ctx.signal, async (session) => {
    await lockDatabase(session, options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(session, names, options.timeoutMs, ctx.log);
    try {
      await createStaging(session, names);
      try {
        await withToolAccess(options, session, ctx.signal, (tool) =>
          loadDump(
            options,
            names.staging,
            source.open(DUMP_STREAM),
            source.size(DUMP_STREAM),
            `loading snapshot ${source.identity} into ${names.staging}`,
            tool,
          ),
        );
        // After the load: a setting such as default_transaction_read_only, or ALLOW_CONNECTIONS
        // false, must not reach the session that loads.
        await carryOverDatabaseState(session, names);
      } catch (error) {
        await dropStagingAfterFailure(() => dropCopy(session, names.staging, 'to drop it', options.timeoutMs, ctx.log), names.staging, ctx.log);
        throw error;
      }
    } catch (error) {
      throw unchanged(error, names.live, PLUGIN);
    }
    await swapIn(session, names, options.timeoutMs, ctx.log, (work) => withSession(options, ctx.log, undefined, work));
  });
}

async function collectGarbage(ctx: Context): Promise<void> {
  const names = namesOf(ctx);
  const options = ctx.options;
  await withSession(options, ctx.log, ctx.signal, async (session) => {
    await lockDatabase(session, options, names.live, ctx.log, ctx.signal, ctx.lockTimeoutMs);
    await recoverSwap(session, names, options.timeoutMs, ctx.log);
    if (!(await databaseExists(session, names.live))) {
      ctx.log.info(`database ${names.live} does not exist on ${describeServer(options)}; nothing to drop`);
      return;
    }
    await dropDatabase(session, names.live, 'to drop it (collect-garbage)', options.timeoutMs, ctx.log);
    ctx.log.info(`dropped database ${names.live} on ${describeServer(options)}`);
  });
}

async function shell(ctx: Context): Promise<ShellInfo> {
  const names = namesOf(ctx);
  const options = ctx.options;
  const host = options.socketDir ?? options.host!;
  const asUser = process.getuid?.() === 0 && options.socketDir !== undefined && options.user !== 'root';
  return {
    help: [
      `This is a shell session for the PostgreSQL database '${names.live}' on ${describeServer(options)}.`,
      '',
      'Module specific environment variables:',
      'postgresqlUsername  role with the privileges to administer the database',
      'PGHOST, PGPORT, PGUSER, PGDATABASE  set so that psql reaches the database',
      '',
      'Some useful commands:',
      'psql                open a PostgreSQL interactive terminal on the database',
      ...(asUser
        ? [
            `su ${options.user} -s /bin/sh    open a shell as the OS user ${options.user} (needed for peer authentication on the socket)`,
            `runuser -u ${options.user} -- psql --host=${host} --port=${options.port} ${names.live}   psql as that user`,
          ]
        : []),
      ...(options.password !== undefined ? ['(psql asks for the password; it is in the container, never printed)'] : []),
    ],
    env: { PGHOST: host, PGPORT: String(options.port), PGUSER: options.user, PGDATABASE: names.live },
  };
}

const plugin: Plugin<PostgresOptions> = {
  type: PLUGIN,
  checkComponent: async (ctx) => checkDatabaseName(ctx.operation, ctx.component.name, PLUGIN, MAX_NAME),
  parseOptions: parsePostgresOptions,
  properties: PROPERTIES,
  unprefixedProperties: SHARED_PROPERTIES,
  activate,
  fingerprint: (ctx) => fingerprint(ctx, namesOf(ctx).live),
  snapshot,
  restore,
  collectGarbage,
  shell,
  location: (options, component) => `postgresql://${describeServer(options)}/${component.name}`,
  // An advisory lock with random keys, held through `mine`, shows in pg_locks seen through
  // `theirs` only on one server: no privilege needed, and no two servers can be mistaken for one
  // (as the system identifiers of cloned clusters can). pg_locks covers the whole cluster, whatever
  // database a session is on. The lock is a transaction's, in a transaction kept open: a pooler
  // (pgbouncer) cannot hand that server process to the other session meanwhile, and it ends with
  // the transaction.
  sameServer: (mine, theirs, log, signal) =>
    withSession(mine, log, signal, async (held) => {
      const keys = [randomBytes(4).readInt32BE(0), randomBytes(4).readInt32BE(0)];
      await held.query('BEGIN');
      try {
        const [taken] = await held.query<{ taken: boolean }>('SELECT pg_try_advisory_xact_lock($1::int, $2::int) AS taken', keys);
        if (taken?.taken !== true) throw new OperationError(`cannot take a probe lock on ${describeServer(mine)}`, { plugin: PLUGIN });
        return await withSession(theirs, log, signal, async (other) => {
          const [row] = await other.query<{ seen: boolean }>(
            `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 2
                               AND classid = $1::bigint::oid AND objid = $2::bigint::oid) AS seen`,
            [keys[0]! >>> 0, keys[1]! >>> 0],
          );
          return row?.seen === true;
        });
      } finally {
        await held.query('ROLLBACK').catch(() => {});
      }
    }),
};

export default plugin;
