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
import { buffer } from 'node:stream/consumers';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { RestrictRemover } from '../../src/plugins/postgres/restrict.js';
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

describe('RestrictRemover', () => {
  it("takes out exactly pg_dump's \\restrict and \\unrestrict lines for our key, wherever the stream is cut", async () => {
    const key = 'abc123';
    const dump = `--\n-- PostgreSQL database dump\n--\n\n\\restrict ${key}\n\nSET x = 1;\nCOPY t (a) FROM stdin;\n\\restrict other\n\\.\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict ${key}\n\n`;
    const expected = '--\n-- PostgreSQL database dump\n--\n\n\nSET x = 1;\nCOPY t (a) FROM stdin;\n\\restrict other\n\\.\n-- PostgreSQL database dump complete\n--\n\n\n';
    const bytes = Buffer.from(dump);
    for (let cut = 1; cut < bytes.length; cut++) {
      const out = await buffer(Readable.from([bytes.subarray(0, cut), bytes.subarray(cut)]).pipe(new RestrictRemover(key)));
      expect(out.toString(), `cut at ${cut}`).toBe(expected);
    }
  });
});
