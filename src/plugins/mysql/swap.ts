/**
 * Swapping a loaded staging database in as the live one, on MariaDB/MySQL, which has no
 * RENAME DATABASE. The design (docs/mysql-database.md, "How restore swaps"):
 *
 * - The commit point is ONE `RENAME TABLE` statement (atomic, crash-safe in MariaDB >= 10.6 and
 *   MySQL 8): it moves every live table to the old database, every staging table to the live
 *   database, and renames the journal table from `__dysnomia_swap` to `__dysnomia_swap_done`.
 * - RENAME TABLE does not move views, routines or events, and refuses tables that carry
 *   triggers. So before the commit, the definitions of everything else are read with SHOW CREATE
 *   (with their sql_mode, character set and time zone) into the journal, in the old database;
 *   then the triggers are dropped from the staging and the live tables. After the commit, the
 *   live database's views, routines, events and triggers are replaced by the journal's.
 * - A run killed at any moment leaves a state the next run recognises from the server alone:
 *   a journal not yet renamed means "not committed": the live triggers are put back from the
 *   journal and the helpers dropped; a renamed journal means "committed": the object
 *   re-creation is finished, then the old tables are dropped.
 *
 * - The wait for other sessions' locks is done with the live triggers in place: `LOCK TABLES`
 *   on every live table waits (at most the timeout) until no other session holds one, the
 *   triggers are dropped under that lock, and the RENAME right after it waits at most a second.
 *   If another session took a lock in between, the triggers are put back (waiting for that
 *   session, up to {@link PUT_BACK_PATIENCE} times the timeout) and the swap tries again (see
 *   {@link renameWithTriggersAside}). Triggers that cannot be put back are named in the error
 *   ({@link TriggersMissing}); the journal stays, and the next run puts them back.
 *
 * The live tables (the data) are therefore always fully old or fully new. What is not atomic:
 * between dropping the triggers and the RENAME (at most about a second each try), or until they
 * are put back when it did not go through, other sessions see the tables without triggers (and
 * after the commit, old views and routines over new tables).
 */
import { OperationError, messageOf } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';
import type { DatabaseNames } from '../sql/names.js';
import { databaseExists, lockWaitTimedOut, type MysqlConnection, query, quoteName, setLockWait } from './client.js';
import { tryLockDatabase } from './lock.js';
import { PLUGIN } from './options.js';

const JOURNAL = '__dysnomia_swap';
const COMMITTED = '__dysnomia_swap_done';
/** Table names dysnomia uses inside the old database; a user table of that name is refused. */
const RESERVED = [JOURNAL, COMMITTED];

type ObjectKind = 'trigger' | 'view' | 'procedure' | 'function' | 'event';

/** A schema object as SHOW CREATE gives it, with the session settings it was created under. */
interface Definition {
  /**
   * `live`: a live trigger to put back on rollback; `new`: an object to create on commit;
   * `grant`: a grant on a live routine, to give again once the new routines are in place.
   */
  role: 'live' | 'new' | 'grant';
  kind: ObjectKind;
  name: string;
  statement: string;
  sqlMode: string;
  charset: string;
  collation: string;
  timeZone: string;
}

type Row = Record<string, unknown>;

const text = (value: unknown): string => (value === null || value === undefined ? '' : String(value));

async function tablesOf(connection: MysqlConnection, schema: string): Promise<string[]> {
  const rows = await query(
    connection,
    "SELECT TABLE_NAME AS name FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE <> 'VIEW' ORDER BY TABLE_NAME",
    [schema],
  );
  return rows.map((row) => text(row.name));
}

async function viewsOf(connection: MysqlConnection, schema: string): Promise<string[]> {
  const rows = await query(connection, 'SELECT TABLE_NAME AS name FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME', [schema]);
  return rows.map((row) => text(row.name));
}

/** Prefix of the names that live views replaced by a table of the same name get for the commit. */
const REPLACED_VIEW = '__dysnomia_view_';

/**
 * The live views named like a staging table, each with a free name in the live database to move
 * it to. Tables and views share one namespace, so the commit's move of the staging table into the
 * live database would fail (`Table 'x' already exists`); the same RENAME TABLE moves the view out
 * of the way first (a view can be renamed within its database), and the finishing step drops
 * every live view anyway before it creates the snapshot's. Being part of the commit's RENAME, this
 * happens with it or not at all.
 */
function replacedViews(liveViews: string[], liveTables: string[], stagingTables: string[]): Array<[string, string]> {
  const staged = new Set(stagingTables);
  // Compared without case: on servers with lower_case_table_names the names are one either way.
  const taken = new Set([...liveViews, ...liveTables, ...stagingTables].map((name) => name.toLowerCase()));
  const moves: Array<[string, string]> = [];
  let next = 1;
  for (const view of liveViews.filter((name) => staged.has(name))) {
    while (taken.has(`${REPLACED_VIEW}${next}`)) next += 1;
    moves.push([view, `${REPLACED_VIEW}${next}`]);
    next += 1;
  }
  return moves;
}

async function showCreate(
  connection: MysqlConnection,
  kind: ObjectKind,
  schema: string,
  name: string,
  role: Definition['role'],
): Promise<Definition> {
  const what = kind === 'procedure' ? 'PROCEDURE' : kind === 'function' ? 'FUNCTION' : kind.toUpperCase();
  const [row] = await query<Row>(connection, `SHOW CREATE ${what} ${quoteName(schema)}.${quoteName(name)}`);
  if (row === undefined) throw new OperationError(`SHOW CREATE ${what} ${schema}.${name} returned nothing`, { plugin: PLUGIN });
  const statementColumn = {
    trigger: 'SQL Original Statement',
    view: 'Create View',
    procedure: 'Create Procedure',
    function: 'Create Function',
    event: 'Create Event',
  }[kind];
  const statement = text(row[statementColumn]);
  if (statement === '') {
    throw new OperationError(
      `cannot read the definition of ${kind} ${schema}.${name} (SHOW CREATE gives none; the user needs more privileges)`,
      { plugin: PLUGIN },
    );
  }
  return {
    role,
    kind,
    name,
    statement,
    sqlMode: text(row.sql_mode),
    charset: text(row.character_set_client),
    collation: text(row.collation_connection),
    timeZone: text(row.time_zone),
  };
}

/** Every trigger of a schema, in creation order (per table, timing, event and action order). */
async function triggersOf(connection: MysqlConnection, schema: string, role: Definition['role']): Promise<Definition[]> {
  const rows = await query(
    connection,
    'SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ? ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER',
    [schema],
  );
  const definitions: Definition[] = [];
  for (const row of rows) definitions.push(await showCreate(connection, 'trigger', schema, text(row.name), role));
  return definitions;
}

/** The views, routines and events of a schema (not its triggers). */
async function objectsOf(connection: MysqlConnection, schema: string): Promise<Definition[]> {
  const definitions: Definition[] = [];
  const routines = await query(
    connection,
    'SELECT ROUTINE_NAME AS name, ROUTINE_TYPE AS type FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? ORDER BY ROUTINE_TYPE, ROUTINE_NAME',
    [schema],
  );
  for (const routine of routines) {
    const type = text(routine.type);
    if (type !== 'PROCEDURE' && type !== 'FUNCTION') {
      throw new OperationError(
        `${type.toLowerCase()} ${schema}.${text(routine.name)} cannot be moved by dysnomia (only procedures and functions are)`,
        { plugin: PLUGIN },
      );
    }
    definitions.push(await showCreate(connection, type === 'PROCEDURE' ? 'procedure' : 'function', schema, text(routine.name), 'new'));
  }
  // SHOW CREATE VIEW leaves out the schema of tables in the current database, so the definitions
  // name the staging database's tables without it and apply to the live database as they are.
  await query(connection, `USE ${quoteName(schema)}`);
  const views = await query(
    connection,
    'SELECT TABLE_NAME AS name FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME',
    [schema],
  );
  for (const view of views) definitions.push(await showCreate(connection, 'view', schema, text(view.name), 'new'));
  const events = await query(
    connection,
    'SELECT EVENT_NAME AS name FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ? ORDER BY EVENT_NAME',
    [schema],
  );
  for (const event of events) definitions.push(await showCreate(connection, 'event', schema, text(event.name), 'new'));
  return definitions;
}

/** A string literal under NO_BACKSLASH_ESCAPES, which the grants run with. */
function quoteString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

const ROUTINE_PRIVILEGES: Record<string, string> = { Execute: 'EXECUTE', 'Alter Routine': 'ALTER ROUTINE' };

/**
 * The grants on the routines of `schema` (mysql.procs_priv), as GRANT statements. The swap drops
 * and re-creates the routines, and the server drops a routine's grants with it, so they are
 * given again after the commit. A role is stored with the host '' and named without a host
 * (`TO 'role'@''` would name a user). Without the privilege to read them, the restore goes on
 * and says that they are not kept, as before this was read. `sqlMode`: what they run with.
 */
async function routineGrantsOf(connection: MysqlConnection, schema: string, sqlMode: string, log: Logger): Promise<Definition[]> {
  const routines = await query(connection, 'SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ? LIMIT 1', [schema]);
  if (routines.length === 0) return [];
  let rows: Row[];
  try {
    rows = await query(
      connection,
      `SELECT User AS user, Host AS host, Routine_name AS name, Routine_type AS type, Proc_priv AS privileges
         FROM mysql.procs_priv WHERE Db = ? AND Routine_type IN ('PROCEDURE', 'FUNCTION') ORDER BY Routine_type, Routine_name, User, Host`,
      [schema],
    );
  } catch (error) {
    log.warn(
      `cannot read the grants on the routines of ${schema} (${messageOf(error)}); the swap re-creates the routines, and grants on them (GRANT EXECUTE ON PROCEDURE ...) are lost: give them again after the restore, or let this user read mysql.procs_priv`,
    );
    return [];
  }
  return rows.map((row) => {
    const held = text(row.privileges).split(',');
    const privileges = held.map((p) => ROUTINE_PRIVILEGES[p]).filter((p): p is string => p !== undefined);
    const host = text(row.host);
    const grantee = host === '' ? quoteString(text(row.user)) : `${quoteString(text(row.user))}@${quoteString(host)}`;
    const type = text(row.type);
    const statement =
      `GRANT ${privileges.length > 0 ? privileges.join(', ') : 'USAGE'} ON ${type} ${quoteName(schema)}.${quoteName(text(row.name))} TO ${grantee}` +
      (held.includes('Grant') ? ' WITH GRANT OPTION' : '');
    return {
      role: 'grant',
      kind: type === 'FUNCTION' ? 'function' : 'procedure',
      name: text(row.name),
      statement,
      sqlMode,
      charset: '',
      collation: '',
      timeZone: '',
    };
  });
}

const SAFE_SETTING = /^[A-Za-z0-9_]+$/;

/** Runs a CREATE statement under the session settings it was first created with. */
async function create(connection: MysqlConnection, definition: Definition): Promise<void> {
  await query(connection, 'SET SESSION sql_mode = ?', [definition.sqlMode]);
  // The driver sends UTF-8, so only a UTF-8 client character set can be restored as it was.
  const utf8 = /^utf8(mb3|mb4)?$/i.test(definition.charset);
  if (utf8 && SAFE_SETTING.test(definition.collation)) {
    await query(connection, `SET NAMES ${definition.charset} COLLATE ${definition.collation}`);
  } else {
    await query(connection, 'SET NAMES utf8mb4');
  }
  if (definition.timeZone !== '') await query(connection, 'SET SESSION time_zone = ?', [definition.timeZone]);
  await query(connection, definition.statement);
}

async function createJournal(connection: MysqlConnection, names: DatabaseNames, rows: Definition[], liveCreated: boolean) {
  const journal = `${quoteName(names.old)}.${quoteName(JOURNAL)}`;
  await query(
    connection,
    `CREATE TABLE ${journal} (seq INT PRIMARY KEY, role VARCHAR(8) NOT NULL, kind VARCHAR(16) NOT NULL, name VARCHAR(64) NOT NULL, statement LONGTEXT NOT NULL, sql_mode TEXT NOT NULL, charset VARCHAR(64) NOT NULL, collation VARCHAR(64) NOT NULL, time_zone VARCHAR(64) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`,
  );
  const values = [
    [0, 'flag', 'live_created', liveCreated ? '1' : '0', '', '', '', '', ''],
    ...rows.map((d, index) => [index + 1, d.role, d.kind, d.name, d.statement, d.sqlMode, d.charset, d.collation, d.timeZone]),
  ];
  await query(connection, `INSERT INTO ${journal} VALUES ?`, [values]);
}

interface Journal {
  liveCreated: boolean;
  definitions: Definition[];
}

async function readJournal(connection: MysqlConnection, names: DatabaseNames, table: string): Promise<Journal> {
  const rows = await query(connection, `SELECT * FROM ${quoteName(names.old)}.${quoteName(table)} ORDER BY seq`);
  const flag = rows.find((row) => row.role === 'flag');
  return {
    liveCreated: text(flag?.name) === '1',
    definitions: rows
      .filter((row) => row.role !== 'flag')
      .map((row) => ({
        role: text(row.role) as Definition['role'],
        kind: text(row.kind) as ObjectKind,
        name: text(row.name),
        statement: text(row.statement),
        sqlMode: text(row.sql_mode),
        charset: text(row.charset),
        collation: text(row.collation),
        timeZone: text(row.time_zone),
      })),
  };
}

/** The names of the triggers a schema has now. */
async function triggerNames(connection: MysqlConnection, schema: string): Promise<Set<string>> {
  const rows = await query(connection, 'SELECT TRIGGER_NAME AS name FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = ?', [schema]);
  return new Set(rows.map((row) => text(row.name)));
}

/** Drops the triggers of a schema: `only` those named, or all it has. */
async function dropTriggers(connection: MysqlConnection, schema: string, only?: string[]): Promise<void> {
  const names = only ?? [...(await triggerNames(connection, schema))];
  for (const name of names) await query(connection, `DROP TRIGGER IF EXISTS ${quoteName(schema)}.${quoteName(name)}`);
}

/** Drops every view, routine, event and trigger of the live database. */
async function dropObjects(connection: MysqlConnection, schema: string): Promise<void> {
  await dropTriggers(connection, schema);
  const views = await query(connection, 'SELECT TABLE_NAME AS name FROM information_schema.VIEWS WHERE TABLE_SCHEMA = ?', [schema]);
  if (views.length > 0) {
    await query(connection, `DROP VIEW IF EXISTS ${views.map((v) => `${quoteName(schema)}.${quoteName(text(v.name))}`).join(', ')}`);
  }
  const routines = await query(
    connection,
    'SELECT ROUTINE_NAME AS name, ROUTINE_TYPE AS type FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = ?',
    [schema],
  );
  for (const routine of routines) {
    const type = text(routine.type) === 'FUNCTION' ? 'FUNCTION' : 'PROCEDURE';
    await query(connection, `DROP ${type} IF EXISTS ${quoteName(schema)}.${quoteName(text(routine.name))}`);
  }
  const events = await query(connection, 'SELECT EVENT_NAME AS name FROM information_schema.EVENTS WHERE EVENT_SCHEMA = ?', [schema]);
  for (const event of events) await query(connection, `DROP EVENT IF EXISTS ${quoteName(schema)}.${quoteName(text(event.name))}`);
}

/** Creates views until all exist: a view may use another, and we do not know their order. */
async function createViews(connection: MysqlConnection, views: Definition[]): Promise<void> {
  let pending = views;
  while (pending.length > 0) {
    const failed: Array<[Definition, unknown]> = [];
    for (const view of pending) {
      try {
        await create(connection, view);
      } catch (error) {
        failed.push([view, error]);
      }
    }
    if (failed.length === pending.length) {
      const [view, error] = failed[0]!;
      throw new OperationError(`cannot create view ${view.name}: ${messageOf(error)}`, { plugin: PLUGIN, cause: error });
    }
    pending = failed.map(([view]) => view);
  }
}

/**
 * After the commit: gives the live database the new objects and the old routines' grants, then
 * drops the old data. Returns the grants that could not be given again, each with the reason;
 * they are reported, not undone: the restored data is in place either way.
 */
async function rollForward(connection: MysqlConnection, names: DatabaseNames, log: Logger): Promise<string[]> {
  const journal = await readJournal(connection, names, COMMITTED);
  const fresh = journal.definitions.filter((d) => d.role === 'new');
  await dropObjects(connection, names.live);
  await query(connection, `USE ${quoteName(names.live)}`);
  for (const d of fresh.filter((d) => d.kind === 'procedure' || d.kind === 'function')) await create(connection, d);
  await createViews(connection, fresh.filter((d) => d.kind === 'view'));
  for (const d of fresh.filter((d) => d.kind === 'trigger' || d.kind === 'event')) await create(connection, d);
  log.debug(`recreated ${fresh.length} views, routines, triggers and events in ${names.live}`);
  const failed: string[] = [];
  for (const grant of journal.definitions.filter((d) => d.role === 'grant')) {
    if (!fresh.some((d) => d.kind === grant.kind && d.name === grant.name)) {
      log.warn(`the restored ${names.live} has no ${grant.kind} ${grant.name}, so this grant on it is gone: ${grant.statement}`);
      continue;
    }
    try {
      await create(connection, grant);
    } catch (error) {
      failed.push(`${grant.statement}; -- ${messageOf(error)}`);
    }
  }
  await query(connection, `DROP DATABASE IF EXISTS ${quoteName(names.old)}`);
  await query(connection, `DROP DATABASE IF EXISTS ${quoteName(names.staging)}`);
  return failed;
}

/** What to say about grants {@link rollForward} could not give again. */
function grantsNotRestored(live: string, failed: string[]): string {
  return (
    `the restored data of ${live} is in place, but ${failed.length === 1 ? 'a grant' : `${failed.length} grants`} on its routines could not be given again ` +
    `(the swap re-creates the routines, and the server drops their grants with them); fix the cause and issue ${failed.length === 1 ? 'it' : 'them'} as a user allowed to grant:\n  ${failed.join('\n  ')}`
  );
}

/**
 * Before the commit: puts the live triggers back and drops the helpers. Putting a trigger back
 * waits for the sessions that hold its table: first `lockWaitSeconds`, then (saying so) up to
 * `patienceSeconds` in all; if they still hold it, {@link TriggersMissing} is thrown and the
 * journal stays for the next run.
 */
async function rollBack(connection: MysqlConnection, names: DatabaseNames, lockWaitSeconds: number, patienceSeconds: number, log: Logger): Promise<void> {
  if (await databaseExists(connection, names.old)) {
    const tables = await tablesOf(connection, names.old);
    const strangers = tables.filter((table) => table !== JOURNAL);
    if (strangers.length > 0) {
      throw new OperationError(
        `${names.old} holds tables (${strangers.slice(0, 5).join(', ')}) that dysnomia did not put there; it is left alone: check it, then drop it by hand`,
        { plugin: PLUGIN },
      );
    }
    if (tables.includes(JOURNAL)) {
      const journal = await readJournal(connection, names, JOURNAL);
      if (await databaseExists(connection, names.live)) {
        const live = await tablesOf(connection, names.live);
        if (journal.liveCreated && live.length === 0) {
          await query(connection, `DROP DATABASE ${quoteName(names.live)}`);
        } else {
          const liveTriggers = journal.definitions.filter((d) => d.role === 'live');
          await putBackTriggers(connection, names, liveTriggers, lockWaitSeconds, patienceSeconds, log);
        }
      }
    }
    await query(connection, `DROP DATABASE ${quoteName(names.old)}`);
  }
  await query(connection, `DROP DATABASE IF EXISTS ${quoteName(names.staging)}`);
}

/**
 * Refuses a swap of `live` while foreign keys of other databases reference its tables. InnoDB
 * makes such a key follow its parent table through RENAME TABLE, so the swap would point it at
 * `__dys_old` (the live table would lose its referential check) and then fail to drop that
 * database. Dropping the keys is the only way: foreign_key_checks=0 does not stop them following.
 */
export async function refuseOutsideForeignKeys(connection: MysqlConnection, names: DatabaseNames): Promise<void> {
  const live = names.live;
  const rows = await query(
    connection,
    `SELECT DISTINCT CONSTRAINT_SCHEMA AS db, TABLE_NAME AS tbl, CONSTRAINT_NAME AS name, REFERENCED_TABLE_NAME AS parent
       FROM information_schema.KEY_COLUMN_USAGE
      WHERE REFERENCED_TABLE_SCHEMA = ? AND CONSTRAINT_SCHEMA <> ?
      ORDER BY 1, 2, 3`,
    [live, live],
  );
  if (rows.length === 0) return;
  const keys = rows.map((row) => `${text(row.db)}.${text(row.tbl)}.${text(row.name)} -> ${live}.${text(row.parent)}`);
  const drops = rows.map(
    (row) => `ALTER TABLE ${quoteName(text(row.db))}.${quoteName(text(row.tbl))} DROP FOREIGN KEY ${quoteName(text(row.name))};`,
  );
  throw new OperationError(
    `cannot restore ${live}: foreign keys of other databases reference its tables (${keys.join(', ')}). ` +
      `A restore moves the live tables to ${names.old}, and these keys would follow them there. ` +
      `Drop them for the restore (${drops.join(' ')}), restore, then add them again`,
    { plugin: PLUGIN },
  );
}

/**
 * Finishes or undoes a swap that an earlier run left behind (killed, or the server went away),
 * and drops a leftover staging database. Says which it did; undefined when there was nothing
 * to clean up.
 */
export async function recoverSwap(
  connection: MysqlConnection,
  names: DatabaseNames,
  log: Logger,
  lockWaitSeconds: number,
): Promise<'finished' | 'undone' | undefined> {
  const oldExists = await databaseExists(connection, names.old);
  const stagingExists = await databaseExists(connection, names.staging);
  if (!oldExists && !stagingExists) return undefined;
  // Finishing or undoing waits for other sessions' locks on the live tables: at most the
  // container's timeout, not the server's lock_wait_timeout (a day by default), in silence.
  await setLockWait(connection, lockWaitSeconds);
  const oldTables = oldExists ? await tablesOf(connection, names.old) : [];
  if (oldTables.includes(COMMITTED)) {
    log.warn(`an earlier restore of ${names.live} was interrupted after its swap; finishing it (recreating views, routines, triggers and events, dropping ${names.old})`);
    let failed: string[];
    try {
      failed = await rollForward(connection, names, log);
    } catch (error) {
      if (!lockWaitTimedOut(error)) throw error;
      throw new OperationError(
        `an earlier restore of ${names.live} was interrupted after its swap, and finishing it (replacing the views, routines, triggers and events of ${names.live}) waited for other sessions that hold locks on its tables (an open transaction that used them, or LOCK TABLES), which did not release them within ${lockWaitSeconds} s (the container's timeout): ${messageOf(error)}. ` +
          `The restored data of ${names.live} is in place; the definitions wait in ${names.old}.${COMMITTED}: end those sessions (KILL <id>) and run activate, restore or snapshot again to finish`,
        { plugin: PLUGIN, cause: error },
      );
    }
    if (failed.length > 0) log.warn(grantsNotRestored(names.live, failed));
    return 'finished';
  }
  const leftovers = [stagingExists ? names.staging : '', oldExists ? names.old : ''].filter(Boolean).join(' and ');
  const missing = oldTables.includes(JOURNAL) ? await missingLiveTriggers(connection, names) : [];
  if (missing.length > 0) {
    log.warn(
      `an earlier restore or activation of ${names.live} was interrupted before its swap, after it had dropped the ${missing.length === 1 ? 'trigger' : 'triggers'} ${missing.join(', ')} of ${names.live} for its RENAME TABLE: ` +
        `${names.live} has its old data, but ${missing.length === 1 ? 'that trigger was' : 'those triggers were'} missing (writes to its tables since then bypassed ${missing.length === 1 ? 'it' : 'them'}); ` +
        `putting ${missing.length === 1 ? 'it' : 'them'} back and dropping the leftover ${leftovers}`,
    );
  } else {
    log.warn(`an earlier restore or activation of ${names.live} was interrupted before its swap; ${names.live} is as it was, dropping the leftover ${leftovers}`);
  }
  await rollBack(connection, names, lockWaitSeconds, lockWaitSeconds, log);
  return 'undone';
}

/** The live triggers of a left-behind journal (not committed) that the live database lacks. */
async function missingLiveTriggers(connection: MysqlConnection, names: DatabaseNames): Promise<string[]> {
  if (!(await databaseExists(connection, names.live))) return [];
  const journal = await readJournal(connection, names, JOURNAL);
  if (journal.liveCreated && (await tablesOf(connection, names.live)).length === 0) return [];
  const present = await triggerNames(connection, names.live);
  return journal.definitions.filter((d) => d.role === 'live' && d.kind === 'trigger' && !present.has(d.name)).map((d) => d.name);
}

/**
 * The swap stopped and could not be undone on its connection (usually: the connection is gone),
 * so whether its RENAME TABLE went through is not known here. See {@link settleSwap}.
 */
export class SwapOutcomeUnknown extends OperationError {
  constructor(
    message: string,
    options: ConstructorParameters<typeof OperationError>[1],
    /** How often the swap had dropped the live triggers (a settled swap that did not happen says so). */
    readonly aside: TriggersAside = { times: 0, absentMs: [] },
  ) {
    super(message, options);
  }
}

/**
 * Swaps, and when the outcome is unknown (see {@link SwapOutcomeUnknown}) settles it on a fresh
 * connection from `reconnect`: finished if the swap went through, undone if not. Either way the
 * error says which state the live database is in.
 */
export async function swapOrSettle(
  connection: MysqlConnection,
  reconnect: <T>(work: (connection: MysqlConnection) => Promise<T>) => Promise<T>,
  names: DatabaseNames,
  lockWaitSeconds: number,
  log: Logger,
): Promise<void> {
  try {
    await swapIn(connection, names, lockWaitSeconds, log);
  } catch (error) {
    if (!(error instanceof SwapOutcomeUnknown)) throw error;
    let outcome: 'finished' | 'undone' | undefined;
    const session = connection.threadId;
    try {
      outcome = await reconnect(async (fresh) => {
        await sessionGone(fresh, session, lockWaitSeconds);
        // The server lock went with the old session. If another run has taken it since, that run
        // settles the swap, and what happened is not ours to say.
        if (!(await tryLockDatabase(fresh, names.live))) throw error;
        return recoverSwap(fresh, names, log, lockWaitSeconds);
      });
    } catch (settleError) {
      // Settled as not having happened, with the live triggers still missing: say that, not
      // "old or restored data".
      if (settleError instanceof TriggersMissing) {
        throw new OperationError(`cannot swap the new tables into ${names.live}: ${messageOf(error.cause)}\n${settleError.message}`, {
          plugin: PLUGIN,
          cause: error.cause,
        });
      }
      throw error;
    }
    const cause = messageOf(error.cause);
    if (outcome === 'finished') {
      throw new OperationError(
        `the swap of ${names.live} was interrupted (${cause}) after it had gone through; it is finished now: the restored data of ${names.live} is in place`,
        { plugin: PLUGIN, cause: error.cause },
      );
    }
    // Nothing left to settle: another run settled it first, and which way is not known here.
    if (outcome === undefined) throw error;
    // The recovery put the live triggers back (if the swap had dropped them) just now.
    triggersBack(error.aside);
    throw new OperationError(`cannot swap the new tables into ${names.live}: ${cause}\n${notSwapped(names.live, error.aside)}`, {
      plugin: PLUGIN,
      cause: error.cause,
    });
  }
}

/**
 * Waits, at most `seconds`, until the server has ended session `id`. A killed session may still
 * be finishing its RENAME TABLE when its client sees the connection drop: settling the swap before
 * it ends could find the swap half-seen (reliability suite, restore-safety-mysql).
 */
async function sessionGone(connection: MysqlConnection, id: number | undefined, seconds: number): Promise<void> {
  if (id === undefined || id === null) return;
  const deadline = performance.now() + Math.max(1, seconds) * 1000;
  while (performance.now() < deadline) {
    const rows = await query(connection, 'SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = ?', [id]);
    if (rows.length === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * The sql_mode the routine grants are given again with. Never a new user: a grant to a user
 * dropped since must fail, not create that user without a password, as MariaDB and MySQL
 * before 8.0 do without NO_AUTO_CREATE_USER (which MySQL 8.0 no longer knows, nor needs).
 */
function grantMode(version: string): string {
  const major = Number(/^(\d+)/.exec(version)?.[1] ?? 0);
  return /mariadb/i.test(version) || major < 8 ? 'NO_BACKSLASH_ESCAPES,NO_AUTO_CREATE_USER' : 'NO_BACKSLASH_ESCAPES';
}

/**
 * True for servers whose RENAME TABLE is atomic across a server crash: MariaDB from 10.6 on, MySQL
 * from 8.0 on (for InnoDB tables). `version` is what SELECT VERSION() gives.
 */
export function crashSafeRename(version: string): boolean {
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (match === null) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  if (/mariadb/i.test(version)) return major > 10 || (major === 10 && minor >= 6);
  return major >= 8;
}

/** ER_VIEW_INVALID: a view refers to a table or column that is gone, or its definer lacks rights. */
function viewInvalid(error: unknown): boolean {
  return (error as { errno?: number }).errno === 1356;
}

/**
 * How long the RENAME may wait for other sessions' locks once the live triggers are dropped:
 * lock_wait_timeout counts whole seconds, and 0 would fail on any statement still running.
 */
const TRIGGERLESS_WAIT_SECONDS = 1;
/** How many times the swap drops the live triggers and tries its RENAME before it gives up. */
const RENAME_TRIES = 3;

/** How often, and for how long, the swap dropped the live triggers, for its messages. */
interface TriggersAside {
  times: number;
  /** How long the triggers were absent each time they were put back, in ms. */
  absentMs: number[];
  /** When they were last dropped, while they are not back yet. */
  droppedAt?: number;
}

function triggersDropped(aside: TriggersAside): void {
  aside.times += 1;
  aside.droppedAt = performance.now();
}

function triggersBack(aside: TriggersAside): void {
  if (aside.droppedAt === undefined) return;
  aside.absentMs.push(performance.now() - aside.droppedAt);
  aside.droppedAt = undefined;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * What a swap that did not happen says about the live database: unchanged, or (when it dropped
 * the live triggers for its RENAME and had to put them back) that its data is the old one and
 * that writes in those moments ran without the triggers.
 */
function notSwapped(live: string, aside: TriggersAside): string {
  if (aside.times === 0) return `The live database ${live} is unchanged: the swap did not happen.`;
  // Measured: putting the triggers back waits for the sessions that hold their tables.
  const absent = aside.absentMs;
  const total = absent.reduce((sum, ms) => sum + ms, 0);
  const dropped =
    aside.times === 1
      ? `once, for ${seconds(total)},`
      : `${aside.times} times, for ${seconds(total)} in all (at most ${seconds(Math.max(0, ...absent))} at a time),`;
  return (
    `The live database ${live} has its old data: the swap did not happen. Its triggers were dropped for the swap's RENAME TABLE ${dropped} ` +
    'and are back; rows written to its tables in those moments were written without them.'
  );
}

/**
 * The live triggers were dropped for the swap's RENAME, the swap did not happen, and they could not
 * be put back because other sessions held their tables for longer than the swap waited. The
 * connection is alive and the outcome is known: the journal in the old database stays, and the
 * next run puts the triggers back from it.
 */
export class TriggersMissing extends OperationError {
  constructor(
    names: DatabaseNames,
    readonly missing: string[],
    waitedSeconds: number,
    cause: unknown,
  ) {
    super(
      `the ${missing.length === 1 ? 'trigger' : 'triggers'} ${missing.join(', ')} of ${names.live} ${missing.length === 1 ? 'is' : 'are'} missing: ` +
        `${missing.length === 1 ? 'it was' : 'they were'} dropped for the swap's RENAME TABLE, and putting ${missing.length === 1 ? 'it' : 'them'} back waited ${waitedSeconds} s ` +
        `for other sessions that hold locks on ${names.live}'s tables (an open transaction that used them, or LOCK TABLES) without getting them (${messageOf(cause)}). ` +
        `The swap did not happen: ${names.live} has its old data, but writes to its tables bypass ${missing.length === 1 ? 'that trigger' : 'those triggers'} now. ` +
        `The next restore, activate or snapshot of ${names.live} puts ${missing.length === 1 ? 'it' : 'them'} back (from ${names.old}.${JOURNAL}): end those sessions (KILL <id>) and run one`,
      { plugin: PLUGIN, cause },
    );
  }
}

/**
 * How many times the container's timeout the swap waits to put back live triggers it dropped,
 * once the first timeout has run out: the triggers are gone meanwhile, so giving up soon is worse
 * than waiting (the pending CREATE TRIGGER also makes new writes to its table queue behind it).
 */
const PUT_BACK_PATIENCE = 5;

/**
 * Puts back the live triggers that are missing, in their order (journal order), after a RENAME
 * that did not go through. Each CREATE TRIGGER waits for the sessions that hold its table: first
 * at most `lockWaitSeconds`; when that runs out, it says so and waits on, up to `patienceSeconds`
 * in all. Throws {@link TriggersMissing}, naming those still missing, if that runs out too.
 */
async function putBackTriggers(
  connection: MysqlConnection,
  names: DatabaseNames,
  live: Definition[],
  lockWaitSeconds: number,
  patienceSeconds: number,
  log: Logger,
): Promise<void> {
  const present = await triggerNames(connection, names.live);
  const missing = live.filter((trigger) => !present.has(trigger.name));
  if (missing.length === 0) return;
  await query(connection, `USE ${quoteName(names.live)}`);
  const started = performance.now();
  const limit = Math.max(lockWaitSeconds, patienceSeconds);
  let patient = false;
  for (const [index, trigger] of missing.entries()) {
    for (;;) {
      const left = limit - (performance.now() - started) / 1000;
      await setLockWait(connection, patient ? left : Math.min(lockWaitSeconds, left));
      try {
        await create(connection, trigger);
        break;
      } catch (error) {
        if (!lockWaitTimedOut(error)) throw error;
        const waited = Math.round((performance.now() - started) / 1000);
        if (patient || limit - (performance.now() - started) / 1000 < 1) {
          throw new TriggersMissing(
            names,
            missing.slice(index).map((t) => t.name),
            waited,
            error,
          );
        }
        patient = true;
        log.warn(
          `putting back the ${missing.length === 1 ? 'trigger' : 'triggers'} ${missing.map((t) => t.name).join(', ')} of ${names.live}, dropped for the swap's RENAME TABLE, ` +
            `waits for other sessions that hold locks on its tables (an open transaction that used them, or LOCK TABLES), for ${waited} s now; ` +
            `writes to those tables bypass the missing triggers, so it waits on, up to ${Math.ceil(limit)} s in all (new writes to the table of ${trigger.name} queue behind its pending CREATE TRIGGER)`,
        );
      }
    }
  }
}

/**
 * Runs the commit's RENAME TABLE, which MariaDB refuses for tables with triggers, so the live
 * triggers must be dropped for it. Waiting for other sessions' locks (a long transaction that read
 * a table) must not happen while they are gone: tables the RENAME has not locked yet take writes
 * meanwhile, without their triggers, and a RENAME that then times out would leave those rows
 * without what the triggers write. So:
 *
 * 1. `LOCK TABLES ... WRITE` on every live table (and every view the RENAME moves aside) waits,
 *    with the triggers in place, until no other session holds any of them (at most what is left
 *    of `lockWaitSeconds`);
 * 2. the live triggers are dropped under that lock (no other session can write meanwhile): the
 *    journal's, by name, after checking that no other session created or dropped one while the
 *    lock was waited for (then nothing is dropped and the swap stops; the rollback would not
 *    know to keep the change);
 * 3. UNLOCK TABLES (RENAME TABLE is refused under LOCK TABLES), and the RENAME at once, waiting
 *    at most {@link TRIGGERLESS_WAIT_SECONDS}: the statements that queued behind the lock run
 *    first, and they are short.
 *
 * If another session took a lock for longer in that moment, the RENAME times out: the triggers
 * are put back ({@link putBackTriggers}, which waits for that session) and the swap tries again
 * from 1, at most {@link RENAME_TRIES} times. `aside` counts the tries that dropped the
 * triggers and measures how long they were gone. With no live triggers the RENAME waits the whole
 * `lockWaitSeconds` itself, as there is nothing to keep.
 */
async function renameWithTriggersAside(
  connection: MysqlConnection,
  names: DatabaseNames,
  liveTables: string[],
  renamedViews: string[],
  liveTriggers: Definition[],
  rename: string,
  lockWaitSeconds: number,
  aside: TriggersAside,
  log: Logger,
): Promise<void> {
  if (liveTriggers.length === 0) {
    await setLockWait(connection, lockWaitSeconds);
    await query(connection, rename);
    return;
  }
  const deadline = performance.now() + lockWaitSeconds * 1000;
  const lockList = (objects: string[]) => objects.map((t) => `${quoteName(names.live)}.${quoteName(t)} WRITE`).join(', ');
  // The views the RENAME moves are locked too, so that a session that read one in an open
  // transaction is waited for here, not by the RENAME. An invalid view cannot be locked; then
  // only the tables are.
  let locks = lockList([...liveTables, ...renamedViews]);
  for (let attempt = 1; ; attempt++) {
    await setLockWait(connection, (deadline - performance.now()) / 1000);
    try {
      try {
        await query(connection, `LOCK TABLES ${locks}`);
      } catch (error) {
        if (!viewInvalid(error) || locks === lockList(liveTables)) throw error;
        log.debug(`cannot lock the views of ${names.live} that the swap replaces (${messageOf(error)}); locking only its tables`);
        locks = lockList(liveTables);
        await query(connection, `LOCK TABLES ${locks}`);
      }
    } catch (error) {
      if (!lockWaitTimedOut(error)) throw error;
      throw new OperationError(
        `other sessions hold locks on tables of ${names.live} (an open transaction that used them, or LOCK TABLES) and did not release them within ${lockWaitSeconds} s (the container's timeout): ${messageOf(error)}`,
        { plugin: PLUGIN, cause: error },
      );
    }
    let changed: string | undefined;
    let gone: string[] = [];
    try {
      // The live triggers were read into the journal before this lock was granted; another
      // session may have created or dropped one while it waited. Dropping a trigger the journal
      // does not have would lose it (a rollback puts back only the journal's).
      const current = await triggerNames(connection, names.live);
      const expected = new Set(liveTriggers.map((t) => t.name));
      const created = [...current].filter((name) => !expected.has(name));
      gone = [...expected].filter((name) => !current.has(name));
      if (created.length > 0 || gone.length > 0) {
        changed = [created.length > 0 ? `created: ${created.join(', ')}` : '', gone.length > 0 ? `dropped: ${gone.join(', ')}` : '']
          .filter(Boolean)
          .join('; ');
      } else {
        triggersDropped(aside);
        await dropTriggers(connection, names.live, liveTriggers.map((t) => t.name));
      }
    } finally {
      await query(connection, 'UNLOCK TABLES');
    }
    if (changed !== undefined) {
      // Not to be put back by the rollback: another session dropped them.
      if (gone.length > 0) {
        await query(connection, `DELETE FROM ${quoteName(names.old)}.${quoteName(JOURNAL)} WHERE role = 'live' AND kind = 'trigger' AND name IN (?)`, [gone]);
      }
      throw new OperationError(
        `another session changed the triggers of ${names.live} while the swap waited for its lock (${changed}); the swap would have dropped them without keeping the change, so it stopped before dropping any: run it again`,
        { plugin: PLUGIN },
      );
    }
    await setLockWait(connection, TRIGGERLESS_WAIT_SECONDS);
    try {
      await query(connection, rename);
    } catch (error) {
      if (!lockWaitTimedOut(error)) throw error;
      await putBackTriggers(connection, names, liveTriggers, lockWaitSeconds, PUT_BACK_PATIENCE * lockWaitSeconds, log);
      triggersBack(aside);
      if (attempt >= RENAME_TRIES || performance.now() >= deadline) {
        throw new OperationError(
          `other sessions took locks on tables of ${names.live} each time the swap had dropped its triggers for the RENAME (${attempt} ${attempt === 1 ? 'try' : 'tries'}): ${messageOf(error)}`,
          { plugin: PLUGIN, cause: error },
        );
      }
      log.debug(
        `another session took a lock on a table of ${names.live} before the swap's RENAME; its triggers are back, trying again (${attempt + 1} of ${RENAME_TRIES})`,
      );
      continue;
    }
    // Nothing may come between the RENAME and the caller's note that it committed.
    return;
  }
}

/**
 * Makes the loaded staging database the live one. The live database need not exist (activation).
 * On failure before the commit, the live database is left as it was; after it, the new data is
 * live and the error says what could not be finished.
 */
export async function swapIn(connection: MysqlConnection, names: DatabaseNames, lockWaitSeconds: number, log: Logger): Promise<void> {
  // Other sessions may hold locks on the live tables; do not queue behind them forever (and make
  // every new query on the live database queue behind us).
  await setLockWait(connection, lockWaitSeconds);
  const [server] = await query(connection, 'SELECT VERSION() AS version');
  const version = text(server?.version);
  if (!crashSafeRename(version)) {
    log.warn(
      `the server (${version}) does not make RENAME TABLE crash-safe (MariaDB does from 10.6, MySQL from 8.0): if it crashes during the swap of ${names.live}, the tables may be left split between ${names.live} and ${names.old}, and the next run leaves them for you to sort out`,
    );
  }
  const stagingTables = await tablesOf(connection, names.staging);
  const liveExists = await databaseExists(connection, names.live);
  const liveTables = liveExists ? await tablesOf(connection, names.live) : [];
  const viewMoves = liveExists ? replacedViews(await viewsOf(connection, names.live), liveTables, stagingTables) : [];
  const reserved = [...stagingTables, ...liveTables].filter((table) => RESERVED.includes(table));
  if (reserved.length > 0) {
    throw new OperationError(`a table is named ${reserved[0]}, a name dysnomia reserves for its swap journal; rename it`, { plugin: PLUGIN });
  }
  let committed = false;
  let failedGrants: string[] = [];
  const aside: TriggersAside = { times: 0, absentMs: [] };
  try {
    // Checked again here: a restore checks before it loads, but a key may have come since.
    if (liveExists) await refuseOutsideForeignKeys(connection, names);
    await query(connection, `CREATE DATABASE ${quoteName(names.old)}`);
    const liveTriggers = liveExists ? await triggersOf(connection, names.live, 'live') : [];
    const live = liveExists ? [...liveTriggers, ...(await routineGrantsOf(connection, names.live, grantMode(version), log))] : [];
    const fresh = [...(await objectsOf(connection, names.staging)), ...(await triggersOf(connection, names.staging, 'new'))];
    await createJournal(connection, names, [...live, ...fresh], !liveExists);
    if (!liveExists) {
      const [schema] = await query(
        connection,
        'SELECT DEFAULT_CHARACTER_SET_NAME AS cs, DEFAULT_COLLATION_NAME AS coll FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
        [names.staging],
      );
      await query(
        connection,
        `CREATE DATABASE ${quoteName(names.live)} CHARACTER SET ${text(schema?.cs)} COLLATE ${text(schema?.coll)}`,
      );
    }
    await dropTriggers(connection, names.staging);
    const moves = [
      ...liveTables.map((t) => `${quoteName(names.live)}.${quoteName(t)} TO ${quoteName(names.old)}.${quoteName(t)}`),
      // Before the staging tables that take their names.
      ...viewMoves.map(([view, outOfTheWay]) => `${quoteName(names.live)}.${quoteName(view)} TO ${quoteName(names.live)}.${quoteName(outOfTheWay)}`),
      ...stagingTables.map((t) => `${quoteName(names.staging)}.${quoteName(t)} TO ${quoteName(names.live)}.${quoteName(t)}`),
      `${quoteName(names.old)}.${quoteName(JOURNAL)} TO ${quoteName(names.old)}.${quoteName(COMMITTED)}`,
    ];
    await renameWithTriggersAside(
      connection,
      names,
      liveTables,
      viewMoves.map(([view]) => view),
      liveTriggers,
      `RENAME TABLE ${moves.join(', ')}`,
      lockWaitSeconds,
      aside,
      log,
    );
    committed = true;
    // Finishing the swap (dropping the old views and routines, creating the new triggers) waits
    // for other sessions as long as the rest of the swap does, not the RENAME's second.
    await setLockWait(connection, lockWaitSeconds);
    log.debug(`swapped ${stagingTables.length} tables into ${names.live} (${liveTables.length} old tables moved to ${names.old})`);
    failedGrants = await rollForward(connection, names, log);
  } catch (error) {
    if (committed) {
      throw new OperationError(
        `the new tables of ${names.live} are in place, but finishing the swap failed: ${messageOf(error)}; the definitions wait in ${names.old}.${COMMITTED}: fix the cause and run activate or restore again to finish`,
        { plugin: PLUGIN, cause: error },
      );
    }
    // The RENAME's connection is alive, the journal not renamed: the swap did not happen. What
    // is missing are the live triggers, which the next run puts back from the journal.
    if (error instanceof TriggersMissing) throw error;
    try {
      await rollBack(connection, names, lockWaitSeconds, PUT_BACK_PATIENCE * lockWaitSeconds, log);
      triggersBack(aside);
    } catch (undoError) {
      if (undoError instanceof TriggersMissing) {
        throw new OperationError(`cannot swap the new tables into ${names.live}: ${messageOf(error)}\n${undoError.message}`, { plugin: PLUGIN, cause: error });
      }
      throw new SwapOutcomeUnknown(
        `the swap of ${names.live} was interrupted (${messageOf(error)}) and could not be undone (${messageOf(undoError)}): ` +
          `${names.live} holds either its old or the restored data, never a mix; the next activate or restore finishes or undoes the swap`,
        { plugin: PLUGIN, cause: error },
        aside,
      );
    }
    throw new OperationError(`cannot swap the new tables into ${names.live}: ${messageOf(error)}\n${notSwapped(names.live, aside)}`, {
      plugin: PLUGIN,
      cause: error,
    });
  }
  if (failedGrants.length > 0) throw new OperationError(grantsNotRestored(names.live, failedGrants), { plugin: PLUGIN });
}
