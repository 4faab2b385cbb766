#!/usr/bin/env node
/**
 * How the SQL plugins' dump formats trade dump time against store growth: each variant's dump
 * time against the bare dump tool to /dev/null (A B A B), and the bytes each variant adds to its
 * own store over nights of the shared churn, on a copy of the benchmark database.
 *
 *   node bench/sql-plugins.mjs [--only pg,mysql] [--db dysnomia_bench] [--nights 3] [--pairs 2]
 *                              [--no-vacuum] [--json FILE]
 *
 * Variants (the plugin's own code paths, from dist/; run `npm run build` first):
 *   PostgreSQL  key       rows of keyed tables in primary key order (postgresqlRowOrder=key)
 *               physical  one plain pg_dump, rows as they lie on disk (the plugin's default)
 *   MariaDB     plugin    the plugin's mysqldump: one INSERT per row, primary key order
 *               extended  the same with multi-row INSERTs (mysqldump's default)
 *               physical  the plugin's, without --order-by-primary
 *
 * The base database is only read; it must exist (the dysnomia_bench that `npm run bench` loads,
 * or any other copy of the shared dataset). The copy (`<db>_sqlvar`) is dropped at the end.
 * PostgreSQL nights end with VACUUM (what autovacuum does sooner or later), so inserts reuse
 * the space of deleted and updated rows; --no-vacuum leaves it out.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { mysql, postgres } from './lib/databases.mjs';
import { ROOT, storeSize } from './lib/dysnomia.mjs';
import { run } from './lib/process.mjs';
import { alternate, mb, round3 } from './lib/stats.mjs';

const dist = (module) => import(path.join(ROOT, 'dist', module));
const { silentLogger } = await dist('core/log.js');
const { SnapshotStore } = await dist('snapshot-store/index.js');
const { dumpWith } = await dist('plugins/sql/tool.js');
const mysqlClient = await dist('plugins/mysql/client.js');
const { DUMP_ARGUMENTS } = await dist('plugins/mysql/dump.js');
const { parseMysqlOptions } = await dist('plugins/mysql/options.js');
const pgClient = await dist('plugins/postgres/client.js');
const pgDump = await dist('plugins/postgres/dump.js');
const { parsePostgresOptions } = await dist('plugins/postgres/options.js');

const { values: args } = parseArgs({
  options: {
    only: { type: 'string', default: 'pg,mysql' },
    db: { type: 'string', default: 'dysnomia_bench' },
    nights: { type: 'string', default: '3' },
    pairs: { type: 'string', default: '2' },
    'no-vacuum': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const nights = Number(args.nights);
const pairs = Number(args.pairs);
const log = (text) => process.stderr.write(`${text}\n`);

/** A sink that throws the bytes away, counting them. */
function nullSink() {
  const sink = {
    bytes: 0,
    async addStream(_name, data) {
      await pipeline(
        data,
        new Writable({
          write(chunk, _encoding, callback) {
            sink.bytes += chunk.length;
            callback();
          },
        }),
      );
    },
  };
  return sink;
}

/** The variants of one engine: name -> fill(database, sink). */
async function mysqlVariants(engine) {
  const options = parseMysqlOptions(engine.properties);
  const { dump } = await mysqlClient.findMysqlTools();
  const withArgs = (dumpArgs) => (database, sink) =>
    mysqlClient.withToolAccess(options, (defaults) =>
      dumpWith(dump, [defaults, ...dumpArgs, database], `dumping ${database}`, (output) => sink.addStream('dump.sql', output), { plugin: 'bench' }),
    );
  return {
    plugin: withArgs(DUMP_ARGUMENTS),
    extended: withArgs(DUMP_ARGUMENTS.filter((a) => a !== '--skip-extended-insert' && a !== '--no-autocommit')),
    physical: withArgs(DUMP_ARGUMENTS.filter((a) => a !== '--order-by-primary')),
  };
}

async function pgVariants(engine) {
  const options = parsePostgresOptions(engine.properties);
  const withOrder = (order) => (database, sink) =>
    pgClient.withSession(options, silentLogger, undefined, (session) =>
      pgClient.withToolAccess(options, session, undefined, (tool) => pgDump.dumpDatabase(options, session, database, sink, tool, silentLogger, order)),
    );
  return { key: withOrder('key'), physical: withOrder('physical') };
}

/** Times `fill` to /dev/null against the bare dump tool, A B A B. */
async function dumpTimes(engine, database, variants) {
  const [tool, toolArgs] = engine.dumpCommand(database);
  const out = {};
  for (const [name, fill] of Object.entries(variants)) {
    log(`${engine.label}: ${name} to /dev/null vs ${engine.dumpLabel} > /dev/null`);
    let bytes = 0;
    out[name] = await alternate({
      pairs,
      log,
      reference: () => run(tool, toolArgs, { env: engine.env }),
      ours: async () => {
        const sink = nullSink();
        const started = performance.now();
        await fill(database, sink);
        bytes = sink.bytes;
        return { seconds: (performance.now() - started) / 1000 };
      },
    });
    out[name].dumpBytes = bytes;
  }
  return out;
}

async function copyBase(engine, base, copy, workDir) {
  for (const leftover of await engine.list(copy)) await engine.drop(leftover);
  if (engine.id === 'pg') return engine.copy(base, copy);
  const file = path.join(workDir, 'base.sql');
  const [tool, toolArgs] = engine.dumpCommand(base);
  await run(tool, toolArgs, { env: engine.env, stdout: file });
  await engine.copy(base, copy, file);
  await rm(file, { force: true });
}

async function engineFigures(engine, workDir) {
  const base = args.db;
  if (!(await engine.list(base)).includes(base)) {
    throw new Error(`${engine.label}: database ${base} does not exist; give --db, or run npm run bench once to load dysnomia_bench`);
  }
  const copy = `${base}_sqlvar`;
  const variants = engine.id === 'pg' ? await pgVariants(engine) : await mysqlVariants(engine);
  log(`${engine.label}: copying ${base} to ${copy}`);
  await copyBase(engine, base, copy, workDir);
  try {
    const out = { engine: engine.label, version: await engine.version(), dumps: await dumpTimes(engine, copy, variants), growth: {} };
    const churn = path.join(workDir, `${engine.id}-churn.sql`);
    const script = await readFile(path.join(dataDir(), engine.churnFile), 'utf8');
    await writeFile(churn, `${script}${engine.id === 'pg' && !args['no-vacuum'] ? '\nVACUUM;\n' : ''}`);
    const stores = Object.fromEntries(Object.keys(variants).map((name) => [name, new SnapshotStore(path.join(workDir, `store-${engine.id}-${name}`))]));
    for (const name of Object.keys(variants)) out.growth[name] = [];
    for (let night = 0; night <= nights; night++) {
      if (night > 0) {
        log(`${engine.label}: night ${night}: churn${engine.id === 'pg' && !args['no-vacuum'] ? ' and VACUUM' : ''}`);
        await engine.runFile(copy, churn);
      }
      for (const [name, fill] of Object.entries(variants)) {
        const started = performance.now();
        const outcome = await stores[name].write({ container: 'sql-bench', component: name }, { type: engine.type }, (sink) => fill(copy, sink));
        const seconds = (performance.now() - started) / 1000;
        out.growth[name].push({
          night,
          dumpBytes: outcome.bytesRead,
          bytesStored: outcome.bytesStored,
          storeBytes: await storeSize(stores[name].stateDir),
          snapshotSeconds: round3(seconds),
        });
        log(`  ${name}: ${mb(outcome.bytesRead)} dumped, ${mb(outcome.bytesStored)} newly stored, ${seconds.toFixed(1)} s`);
      }
    }
    return out;
  } finally {
    await engine.drop(copy);
  }
}

function dataDir() {
  return process.env.DYSNOMIA_BENCH_DATA ?? path.resolve(ROOT, '..', 'shared', 'bench');
}

function report(results) {
  const lines = ['# SQL plugin dump variants', ''];
  for (const r of results) {
    lines.push(`## ${r.engine} ${r.version}`, '', '| variant | dump bytes | dump time / bare dump (median) |', '| --- | --- | --- |');
    for (const [name, d] of Object.entries(r.dumps)) lines.push(`| ${name} | ${mb(d.dumpBytes)} | ${d.medianRatio} (${d.ratios.join(', ')}) |`);
    lines.push('', `| variant | night 0 stored | nights 1-${nights} stored per night | store after ${nights} nights |`, '| --- | --- | --- | --- |');
    for (const [name, g] of Object.entries(r.growth)) {
      const later = g.slice(1).map((n) => n.bytesStored);
      const perNight = later.length > 0 ? later.reduce((a, b) => a + b, 0) / later.length : 0;
      lines.push(`| ${name} | ${mb(g[0].bytesStored)} | ${mb(perNight)} (${later.map((b) => (b / 1e6).toFixed(1)).join(', ')}) | ${mb(g.at(-1).storeBytes)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

const workDir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-sql-bench-'));
try {
  const results = [];
  for (const id of args.only.split(',')) {
    const engine = id === 'pg' ? postgres() : id === 'mysql' ? mysql() : undefined;
    if (engine === undefined) throw new Error(`--only: unknown engine ${id} (pg, mysql)`);
    results.push(await engineFigures(engine, workDir));
  }
  process.stdout.write(`${report(results)}\n`);
  if (args.json) await writeFile(args.json, `${JSON.stringify(results, null, 2)}\n`);
} finally {
  await rm(workDir, { recursive: true, force: true });
}
