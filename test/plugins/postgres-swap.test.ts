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
import { recoverSwap, swapIn } from '../../src/plugins/postgres/swap.js';
import { databaseNames } from '../../src/plugins/sql/names.js';
import { findPostgres } from '../support/servers.js';
import { postgresSetup } from '../support/sql-setup.js';

type Mode = 'before the server' | 'after the server';

/** A session whose connection dies at statement number `cut` (from 0), in the given mode. */
function dying(session: PgSession, cut: number, mode: Mode): PgSession {
  let calls = 0;
  let dead = false;
  const die = async () => {
    dead = true;
    await session.end().catch(() => {});
    throw new Error('Connection terminated unexpectedly');
  };
  return {
    ...session,
    query: async <T,>(sql: string, params?: unknown[]): Promise<T[]> => {
      if (dead) throw new Error('Client was closed and is not queryable');
      if (calls++ < cut) return session.query<T>(sql, params);
      if (mode === 'after the server') await session.query(sql, params);
      return die();
    },
  };
}

describe('postgresql-database swap, connection lost at every statement', () => {
  it('leaves all old or all new data, and says truly which', { timeout: 300_000 }, async () => {
    const server = await findPostgres();
    const setup = await postgresSetup({ scripts: { '1.sql': "create table t(v text);\ninsert into t values ('old');\n" } });
    await setup.ok('activate');
    const options = parsePostgresOptions(setup.properties);
    const names = databaseNames(setup.name, 'postgresql-database', 63);
    const reconnect = <T,>(work: (session: PgSession) => Promise<T>) => withSession(options, silentLogger, undefined, work);
    const state = async () => String((await setup.query('select v from t'))[0]?.v);
    const seen = new Set<string>();
    for (const mode of ['before the server', 'after the server'] as Mode[]) {
      for (let cut = 0; ; cut++) {
        await server.query(`create database "${names.staging}"`);
        await server.queryIn(names.staging, "create table t(v text); insert into t values ('new')");
        const session = await openSession(options, silentLogger);
        let message: string | undefined;
        try {
          await swapIn(dying(session, cut, mode), names, 5000, silentLogger, reconnect);
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
          seen.add('reported in place');
        }
        await reconnect((fresh) => recoverSwap(fresh, names, 5000, silentLogger));
        expect(await setup.databases(), where).toEqual([setup.name]);
        if (live === 'new') await setup.query("update t set v = 'old'");
        if (message === undefined) break;
      }
    }
    // The commit whose answer was lost is the case this test is for.
    expect([...seen].sort()).toEqual(['reported in place', 'reported unchanged']);
  });
});
