/**
 * postgresql-database snapshots and restores on the real server: what a naive dump loses comes
 * back (sequence values, extensions in their schema, large text, bytea, jsonb, functions,
 * triggers, views), an unchanged database keeps its identity (pg_dump's random `\restrict` key
 * is left out), and a restore never loses the live database: not on a corrupted snapshot, not on
 * a load error, not when killed at any moment; sessions on the live database are terminated for
 * the swap with a log line.
 */
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { OwnRestrictRemover, RestrictGuard } from '../../src/plugins/postgres/restrict.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { findPostgres } from '../support/servers.js';
import { postgresSetup, type SqlSetup } from '../support/sql-setup.js';
import { uniqueName } from '../support/temp.js';

const RICH_SCHEMA = `
CREATE SCHEMA ext;
CREATE EXTENSION citext WITH SCHEMA ext;
CREATE TABLE items (id serial PRIMARY KEY, name ext.citext, big text, raw bytea, doc jsonb, at timestamptz, amount numeric(30,10), tags text[], maybe text);
CREATE SEQUENCE counter START 100;
CREATE TABLE audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, msg text);
CREATE FUNCTION log_insert() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit (msg) VALUES ('inserted ' || NEW.id); RETURN NEW; END $$;
CREATE TRIGGER items_audit AFTER INSERT ON items FOR EACH ROW EXECUTE FUNCTION log_insert();
CREATE VIEW item_sizes AS SELECT id, length(big) AS big_length, length(raw) AS raw_length FROM items;
COMMENT ON TABLE items IS 'kept with the dump';
`;

async function fillRich(setup: SqlSetup): Promise<void> {
  const allBytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  await setup.query(
    `INSERT INTO items (name, big, raw, doc, at, amount, tags, maybe) VALUES ($1, repeat($2, 400000), $3, $4, '2024-02-29 23:59:59.123456+00', 12345678901234567890.0123456789, ARRAY['a', 'b,c', NULL], NULL)`,
    ['MiXeD Case', 'é€😀\\\n\t', allBytes, JSON.stringify({ emoji: '🦄', nested: [1, null, 'x'], deep: { a: { b: 'c' } } })],
  );
  await setup.query("INSERT INTO items (name, big, raw, maybe) VALUES ('second', '', '\\x', '')");
  await setup.query("SELECT setval('counter', 4242)");
  await setup.query("SELECT nextval('items_id_seq'), nextval('items_id_seq')");
}

async function richState(setup: SqlSetup): Promise<string> {
  const rows = await setup.query(
    `SELECT id, name::text, md5(big) AS big, length(big) AS big_length, encode(raw, 'hex') AS raw, doc::text AS doc, at::text AS at, amount::text AS amount, tags::text AS tags, maybe, maybe IS NULL AS maybe_null FROM items ORDER BY id`,
  );
  const sequences = await setup.query(
    "SELECT (SELECT last_value FROM counter)::text AS counter, (SELECT is_called FROM counter) AS counter_called, (SELECT last_value FROM items_id_seq)::text AS items_seq",
  );
  const other = await setup.query(
    `SELECT (SELECT string_agg(msg, ',' ORDER BY id) FROM audit) AS audit,
            (SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'citext') AS citext_schema,
            (SELECT count(*)::int FROM pg_trigger WHERE tgname = 'items_audit') AS triggers,
            (SELECT obj_description('items'::regclass)) AS comment,
            (SELECT definition FROM pg_views WHERE viewname = 'item_sizes') AS view`,
  );
  return JSON.stringify({ rows, sequences, other }, null, 1);
}

async function mangle(setup: SqlSetup): Promise<void> {
  await setup.query('DROP TRIGGER items_audit ON items');
  await setup.query('DROP VIEW item_sizes');
  await setup.query("UPDATE items SET big = 'changed', raw = NULL, doc = '{}' WHERE id = 1");
  await setup.query("SELECT setval('counter', 7)");
  await setup.query('CREATE TABLE extra (id int)');
}

async function corruptSnapshot(setup: SqlSetup): Promise<void> {
  const folders = await setup.snapshots();
  const newest = (await Promise.all(folders.map(async (f) => ({ f, t: (await stat(f)).mtimeMs })))).sort((a, b) => b.t - a.t)[0]!.f;
  const packs = (await readdir(newest)).filter((name) => name.endsWith('.pack'));
  const sized = await Promise.all(packs.map(async (name) => ({ file: path.join(newest, name), size: (await stat(path.join(newest, name))).size })));
  const biggest = sized.sort((a, b) => b.size - a.size)[0]!;
  const data = await readFile(biggest.file);
  data[Math.floor(data.length / 2)]! ^= 0xff;
  await writeFile(biggest.file, data);
}

const BIG = "CREATE TABLE big (id int PRIMARY KEY, s text NOT NULL);\nINSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, %N%) g;\n";

describe('postgresql-database snapshot and restore', () => {
  it('brings back sequence values, extensions in their schema, large text, bytea, jsonb, triggers and views', async () => {
    const setup = await postgresSetup({ scripts: { '01-schema.sql': RICH_SCHEMA } });
    await setup.ok('activate');
    await fillRich(setup);
    const before = await richState(setup);
    expect(before).toContain('"counter": "4242"');
    expect(before).toContain('"citext_schema": "ext"');
    expect(before).toContain('inserted 1,inserted 2');

    await setup.ok('snapshot');
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);

    await mangle(setup);
    expect(await richState(setup)).not.toBe(before);
    await setup.ok('restore');
    expect(await richState(setup)).toBe(before);
    expect(await setup.query("SELECT to_regclass('extra') AS extra")).toEqual([{ extra: null }]);
    expect(await setup.databases()).toEqual([setup.name]);
    // The sequences go on where they were, and the restored database dumps to the same snapshot.
    expect(await setup.query("SELECT nextval('counter')::int AS n")).toEqual([{ n: 4243 }]);
    await setup.query("SELECT setval('counter', 4242)");
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('refuses a corrupted snapshot and leaves the live database as it was', async () => {
    const setup = await postgresSetup({ scripts: { '01.sql': BIG.replace('%N%', '30000') } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await setup.query('DELETE FROM big WHERE id % 3 = 0');
    const live = JSON.stringify(await setup.query('SELECT count(*)::int AS n, md5(string_agg(s, \'\' ORDER BY id)) AS h FROM big'));
    await corruptSnapshot(setup);

    const result = await setup.run('restore');
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/does not match its checksum/);
    expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
    expect(JSON.stringify(await setup.query('SELECT count(*)::int AS n, md5(string_agg(s, \'\' ORDER BY id)) AS h FROM big'))).toBe(live);
    expect(await setup.databases()).toEqual([setup.name]);
  });

  it('stops at a load error (ON_ERROR_STOP) and leaves the live database as it was', async () => {
    const server = await findPostgres();
    const role = uniqueName('role');
    await server.query(`CREATE ROLE ${role}`);
    try {
      const setup = await postgresSetup({ scripts: { '01.sql': `CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t VALUES (1), (2);\nGRANT SELECT ON t TO ${role};\n` } });
      await setup.ok('activate');
      await setup.ok('snapshot');
      // The dump grants to a role that is gone by the time it is loaded.
      await setup.query(`REVOKE ALL ON t FROM ${role}`);
      await server.query(`DROP ROLE ${role}`);
      await setup.query('INSERT INTO t VALUES (3)');

      const result = await setup.run('restore');
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`ERROR: +role "${role}" does not exist`));
      expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
      expect(await setup.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
      expect(await setup.databases()).toEqual([setup.name]);
    } finally {
      await server.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('terminates the sessions on the live database for the swap, saying so', async () => {
    const server = await findPostgres();
    const setup = await postgresSetup({ scripts: { '01.sql': 'CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n' } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    await setup.query('INSERT INTO t VALUES (2)');
    const app = new pg.Client({ host: server.socketDir ?? server.host, port: server.port, user: server.user, password: server.password, database: setup.name, application_name: 'busy-app' });
    app.on('error', () => {});
    await app.connect();
    try {
      const result = await setup.ok('restore');
      expect(result.stderr).toMatch(new RegExp(`terminating 1 session\\(s\\) connected to database ${setup.name} to swap in the restored copy: pid \\d+ \\(${server.user}, busy-app\\)`));
      expect(await setup.query('SELECT id FROM t')).toEqual([{ id: 1 }]);
    } finally {
      await app.end().catch(() => {});
    }
  });

  it('drops the staging copy when the swap cannot happen, and says the live database is unchanged', async () => {
    const server = await findPostgres();
    const role = uniqueName('swapper');
    await server.query(`CREATE ROLE ${role} LOGIN CREATEDB`);
    const setup = await postgresSetup({
      scripts: { '01.sql': 'CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n' },
      properties: { postgresqlUsername: role, timeout: '1' },
    });
    // A superuser session on the live database, which the container's role may not terminate.
    let admin: pg.Client | undefined;
    try {
      await setup.ok('activate');
      await setup.ok('snapshot');
      await setup.query('INSERT INTO t VALUES (2)');
      admin = new pg.Client({ host: server.socketDir ?? server.host, port: server.port, user: server.user, password: server.password, database: setup.name });
      admin.on('error', () => {});
      await admin.connect();
      const result = await setup.run('restore');
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toContain(`cannot swap the restored copy in as ${setup.name}`);
      expect(result.stderr).toContain(`The live database ${setup.name} is unchanged`);
      expect(await setup.query('SELECT id FROM t ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
      expect(await setup.databases()).toEqual([setup.name]);
    } finally {
      await admin?.end().catch(() => {});
      await server.query(`DROP DATABASE IF EXISTS ${setup.name}`);
      await server.query(`DROP ROLE IF EXISTS ${role}`);
    }
  });

  it('survives SIGKILL at any moment of a restore: the data is fully old or fully new', { timeout: 300_000 }, async () => {
    const setup = await postgresSetup({ scripts: { '01.sql': BIG.replace('%N%', '300000') } });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const count = async () => JSON.stringify(await setup.query('SELECT count(*)::int AS n FROM big'));
    const fresh = await count();
    const damage = () => setup.query('DELETE FROM big WHERE id % 2 = 0');
    await damage();
    const old = await count();

    const started = performance.now();
    await setup.ok('restore');
    const duration = performance.now() - started;
    expect(await count()).toBe(fresh);

    const outcomes: string[] = [];
    for (const fraction of [0.1, 0.3, 0.5, 0.7, 0.85, 0.92, 0.96, 0.99]) {
      if ((await count()) === fresh) await damage();
      const child = setup.spawn('restore');
      await new Promise((resolve) => setTimeout(resolve, fraction * duration));
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // it had finished
      }
      await child;
      const state = await count();
      expect([old, fresh], `after a kill at ${Math.round(fraction * 100)}%`).toContain(state);
      outcomes.push(state === old ? 'old' : 'new');
      // The next operation drops what the kill left.
      await setup.ok('activate');
      expect(await setup.databases()).toEqual([setup.name]);
      expect([old, fresh]).toContain(await count());
    }
    expect(outcomes).toContain('old');
  });
});

const SHAPES = `
CREATE TABLE keyed (id int PRIMARY KEY, v text);
CREATE TABLE two_keys (a int, b text, v text, PRIMARY KEY (b, a));
CREATE TABLE "MixedCase" ("Id" int PRIMARY KEY, v text);
CREATE TABLE no_key (v text);
CREATE TABLE generated (id int PRIMARY KEY, v int, doubled int GENERATED ALWAYS AS (v * 2) STORED);
CREATE TABLE dropped (id int PRIMARY KEY, gone text, v text);
ALTER TABLE dropped DROP COLUMN gone;
CREATE TABLE parent (id int PRIMARY KEY, v text);
CREATE TABLE child (extra text) INHERITS (parent);
CREATE TABLE measured (at date NOT NULL, v int, PRIMARY KEY (at)) PARTITION BY RANGE (at);
CREATE TABLE measured_2024 PARTITION OF measured FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measured_2025 PARTITION OF measured FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY, v text);
CREATE MATERIALIZED VIEW keyed_count AS SELECT count(*) AS n FROM keyed;
CREATE TABLE refs (id int PRIMARY KEY, keyed_id int REFERENCES keyed (id));
`;

async function fillShapes(setup: SqlSetup): Promise<void> {
  await setup.query("INSERT INTO keyed SELECT g, 'v' || g FROM generate_series(1, 2000) g");
  // Updates move rows to the end of the heap: physical order is no longer key order.
  await setup.query("UPDATE keyed SET v = v || '!' WHERE id % 7 = 0");
  await setup.query("INSERT INTO two_keys VALUES (2, 'b', 'x'), (1, 'b', 'y'), (3, 'a', 'z')");
  await setup.query("INSERT INTO \"MixedCase\" VALUES (2, 'two'), (1, 'one')");
  await setup.query("INSERT INTO no_key VALUES ('z'), ('a'), (NULL)");
  await setup.query('INSERT INTO generated (id, v) VALUES (1, 21), (2, NULL)');
  await setup.query("INSERT INTO dropped VALUES (1, 'kept')");
  await setup.query("INSERT INTO parent VALUES (1, 'parent')");
  await setup.query("INSERT INTO child VALUES (2, 'child', 'extra')");
  await setup.query("INSERT INTO measured VALUES ('2025-03-01', 3), ('2024-06-01', 1), ('2024-02-01', 2)");
  await setup.query("INSERT INTO scratch VALUES (1, 'unlogged')");
  await setup.query('REFRESH MATERIALIZED VIEW keyed_count');
  await setup.query('INSERT INTO refs VALUES (1, 7), (2, NULL)');
  await setup.query("SELECT lo_from_bytea(424242, '\\x00ff10'::bytea)");
}

async function shapesState(setup: SqlSetup): Promise<string> {
  const tables = ['keyed', 'two_keys', '"MixedCase"', 'no_key', 'generated', 'dropped', 'ONLY parent', 'child', 'measured', 'measured_2024', 'scratch', 'keyed_count', 'refs'];
  const state: Record<string, unknown> = {};
  for (const table of tables) state[table] = await setup.query(`SELECT * FROM ${table} ORDER BY 1`);
  state.largeObject = await setup.query("SELECT encode(lo_get(424242), 'hex') AS data");
  return JSON.stringify(state);
}

describe('postgresql-database row order', () => {
  it('by default dumps rows as pg_dump finds them, every kind of table restored exactly', async () => {
    const setup = await postgresSetup({ scripts: { '01.sql': SHAPES } });
    await setup.ok('activate');
    await fillShapes(setup);
    const before = await shapesState(setup);
    await setup.ok('snapshot');
    const key = { container: path.basename(setup.containerFile), component: setup.name };
    const dump = await text((await new SnapshotStore(setup.stateDir).latest(key))!.open('dump.pgsql'));
    // pg_dump's own COPY header, and the rows in heap order (updated rows moved to the end).
    const keyed = dump.slice(dump.indexOf('COPY public.keyed (id, v) FROM stdin;'), dump.indexOf('\\.', dump.indexOf('COPY public.keyed (id, v) FROM stdin;')));
    const ids = keyed.split('\n').slice(1, -1).map((line) => Number(line.split('\t')[0]));
    expect(ids).toHaveLength(2000);
    expect(ids).not.toEqual([...ids].sort((a, b) => a - b));
    expect(dump).not.toContain('in primary key order');
    expect(dump).not.toMatch(/^\\(un)?restrict /m);
    await setup.query('DELETE FROM refs');
    await setup.query('TRUNCATE keyed, refs, two_keys, no_key, generated, dropped, parent, measured, scratch');
    await setup.query('SELECT lo_unlink(424242)');
    await setup.ok('restore');
    expect(await shapesState(setup)).toBe(before);
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
  });

  it('with postgresqlRowOrder=key keeps every float exact when the database rounds floats by default (extra_float_digits)', async () => {
    const setup = await postgresSetup({
      scripts: { '01.sql': 'create table f(id int primary key, x float8, y float4);\ninsert into f values (1, 1/3::float8, 1::float4/3::float4), (2, 0.1::float8 * 3, 2::float4/7::float4);\n' },
      properties: { postgresqlRowOrder: 'key' },
    });
    await setup.ok('activate');
    // A database (or role) setting below 1 makes float output round, in every new session.
    await setup.query(`ALTER DATABASE "${setup.name}" SET extra_float_digits = -3`);
    await setup.ok('snapshot');
    await setup.query('UPDATE f SET x = 0, y = 0');
    await setup.ok('restore');
    const exact = await setup.query(
      'SELECT bool_and(CASE id WHEN 1 THEN x = 1/3::float8 AND y = 1::float4/3::float4 ELSE x = 0.1::float8 * 3 AND y = 2::float4/7::float4 END) AS ok, count(*)::int AS n FROM f',
    );
    expect(exact).toEqual([{ ok: true, n: 2 }]);
  });

  it('with postgresqlRowOrder=key dumps keyed tables in key order, and every other kind of table as pg_dump does, all restored exactly', async () => {
    const setup = await postgresSetup({ scripts: { '01.sql': SHAPES }, properties: { postgresqlRowOrder: 'key' } });
    await setup.ok('activate');
    await fillShapes(setup);
    const before = await shapesState(setup);
    await setup.ok('snapshot');

    const key = { container: path.basename(setup.containerFile), component: setup.name };
    const source = await new SnapshotStore(setup.stateDir).latest(key);
    const dump = await text(source!.open('dump.pgsql'));
    const keyed = dump.slice(dump.indexOf('COPY "public"."keyed"'), dump.indexOf('\\.', dump.indexOf('COPY "public"."keyed"')));
    const ids = keyed.split('\n').slice(1, -1).map((line) => Number(line.split('\t')[0]));
    expect(ids).toEqual(Array.from({ length: 2000 }, (_, i) => i + 1));
    expect(dump).toContain("COPY \"public\".\"two_keys\" (\"a\", \"b\", \"v\") FROM stdin;\n3\ta\tz\n1\tb\ty\n2\tb\tx\n");
    expect(dump).toContain('COPY "public"."generated" ("id", "v") FROM stdin;');
    expect(dump).not.toMatch(/^\\(un)?restrict /m);
    // ...while on disk they are not in key order (so pg_dump alone would not give this).
    const outOfOrder = await setup.query('SELECT count(*)::int AS n FROM (SELECT id, lag(id) OVER (ORDER BY ctid) AS prev FROM keyed) s WHERE id < prev');
    expect(outOfOrder[0]!.n).toBeGreaterThan(0);

    await setup.query('DELETE FROM refs');
    await setup.query('TRUNCATE keyed, refs, two_keys, no_key, generated, dropped, parent, measured, scratch');
    await setup.query("SELECT lo_unlink(424242)");
    await setup.ok('restore');
    expect(await shapesState(setup)).toBe(before);
    await setup.ok('snapshot');
    expect(await setup.generations()).toEqual(['1']);
  });
});

describe('OwnRestrictRemover', () => {
  it("takes out exactly pg_dump's \\restrict and \\unrestrict lines for its key, wherever the stream is cut", async () => {
    const key = 'abc123';
    const dump = `--\n-- PostgreSQL database dump\n--\n\n\\restrict ${key}\n\nSET x = 1;\nCOPY t (a) FROM stdin;\n\\restrict other\n\\.\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict ${key}\n\n`;
    const expected = '--\n-- PostgreSQL database dump\n--\n\n\nSET x = 1;\nCOPY t (a) FROM stdin;\n\\restrict other\n\\.\n-- PostgreSQL database dump complete\n--\n\n\n';
    const bytes = Buffer.from(dump);
    for (let cut = 1; cut < bytes.length; cut++) {
      const out = await buffer(Readable.from([bytes.subarray(0, cut), bytes.subarray(cut)]).pipe(new OwnRestrictRemover()));
      expect(out.toString(), `cut at ${cut}`).toBe(expected);
    }
    // Many small pieces (smaller than the patterns), and pieces of every size up to 40 bytes.
    for (let size = 1; size <= 40; size++) {
      const pieces = [];
      for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size));
      const out = await buffer(Readable.from(pieces).pipe(new OwnRestrictRemover()));
      expect(out.toString(), `pieces of ${size} bytes`).toBe(expected);
    }
  });
});

describe('RestrictGuard', () => {
  const guarded = async (dump: string) => (await buffer(Readable.from([Buffer.from(dump)]).pipe(new RestrictGuard()))).toString();

  it("keeps a dump's own leading guard, and adds a fresh pair to a dump without one", async () => {
    const own = '--\n-- PostgreSQL database dump\n--\n\n\\restrict KEY1\n\nSET x = 1;\n\\unrestrict KEY1\n';
    expect(await guarded(own)).toBe(own);
    const bare = '--\n-- PostgreSQL database dump\n--\n\nSET x = 1;\n';
    expect(await guarded(bare)).toMatch(/^\\restrict [0-9a-f]{48}\n--\n-- PostgreSQL database dump\n--\n\nSET x = 1;\n\n\\unrestrict [0-9a-f]{48}\n$/);
  });

  it("is not switched off by a \\restrict line below pg_dump's version lines (a server version with a newline in it)", async () => {
    const injected = '--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15\n\\restrict X\n\n-- Dumped by pg_dump version 15\n\nSET x = 1;\n\\unrestrict X\n\\! touch /tmp/pwned\n';
    const out = await guarded(injected);
    expect(out).toMatch(/^\\restrict [0-9a-f]{48}\n--\n/);
    expect(out).toMatch(/\n\\unrestrict [0-9a-f]{48}\n$/);
  });

  it('is not switched off by a \\restrict line in the data (a function body near the top)', async () => {
    const hostile = "--\n-- dump\n--\n\nSET x = 1;\nCREATE FUNCTION f() RETURNS int AS $$\n\\restrict fake\nSELECT 1$$ LANGUAGE sql;\n\\! touch /tmp/pwned\n";
    const out = await guarded(hostile);
    expect(out).toMatch(/^\\restrict [0-9a-f]{48}\n/);
    expect(out).toMatch(/\n\\unrestrict [0-9a-f]{48}\n$/);
  });
});
