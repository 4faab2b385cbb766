/**
 * The state of a PostgreSQL database that lives outside its own dump: pg_dump without `--create`
 * (what a snapshot holds) writes nothing of the `CREATE DATABASE`, `ALTER DATABASE`, `GRANT ... ON
 * DATABASE` or `COMMENT ON DATABASE` kind. A restore builds a new database and swaps it in, so
 * this state is read from the live database at restore time and put on the staging one before the
 * swap: settings (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`), the comment,
 * the ACL (with grant options and grantors), the connection limit, `ALLOW_CONNECTIONS` and
 * `IS_TEMPLATE`. The tablespace is given to `CREATE DATABASE` itself (swap.ts, createStaging), so
 * the load writes there. Every catalog value reaches SQL quoted.
 */
import { messageOf, OperationError } from '../../core/errors.js';
import type { DatabaseNames } from '../sql/names.js';
import { type PgSession, quoteLiteral, quoteName } from './client.js';
import { PLUGIN } from './options.js';

/**
 * Settings whose value is a list of names (flagged GUC_LIST_QUOTE in the server): the stored text
 * is the flattened list, and must go back as one literal per element (as pg_dump does), or the
 * whole list would become one quoted name.
 */
const LIST_SETTINGS: ReadonlySet<string> = new Set([
  'local_preload_libraries',
  'search_path',
  'session_preload_libraries',
  'shared_preload_libraries',
  'temp_tablespaces',
  'unix_socket_directories',
]);

/**
 * Splits a flattened list setting (`"my schema", public`) into its elements, as the server's
 * SplitGUCList does: elements are separated by commas, may be double-quoted (`""` is a quote) and
 * are trimmed. Undefined when the text is not such a list.
 */
export function splitSettingList(text: string): string[] | undefined {
  const elements: string[] = [];
  let i = 0;
  const skipSpace = () => {
    while (i < text.length && /\s/.test(text[i]!)) i += 1;
  };
  skipSpace();
  if (i === text.length) return elements;
  for (;;) {
    let element = '';
    if (text[i] === '"') {
      for (i += 1; ; i += 1) {
        if (i >= text.length) return undefined;
        if (text[i] === '"') {
          if (text[i + 1] !== '"') break;
          i += 1;
        }
        element += text[i];
      }
      i += 1;
    } else {
      while (i < text.length && text[i] !== ',' && !/\s/.test(text[i]!)) element += text[i++];
      if (element === '') return undefined;
    }
    elements.push(element);
    skipSpace();
    if (i === text.length) return elements;
    if (text[i] !== ',') return undefined;
    i += 1;
    skipSpace();
  }
}

/** `SET name TO value` for one stored `name=value` of pg_db_role_setting. */
export function setClause(stored: string): string {
  const at = stored.indexOf('=');
  if (at <= 0) throw new Error(`the stored setting ${JSON.stringify(stored)} is not name=value`);
  const name = stored.slice(0, at);
  const value = stored.slice(at + 1);
  if (!LIST_SETTINGS.has(name.toLowerCase())) return `SET ${quoteName(name)} TO ${quoteLiteral(value)}`;
  const elements = splitSettingList(value);
  if (elements === undefined) throw new Error(`the stored list setting ${JSON.stringify(stored)} cannot be read`);
  return `SET ${quoteName(name)} TO ${elements.length === 0 ? "''" : elements.map(quoteLiteral).join(', ')}`;
}

interface Grant {
  grantor: string;
  /** Undefined for PUBLIC. */
  grantee: string | undefined;
  privilege: string;
  grantable: boolean;
}

/** The privileges a database can have (aclexplode's names). */
const PRIVILEGES: ReadonlySet<string> = new Set(['CREATE', 'TEMPORARY', 'CONNECT']);

/**
 * The grants in replay order: a grant by a role other than the owner needs that role to hold the
 * privilege with grant option first. The server keeps an ACL consistent, so each grantor's own
 * grant is in it.
 */
function replayOrder(grants: Grant[], owner: string): Grant[] {
  const done: Grant[] = [];
  let pending = grants;
  while (pending.length > 0) {
    const ready = pending.filter(
      (g) => g.grantor === owner || done.some((d) => d.grantee === g.grantor && d.privilege === g.privilege && d.grantable),
    );
    if (ready.length === 0) {
      const left = pending.map((g) => `${g.privilege} to ${g.grantee ?? 'PUBLIC'} by ${g.grantor}`).join(', ');
      throw new Error(`the grants ${left} have no grantor holding the grant option`);
    }
    done.push(...ready);
    pending = pending.filter((g) => !ready.includes(g));
  }
  return done;
}

/** The ACL of a database as comparable text, the default one when it has none. */
const EXPLODED_ACL = `SELECT coalesce((SELECT string_agg(item, ',' ORDER BY item)
                                 FROM (SELECT format('%s %s %s %s', a.grantor, a.grantee, a.privilege_type, a.is_grantable) AS item
                                         FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a) items), '') AS acl
                        FROM pg_database d WHERE d.datname = $1`;

/** Makes the ACL of `staging` the one `live` has: defaults revoked, then each grant replayed by its grantor. */
async function copyAcl(session: PgSession, names: DatabaseNames, owner: string): Promise<void> {
  // A NULL datacl (never granted or revoked) is the default, which the new database has too.
  const [acl] = await session.query<{ set: boolean }>('SELECT datacl IS NOT NULL AS set FROM pg_database WHERE datname = $1', [names.live]);
  if (acl?.set !== true) return;
  const rows = await session.query<{ grantor: string; grantee: string | null; privilege: string; grantable: boolean }>(
    `SELECT pg_get_userbyid(a.grantor) AS grantor, CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END AS grantee,
            a.privilege_type AS privilege, a.is_grantable AS grantable
       FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = $1 ORDER BY a.grantor, a.grantee, a.privilege_type`,
    [names.live],
  );
  const database = quoteName(names.staging);
  await session.query(`REVOKE ALL ON DATABASE ${database} FROM PUBLIC, ${quoteName(owner)}`);
  const grants = rows.map((r) => ({ grantor: r.grantor, grantee: r.grantee ?? undefined, privilege: r.privilege, grantable: r.grantable }));
  for (const grant of replayOrder(grants, owner)) {
    if (!PRIVILEGES.has(grant.privilege)) throw new Error(`unknown database privilege ${JSON.stringify(grant.privilege)}`);
    const to = grant.grantee === undefined ? 'PUBLIC' : quoteName(grant.grantee);
    const statement = `GRANT ${grant.privilege} ON DATABASE ${database} TO ${to}${grant.grantable ? ' WITH GRANT OPTION' : ''}`;
    // The owner's grants are recorded as the owner's whoever runs them (a superuser, or a member
    // of the owning role); another grantor's only when that role runs them.
    if (grant.grantor === owner) {
      await session.query(statement);
    } else {
      await session.query(`SET LOCAL ROLE ${quoteName(grant.grantor)}`);
      await session.query(statement);
      await session.query('RESET ROLE');
    }
  }
  const aclOf = async (name: string) => (await session.query<{ acl: string }>(EXPLODED_ACL, [name]))[0]?.acl;
  const before = await aclOf(names.live);
  const after = await aclOf(names.staging);
  if (before !== after) throw new Error(`the privileges came out as ${after}, not as ${before}`);
}

/** Applies the live database's state to the staging one, in one transaction. */
async function copyState(session: PgSession, names: DatabaseNames): Promise<void> {
  const [live] = await session.query<{
    oid: number;
    owner: string;
    connlimit: number;
    allowconn: boolean;
    istemplate: boolean;
    comment: string | null;
  }>(
    `SELECT oid::bigint AS oid, pg_get_userbyid(datdba) AS owner, datconnlimit AS connlimit, datallowconn AS allowconn,
            datistemplate AS istemplate, shobj_description(oid, 'pg_database') AS comment
       FROM pg_database WHERE datname = $1`,
    [names.live],
  );
  if (live === undefined) return; // restored after the database was dropped: nothing to keep
  const database = quoteName(names.staging);
  const settings = await session.query<{ role: string | null; config: string[] }>(
    `SELECT CASE WHEN setrole = 0 THEN NULL ELSE pg_get_userbyid(setrole) END AS role, setconfig AS config
       FROM pg_db_role_setting WHERE setdatabase = $1::bigint::oid ORDER BY setrole`,
    [live.oid],
  );
  for (const { role, config } of settings) {
    const target = role === null ? `DATABASE ${database}` : `ROLE ${quoteName(role)} IN DATABASE ${database}`;
    for (const stored of config) await session.query(`ALTER ${target} ${setClause(stored)}`);
  }
  if (live.comment !== null) await session.query(`COMMENT ON DATABASE ${database} IS ${quoteLiteral(live.comment)}`);
  await copyAcl(session, names, live.owner);
  // -1 is no limit; -2 marks a database a DROP left invalid.
  const limit = Number(live.connlimit);
  if (Number.isInteger(limit) && limit >= 0) await session.query(`ALTER DATABASE ${database} CONNECTION LIMIT ${limit}`);
  if (!live.allowconn) await session.query(`ALTER DATABASE ${database} ALLOW_CONNECTIONS false`);
  // Last: a template cannot be dropped, so nothing may fail after it (swap.ts, dropCopy, unmarks it).
  if (live.istemplate) await session.query(`ALTER DATABASE ${database} IS_TEMPLATE true`);
}

/**
 * Gives the loaded staging database the live database's settings, comment, privileges, connection
 * limit and flags, so that the swap changes the data and nothing else. All or nothing: an error
 * says what could not be carried over, and the caller drops the staging database.
 */
export async function carryOverDatabaseState(session: PgSession, names: DatabaseNames): Promise<void> {
  try {
    await session.query('BEGIN');
    await copyState(session, names);
    await session.query('COMMIT');
  } catch (error) {
    await session.query('ROLLBACK').catch(() => {});
    throw new OperationError(
      `cannot carry the settings, privileges and comment of database ${names.live} over to the restored copy ${names.staging}: ${messageOf(error)}`,
      { plugin: PLUGIN, cause: error },
    );
  }
}
