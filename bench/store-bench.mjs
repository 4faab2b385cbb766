#!/usr/bin/env node
/**
 * The snapshot store's own figures (issue 3), measured on the built store (run `npm run build`):
 *
 * - write throughput of the store against `cat FILE > /dev/null` on the same file, peak RSS, and
 *   peak RSS for an input three times as large (memory must not grow with the snapshot);
 * - store growth after one night of the shared churn, for several average chunk sizes, on real
 *   PostgreSQL and MariaDB dumps (copies of the benchmark database, --db, default dysnomia_bench as
 *   `npm run bench` loads it; needs the local servers);
 * - `--query-all` and `--gc` with 10,000 generations.
 *
 *   node bench/store-bench.mjs [--only throughput,growth,generations] [--input FILE] [--db NAME]
 *                              [--sizes 8,16,32,64] [--databases pg,mysql] [--generations N]
 *
 * Prints a markdown table and writes bench/results/store-bench.{md,json}. Also importable:
 * `runStoreBench(options)` resolves to `{ markdown, results }` for bench/run.mjs.
 */
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { execa } from 'execa';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const STORE = pathToFileURL(path.join(ROOT, 'dist', 'snapshot-store', 'index.js')).href;
const CLI = path.join(ROOT, 'dist', 'bin', 'dysnomia-snapshots.js');
const DATA = process.env.DYSNOMIA_BENCH_DATA ?? path.resolve(ROOT, '..', 'shared', 'bench');
const MB = 1e6;

/** Runs the benchmarks; see the module comment for the options. */
export async function runStoreBench(options = {}) {
  const only = options.only ?? ['throughput', 'growth', 'generations'];
  const work = await mkdtemp(path.join(options.tmpDir ?? os.tmpdir(), 'dysnomia-store-bench-'));
  const results = { machine: machine() };
  try {
    const baseDb = options.baseDb ?? 'dysnomia_bench';
    if (only.includes('throughput')) results.throughput = await throughput(work, options.input ?? (await defaultInput(work, baseDb)));
    if (only.includes('growth')) {
      results.growth = await growth(work, options.sizes ?? [8, 16, 32, 64], options.databases ?? ['pg', 'mysql'], baseDb);
    }
    if (only.includes('generations')) results.generations = await generations(work, options.generations ?? 10_000);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return { markdown: markdown(results), results };
}

function machine() {
  return { cpus: os.cpus().length, model: os.cpus()[0]?.model, load: os.loadavg(), node: process.version, date: new Date().toISOString() };
}

async function defaultInput(work, baseDb) {
  const file = path.join(work, 'input.sql');
  await execa('sh', ['-c', `pg_dump ${baseDb} > "${file}"`]);
  return file;
}

// ---------------------------------------------------------------------------------------------
// Throughput and memory

/** Child mode: writes FILE (REPEAT times, as one stream) into a store and prints its figures. */
async function childWrite(stateDir, file, repeat, avgKiB) {
  const { SnapshotStore, chunkingFor } = await import(STORE);
  const tuning = avgKiB ? { chunking: chunkingFor(avgKiB * 1024) } : undefined;
  const store = new SnapshotStore(stateDir, { tuning });
  async function* input() {
    for (let i = 0; i < repeat; i += 1) {
      for await (const piece of createReadStream(file, { highWaterMark: 1 << 20 })) {
        // Later copies differ in their first bytes so they are not all deduplicated away.
        if (i > 0 && piece.length > 0) piece[0] = (piece[0] + i) & 0xff;
        yield piece;
      }
    }
  }
  const started = performance.now();
  const outcome = await store.write({ container: 'bench', component: 'db' }, { type: 'bench' }, (sink) =>
    sink.addStream('dump.sql', Readable.from(input(), { objectMode: false })),
  );
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `${JSON.stringify({ seconds, bytesRead: outcome.bytesRead, bytesStored: outcome.bytesStored, maxRssKiB: process.resourceUsage().maxRSS })}\n`,
  );
}

/** Child mode: reads the latest snapshot back (verified) and prints the time. */
async function childRead(stateDir) {
  const { SnapshotStore } = await import(STORE);
  const source = await new SnapshotStore(stateDir).latest({ container: 'bench', component: 'db' });
  const started = performance.now();
  let bytes = 0;
  for await (const piece of source.open('dump.sql')) bytes += piece.length;
  process.stdout.write(`${JSON.stringify({ seconds: (performance.now() - started) / 1000, bytes, maxRssKiB: process.resourceUsage().maxRSS })}\n`);
}

async function child(args) {
  const result = await execa(process.execPath, [fileURLToPath(import.meta.url), ...args]);
  return JSON.parse(result.stdout);
}

async function timed(command, args) {
  const started = performance.now();
  await execa(command, args, { stdout: 'ignore' });
  return (performance.now() - started) / 1000;
}

async function throughput(work, file) {
  const size = (await stat(file)).size;
  await timed('cat', [file]);
  const runs = [];
  let catSeconds = Infinity;
  for (let i = 0; i < 3; i += 1) {
    catSeconds = Math.min(catSeconds, await timed('sh', ['-c', `cat "${file}" > /dev/null`]));
    const stateDir = path.join(work, `throughput-${i}`);
    runs.push(await child(['--child-write', stateDir, file, '1']));
    if (i < 2) await rm(stateDir, { recursive: true, force: true });
  }
  const best = runs.reduce((a, b) => (a.seconds < b.seconds ? a : b));
  const read = await child(['--child-read', path.join(work, 'throughput-2')]);
  await rm(path.join(work, 'throughput-2'), { recursive: true, force: true });
  const triple = await child(['--child-write', path.join(work, 'triple'), file, '3']);
  await rm(path.join(work, 'triple'), { recursive: true, force: true });
  return {
    file,
    bytes: size,
    catMBps: size / MB / catSeconds,
    writeMBps: size / MB / best.seconds,
    writeSeconds: best.seconds,
    writeRuns: runs.map((run) => run.seconds),
    storedBytes: best.bytesStored,
    writeMaxRssMiB: Math.max(...runs.map((run) => run.maxRssKiB)) / 1024,
    readMBps: read.bytes / MB / read.seconds,
    readMaxRssMiB: read.maxRssKiB / 1024,
    tripleBytes: triple.bytesRead,
    tripleMaxRssMiB: triple.maxRssKiB / 1024,
  };
}

// ---------------------------------------------------------------------------------------------
// Growth after one night of churn, per chunk size

const PG = { PGHOST: process.env.PGHOST ?? '/var/run/postgresql', PGUSER: process.env.PGUSER ?? 'postgres' };
const MYSQL_ARGS = ['-u', process.env.MYSQL_USER ?? 'root'];

async function sh(script, env = {}) {
  return execa('sh', ['-c', script], { env: { ...process.env, ...PG, ...env } });
}

/** Dumps a PostgreSQL database with every table's rows in primary-key order, as the plugin does. */
async function pgOrderedDump(db, file) {
  const { stdout } = await sh(
    `psql -At -d ${db} -c "select c.relname, string_agg(a.attname, ',' order by array_position(i.indkey, a.attnum)) from pg_index i join pg_class c on c.oid = i.indrelid join pg_attribute a on a.attrelid = c.oid and a.attnum = any(i.indkey) join pg_namespace n on n.oid = c.relnamespace where i.indisprimary and n.nspname = 'public' group by c.relname order by c.relname"`,
  );
  const tables = stdout.split('\n').filter(Boolean).map((line) => line.split('|'));
  let script = `pg_dump --schema-only ${db} > "${file}"`;
  for (const [table, keys] of tables) {
    script += ` && printf 'COPY public.${table} FROM stdin;\\n' >> "${file}"`;
    script += ` && psql -d ${db} -c "COPY (SELECT * FROM public.${table} ORDER BY ${keys}) TO STDOUT" >> "${file}"`;
    script += ` && printf '\\\\.\\n\\n' >> "${file}"`;
  }
  await sh(script);
}

async function pgDumps(work, baseDb) {
  const db = `store_bench_${process.pid}`;
  const churn = path.join(DATA, 'pg-nightly-churn.sql');
  const files = {
    'pg_dump': [path.join(work, 'pg-plain-0.sql'), path.join(work, 'pg-plain-1.sql')],
    'pg, rows in key order': [path.join(work, 'pg-ordered-0.sql'), path.join(work, 'pg-ordered-1.sql')],
  };
  await sh(`createdb -T ${baseDb} ${db} 2>/dev/null || (createdb ${db} && pg_dump ${baseDb} | psql -q -d ${db} > /dev/null)`);
  try {
    for (const night of [0, 1]) {
      if (night === 1) await sh(`psql -q -d ${db} -f "${churn}" > /dev/null`);
      await sh(`pg_dump ${db} > "${files.pg_dump[night]}"`);
      await pgOrderedDump(db, files['pg, rows in key order'][night]);
    }
  } finally {
    await sh(`dropdb --if-exists ${db}`);
  }
  return files;
}

async function mysqlDumps(work, baseDb) {
  const db = `store_bench_${process.pid}`;
  const churn = path.join(DATA, 'mysql-nightly-churn.sql');
  const files = { 'mysqldump --order-by-primary': [path.join(work, 'my-0.sql'), path.join(work, 'my-1.sql')] };
  const client = `mysql ${MYSQL_ARGS.join(' ')}`;
  const dump = `mysqldump ${MYSQL_ARGS.join(' ')} --order-by-primary --skip-dump-date --single-transaction`;
  await sh(`${client} -e 'CREATE DATABASE ${db}' && mysqldump ${MYSQL_ARGS.join(' ')} --single-transaction ${baseDb} | ${client} ${db}`);
  try {
    for (const night of [0, 1]) {
      if (night === 1) await sh(`${client} ${db} < "${churn}"`);
      await sh(`${dump} ${db} > "${files['mysqldump --order-by-primary'][night]}"`);
    }
  } finally {
    await sh(`${client} -e 'DROP DATABASE IF EXISTS ${db}'`);
  }
  return files;
}

/** Bytes the store occupies on disk: each distinct inode once. */
async function storedBytes(stateDir) {
  const seen = new Set();
  let total = 0;
  const walk = async (dir) => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(file);
      else if (entry.isFile()) {
        const info = await stat(file);
        if (!seen.has(info.ino)) {
          seen.add(info.ino);
          total += info.size;
        }
      }
    }
  };
  await walk(path.join(stateDir, 'snapshots'));
  return total;
}

async function growth(work, sizes, databases, baseDb) {
  const dumps = {};
  if (databases.includes('pg')) Object.assign(dumps, await pgDumps(work, baseDb));
  if (databases.includes('mysql')) Object.assign(dumps, await mysqlDumps(work, baseDb));
  const rows = [];
  for (const [workload, [first, second]] of Object.entries(dumps)) {
    const dumpBytes = (await stat(first)).size;
    for (const kib of sizes) {
      const stateDir = path.join(work, `growth-${kib}`);
      const one = await child(['--child-write', stateDir, first, '1', String(kib)]);
      const firstStored = await storedBytes(stateDir);
      await child(['--child-write', stateDir, second, '1', String(kib)]);
      const secondStored = await storedBytes(stateDir);
      rows.push({
        workload,
        avgKiB: kib,
        dumpBytes,
        firstStored,
        growthBytes: secondStored - firstStored,
        growthPercent: (100 * (secondStored - firstStored)) / firstStored,
        writeMBps: dumpBytes / MB / one.seconds,
      });
      await rm(stateDir, { recursive: true, force: true });
    }
    await rm(first, { force: true });
    await rm(second, { force: true });
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------
// 10,000 generations

/**
 * A store with `count` generations: 100 components, each with two real snapshots written through
 * the store and `count / 100` generation links alternating between them (as a nightly cron
 * produces when a database flips between two states).
 */
async function generations(work, count) {
  const { SnapshotStore } = await import(STORE);
  const stateDir = path.join(work, 'generations');
  const store = new SnapshotStore(stateDir);
  const components = 100;
  const perComponent = Math.ceil(count / components);
  for (let c = 0; c < components; c += 1) {
    const key = { container: 'bench', component: `db${c}` };
    const ids = [];
    for (const variant of ['a', 'b']) {
      const outcome = await store.write(key, { type: 'bench' }, (sink) =>
        sink.addStream('dump.sql', Readable.from([Buffer.from(`component ${c} state ${variant}\n`.repeat(100))], { objectMode: false })),
      );
      ids.push(outcome.identity);
    }
    const dir = path.join(stateDir, 'generations', key.container, key.component);
    for (let n = 3; n <= perComponent; n += 1) {
      await symlink(`../../../snapshots/${key.container}/${key.component}/${ids[(n - 1) % 2]}`, path.join(dir, String(n)));
    }
  }
  const env = { ...process.env, DYSNOMIA_STATEDIR: stateDir };
  const cli = async (args) => {
    const started = performance.now();
    const result = await execa(process.execPath, [CLI, ...args], { env });
    return { seconds: (performance.now() - started) / 1000, stdout: result.stdout };
  };
  const queryAll = await cli(['--query-all']);
  const lines = queryAll.stdout.split('\n').filter(Boolean).length;
  const queryLatest = await cli(['--query-latest']);
  const gcDry = await cli(['--gc', '--dry-run', '-q']);
  const gc = await cli(['--gc', '-q']);
  const after = (await cli(['--query-all'])).stdout.split('\n').filter(Boolean).length;
  return {
    generations: lines,
    queryAllSeconds: queryAll.seconds,
    queryLatestSeconds: queryLatest.seconds,
    gcDryRunSeconds: gcDry.seconds,
    gcSeconds: gc.seconds,
    generationsAfterGc: after,
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function fixed(value, digits = 1) {
  return Number(value).toFixed(digits);
}

function markdown(results) {
  const lines = [];
  const m = results.machine;
  lines.push(`Snapshot store benchmark, ${m.date}: ${m.cpus} × ${m.model}, node ${m.node}, load ${m.load.map((l) => fixed(l, 2)).join(' ')}`);
  lines.push('');
  const t = results.throughput;
  if (t) {
    lines.push('| throughput | MB/s | ratio to cat | peak RSS MiB |', '| --- | ---: | ---: | ---: |');
    lines.push(`| \`cat ${path.basename(t.file)} > /dev/null\` (${fixed(t.bytes / MB, 0)} MB) | ${fixed(t.catMBps, 0)} | 1 | |`);
    lines.push(`| store write (chunk, hash, zstd, pack; best of 3: ${t.writeRuns.map((s) => fixed(s, 2)).join(', ')} s) | ${fixed(t.writeMBps, 0)} | ${fixed(t.catMBps / t.writeMBps, 2)}x the time | ${fixed(t.writeMaxRssMiB, 0)} |`);
    lines.push(`| store read (verified) | ${fixed(t.readMBps, 0)} | | ${fixed(t.readMaxRssMiB, 0)} |`);
    lines.push(`| store write of a 3x larger stream (${fixed(t.tripleBytes / MB, 0)} MB) | | | ${fixed(t.tripleMaxRssMiB, 0)} |`);
    lines.push('', `Stored ${fixed(t.storedBytes / MB, 1)} MB for ${fixed(t.bytes / MB, 1)} MB of input.`, '');
  }
  if (results.growth) {
    lines.push('| workload | avg chunk | first snapshot stored | growth after one night | growth | write MB/s |', '| --- | ---: | ---: | ---: | ---: | ---: |');
    for (const row of results.growth) {
      lines.push(
        `| ${row.workload} | ${row.avgKiB} KiB | ${fixed(row.firstStored / MB, 1)} MB | ${fixed(row.growthBytes / MB, 2)} MB | ${fixed(row.growthPercent, 1)}% | ${fixed(row.writeMBps, 0)} |`,
      );
    }
    lines.push('');
  }
  const g = results.generations;
  if (g) {
    lines.push('| 10,000 generations | seconds |', '| --- | ---: |');
    lines.push(`| --query-all (${g.generations} lines) | ${fixed(g.queryAllSeconds, 2)} |`);
    lines.push(`| --query-latest | ${fixed(g.queryLatestSeconds, 2)} |`);
    lines.push(`| --gc --dry-run | ${fixed(g.gcDryRunSeconds, 2)} |`);
    lines.push(`| --gc (keeps 1 per component: ${g.generationsAfterGc} left) | ${fixed(g.gcSeconds, 2)} |`);
    lines.push('');
  }
  return lines.join('\n');
}

async function main(argv) {
  if (argv[0] === '--child-write') return childWrite(argv[1], argv[2], Number(argv[3]), argv[4] ? Number(argv[4]) : undefined);
  if (argv[0] === '--child-read') return childRead(argv[1]);
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      input: { type: 'string' },
      sizes: { type: 'string' },
      databases: { type: 'string' },
      generations: { type: 'string' },
      db: { type: 'string' },
    },
  });
  const list = (value) => value?.split(',').map((part) => part.trim());
  const { markdown: text, results } = await runStoreBench({
    only: list(values.only),
    input: values.input,
    sizes: list(values.sizes)?.map(Number),
    databases: list(values.databases),
    generations: values.generations ? Number(values.generations) : undefined,
    baseDb: values.db,
  });
  process.stdout.write(`${text}\n`);
  const out = path.join(ROOT, 'bench', 'results');
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'store-bench.json'), `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(path.join(out, 'store-bench.md'), `${text}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((error) => {
    process.stderr.write(`store-bench: ${error.stack ?? error}\n`);
    process.exitCode = 1;
  });
}
