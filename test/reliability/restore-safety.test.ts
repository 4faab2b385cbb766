/**
 * Restore safety, on real PostgreSQL and MariaDB: the live database starts "old", the latest
 * snapshot holds "new", and a restore meets a fault:
 *
 * - SIGKILL at a random moment (the process group, or only the Node process);
 * - a failing load: while the staging database loads, the server kills the loading sessions;
 * - a corrupted chunk: one byte of the snapshot's biggest pack flipped (flipped back afterwards).
 *
 * After each one the live database is classified by counting the rows of both tables and hashing
 * their content: it must be exactly the old state or exactly the new one ("lost" otherwise), and
 * a failed restore must say so with exit 1 and a message that tells which state the live database
 * is in, never a stack trace. The next full
 * restore removes every staging database a fault left.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { findMysql, findPostgres } from '../support/servers.js';
import { mysqlSetup, postgresSetup, type SqlSetup } from '../support/sql-setup.js';
import { killAfter, randomInt, Tally } from './support.js';

interface Engine {
  name: 'postgresql' | 'mysql';
  setup(): Promise<SqlSetup>;
  /** Row counts and a content hash of both tables. */
  state(setup: SqlSetup): Promise<string>;
  /** Moves the live database from the snapshot's state to another one. */
  damage(setup: SqlSetup): Promise<void>;
  /** Kills the server sessions working in the staging database; resolves to how many. */
  killStagingSessions(setup: SqlSetup): Promise<number>;
}

const postgres: Engine = {
  name: 'postgresql',
  setup: () =>
    postgresSetup({
      scripts: {
        'schema.sql':
          'create table accounts(id int primary key, owner text, balance numeric(12,2));\n' +
          "insert into accounts select g, 'owner ' || md5(g::text), g * 1.5 from generate_series(1, 20000) g;\n" +
          'create table entries(id serial primary key, account int references accounts(id), note text);\n' +
          "insert into entries(account, note) select 1 + g % 20000, repeat(md5(g::text), 3) from generate_series(1, 30000) g;\n",
      },
    }),
  state: async (setup) => {
    const [row] = await setup.query(
      "select (select count(*) from accounts)::text || '/' || (select count(*) from entries)::text || '/' || " +
        "(select md5(string_agg(id::text || owner || balance::text, ',' order by id)) from accounts) || '/' || " +
        "(select md5(string_agg(id::text || note, ',' order by id)) from entries) as s",
    );
    return String(row!.s);
  },
  damage: async (setup) => {
    await setup.query('delete from entries where id % 5 = 0');
    await setup.query("update accounts set balance = balance + 1 where id % 7 = 0");
    await setup.query("insert into entries(account, note) select 1, 'damage ' || g from generate_series(1, 100) g");
  },
  killStagingSessions: async (setup) => {
    const pg = await findPostgres();
    const rows = await pg.query(
      "select pg_terminate_backend(pid) as t from pg_stat_activity where starts_with(datname, $1) and pid <> pg_backend_pid()",
      [`${setup.name}__dys_`],
    );
    return rows.length;
  },
};

const mysql: Engine = {
  name: 'mysql',
  setup: () =>
    mysqlSetup({
      scripts: {
        'schema.sql':
          'create table accounts(id int primary key, owner varchar(64), balance decimal(12,2));\n' +
          "insert into accounts select seq, concat('owner ', md5(seq)), seq * 1.5 from seq_1_to_15000;\n" +
          'create table entries(id int auto_increment primary key, account int, note text, foreign key (account) references accounts(id));\n' +
          'insert into entries(account, note) select 1 + seq % 15000, repeat(md5(seq), 3) from seq_1_to_20000;\n',
      },
    }),
  state: async (setup) => {
    const [row] = await setup.query(
      'select concat((select count(*) from accounts), "/", (select count(*) from entries), "/", ' +
        '(select sum(crc32(concat(id, owner, balance))) from accounts), "/", (select sum(crc32(concat(id, note))) from entries)) as s',
    );
    return String(row!.s);
  },
  damage: async (setup) => {
    await setup.query('delete from entries where id % 5 = 0');
    await setup.query('update accounts set balance = balance + 1 where id % 7 = 0');
    await setup.query("insert into entries(account, note) select 1, concat('damage ', seq) from seq_1_to_100");
  },
  killStagingSessions: async (setup) => {
    const server = await findMysql();
    const sessions = (await server.query('select id from information_schema.processlist where db like ?', [
      `${setup.name.replaceAll('_', '\\_')}\\_\\_dys\\_%`,
    ])) as Array<{ id: number }>;
    for (const { id } of sessions) await server.query(`kill ${Number(id)}`).catch(() => undefined);
    return sessions.length;
  },
};

/** The biggest pack file in the newest snapshot folder. */
async function biggestPack(setup: SqlSetup): Promise<string> {
  let best = { file: '', size: -1 };
  for (const folder of await setup.snapshots()) {
    for (const name of await readdir(folder)) {
      if (!name.endsWith('.pack')) continue;
      const size = (await stat(path.join(folder, name))).size;
      if (size > best.size) best = { file: path.join(folder, name), size };
    }
  }
  if (best.size < 0) throw new Error('no pack file in the snapshot');
  return best.file;
}

async function flipByte(file: string, offset: number): Promise<void> {
  const data = await readFile(file);
  data[offset]! ^= 0xff;
  await writeFile(file, data);
}

const STACK = /^\s+at .+:\d+:\d+\)?$/m;

function restoreSafety(engine: Engine): void {
  it(`${engine.name}: killed restores, failing loads and corrupted chunks leave the live database fully old or fully new`, { timeout: 600_000 }, async () => {
    const tally = new Tally(`restore-safety-${engine.name}`);
    onTestFinished(() => tally.save());
    const setup = await engine.setup();
    await setup.ok('activate');
    await setup.ok('snapshot');
    const fresh = await engine.state(setup);
    await engine.damage(setup);
    const old = await engine.state(setup);
    expect(old).not.toBe(fresh);

    const started = performance.now();
    await setup.ok('restore');
    const duration = performance.now() - started;
    expect(await engine.state(setup)).toBe(fresh);
    await engine.damage(setup);

    /** Classifies the live database and puts it back to "old" for the next trial. */
    const judge = async (context: string): Promise<'old' | 'new'> => {
      const now = await engine.state(setup);
      if (now !== old && now !== fresh) {
        tally.lost.push(`${context}: the live database is neither the old nor the new state (${now})`);
        throw new Error(`${context}: mixed state ${now}`);
      }
      if (now === fresh) await engine.damage(setup);
      expect(await engine.state(setup)).toBe(old);
      return now === fresh ? 'new' : 'old';
    };

    // SIGKILL at random moments of the restore.
    for (let trial = 0; trial < 10; trial++) {
      const wholeGroup = trial % 3 !== 2;
      const delay = randomInt(0, duration * 1.1);
      const killed = await killAfter(setup.spawn('restore'), delay, wholeGroup);
      tally.trials += 1;
      if (killed) tally.faults += 1;
      const outcome = await judge(`kill after ${delay} ms`);
      tally.note(`restore ${killed ? 'killed' : 'finished'}: ${outcome}`);
    }

    // The server kills the sessions loading the staging database.
    for (let trial = 0; trial < 4; trial++) {
      const child = setup.spawn('restore');
      let done = false;
      void child.then(() => {
        done = true;
      });
      let killedSessions = 0;
      const wait = randomInt(50, Math.max(100, duration * 0.6));
      let seen: number | undefined;
      while (!done && killedSessions === 0) {
        if (seen === undefined && (await setup.databases()).some((name) => name.includes('__dys_'))) seen = performance.now();
        if (seen !== undefined && performance.now() - seen >= wait) killedSessions = await engine.killStagingSessions(setup);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const result = await child;
      tally.trials += 1;
      const outcome = await judge(`failing load ${trial}`);
      if (result.exitCode !== 0) {
        tally.faults += 1;
        expect(result.exitCode, String(result.stderr)).toBe(1);
        expect(String(result.stderr)).not.toMatch(STACK);
        // A session killed before the swap leaves the old state; one killed while finishing a
        // committed swap leaves the new one. Either way the message must say which.
        if (outcome === 'old') expect(String(result.stderr)).toMatch(/unchanged/);
        else expect(String(result.stderr)).toMatch(/in place/);
      }
      tally.note(result.exitCode === 0 ? `load not interrupted (${killedSessions} sessions killed): ${outcome}` : `load failed: ${outcome}`);
    }

    // A corrupted chunk: refused before anything is swapped.
    const pack = await biggestPack(setup);
    const size = (await stat(pack)).size;
    for (let trial = 0; trial < 3; trial++) {
      const offset = randomInt(Math.floor(size * 0.1), size);
      await flipByte(pack, offset);
      const result = await setup.run('restore');
      await flipByte(pack, offset);
      tally.trials += 1;
      tally.faults += 1;
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).not.toMatch(STACK);
      expect(result.stderr).toMatch(/checksum|corrupt|mismatch|damaged/i);
      expect(await judge(`corrupted byte at ${offset}`)).toBe('old');
      tally.note('corrupted chunk refused');
    }

    // A complete restore afterwards: the new state, and no staging database left behind.
    await setup.ok('restore');
    expect(await engine.state(setup)).toBe(fresh);
    expect(await setup.databases()).toEqual([setup.name]);
    expect(tally.lost).toEqual([]);
  });
}

describe('restore safety', () => {
  restoreSafety(postgres);
  restoreSafety(mysql);
});
