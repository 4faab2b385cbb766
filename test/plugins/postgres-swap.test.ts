/**
 * The PostgreSQL swap when its connection dies at each of its statements, before the statement
 * reaches the server or after the server ran it and before the answer came back (real
 * PostgreSQL). The live database must be all old or all new, and the error must say which: a
 * commit whose answer was lost used to be reported as "unchanged" while the restored copy was live.
 */
import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { openSession, type PgSession, withSession } from '../../src/plugins/postgres/client.js';
import { parsePostgresOptions } from '../../src/plugins/postgres/options.js';
import { tryLockDatabase } from '../../src/plugins/postgres/lock.js';
import { swapIn } from '../../src/plugins/postgres/swap.js';
import { databaseNames } from '../../src/plugins/sql/names.js';
import { findPostgres } from '../support/servers.js';
import { postgresSetup } from '../support/sql-setup.js';

/**
 * How the connection fails: it dies before the statement reaches the server, or after the server
 * ran it and before the answer came back; or the server refuses the one statement and the session
 * goes on.
 */
type Mode = 'before the server' | 'after the server' | 'refused';

/** A session that fails, in the given mode, at the first statement for which `cutHere` is true. */
function dying(session: PgSession, mode: Mode, cutHere: (sql: string, index: number) => boolean): PgSession {
  let calls = 0;
  let dead = false;
  let cut = false;
  return {
    ...session,
    query: async <T,>(sql: string, params?: unknown[]): Promise<T[]> => {
      if (dead) throw new Error('Client was closed and is not queryable');
      if (cut || !cutHere(sql, calls++)) return session.query<T>(sql, params);
      cut = true;
      if (mode === 'refused') throw new Error('refused by the server');
      if (mode === 'after the server') await session.query(sql, params);
      dead = true;
      await session.end().catch(() => {});
      throw new Error('Connection terminated unexpectedly');
    },
  };
}

/**
 * A component on the test server (activated with `t` = 'old' when `live`), its names, a way to
 * reconnect as the plugin does, and `stage()`, which makes the staging database a restore would
 * have loaded (`t` = 'new').
 */
async function swapCase(live: boolean) {
  const server = await findPostgres();
  const setup = await postgresSetup(live ? { scripts: { '1.sql': "create table t(v text);\ninsert into t values ('old');\n" } } : {});
  if (live) await setup.ok('activate');
  const options = parsePostgresOptions(setup.properties);
  const names = databaseNames(setup.name, 'postgresql-database', 63);
  const reconnect = <T,>(work: (session: PgSession) => Promise<T>) => withSession(options, silentLogger, undefined, work);
  const stage = async () => {
    await server.query(`create database "${names.staging}"`);
    await server.queryIn(names.staging, "create table t(v text); insert into t values ('new')");
  };
  return { server, setup, options, names, reconnect, stage };
}

describe('postgresql-database swap, connection lost at every statement', () => {
  it('leaves all old or all new data, and says truly which', { timeout: 300_000 }, async () => {
    const { server, setup, options, names, reconnect, stage } = await swapCase(true);
    const state = async () => String((await setup.query('select v from t'))[0]?.v);
    const seen = new Set<string>();
    for (const mode of ['before the server', 'after the server', 'refused'] as Mode[]) {
      for (let cut = 0; ; cut++) {
        await stage();
        const session = await openSession(options, silentLogger);
        let message: string | undefined;
        try {
          await swapIn(dying(session, mode, (_sql, index) => index === cut), names, 5000, silentLogger, reconnect);
        } catch (error) {
          message = (error as Error).message;
        } finally {
          await session.end().catch(() => {});
        }
        const live = await state();
        const where = `${mode}, cut at statement ${cut}: ${message ?? 'no error'}`;
        if (message === undefined) {
          expect(live, where).toBe('new');
        } else if (message.includes(`The live database ${names.live} is unchanged`)) {
          expect(live, where).toBe('old');
          seen.add('reported unchanged');
        } else {
          expect(message, where).toMatch(new RegExp(`the restored (data of )?${names.live} is in place`));
          expect(live, where).toBe('new');
          if (message.includes('after it had gone through')) seen.add('commit answer lost, reported in place');
        }
        // The copy that is not live was dropped, on a fresh session if this one had died; only a
        // server refusing the drop itself leaves it, and says so.
        if (message?.includes(`but dropping the replaced copy ${names.old} failed: refused by the server`)) {
          expect(await setup.databases(), where).toEqual([setup.name, names.old]);
          await server.query(`drop database "${names.old}"`);
        }
        expect(await setup.databases(), where).toEqual([setup.name]);
        if (live === 'new') await setup.query("update t set v = 'old'");
        if (message === undefined) break;
      }
    }
    // The commit whose answer was lost is the case this test is for.
    expect([...seen].sort()).toEqual(['commit answer lost, reported in place', 'reported unchanged']);
  });

  it('says it cannot tell when another run holds the server lock by the time it looks', { timeout: 60_000 }, async () => {
    const { setup, options, names, reconnect, stage } = await swapCase(true);
    await stage();
    const other = await openSession(options, silentLogger);
    const session = await openSession(options, silentLogger);
    try {
      expect(await tryLockDatabase(other, names.live)).toBe(true);
      const error = await swapIn(dying(session, 'after the server', (sql) => sql === 'COMMIT'), names, 5000, silentLogger, reconnect).catch(
        (e: unknown) => e as Error,
      );
      expect(error?.message).toContain(`whether it went through is not known here: ${names.live} holds its old data, its restored data or what another run has put there since, never a mix`);
      expect(String((await setup.query('select v from t'))[0]?.v)).toBe('new');
      // Left for the run that holds the lock: nothing of it was dropped.
      expect(await setup.databases()).toEqual([setup.name, names.old]);
    } finally {
      await other.end();
      await session.end().catch(() => {});
    }
  });

  it('settles a lost answer to the rename when there was no live database', { timeout: 60_000 }, async () => {
    const { setup, options, names, reconnect, stage } = await swapCase(false);
    await stage();
    const session = await openSession(options, silentLogger);
    const error = await swapIn(dying(session, 'after the server', (sql) => sql.startsWith('ALTER DATABASE')), names, 5000, silentLogger, reconnect).catch(
      (e: unknown) => e as Error,
    );
    await session.end().catch(() => {});
    expect(error?.message).toContain(`after it had gone through: the restored data of ${names.live} is in place`);
    expect(await setup.query('select v from t')).toEqual([{ v: 'new' }]);
    expect(await setup.databases()).toEqual([setup.name]);
  });
});
