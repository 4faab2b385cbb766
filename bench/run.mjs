#!/usr/bin/env node
/**
 * `npm run bench`: every performance figure of dysnomia against its reference, in one run.
 * See docs/benchmarks.md for what each figure measures. Never part of `npm test`.
 *
 *   node bench/run.mjs [--only pg,mysql,git,store] [--pairs 3] [--scale 1] [--nights 7]
 *                      [--xz-every-night] [--no-xz] [--save-as NAME] [--db dysnomia_bench]
 *
 * Writes bench/results/latest.{md,json} and latest-growth.png; with --save-as NAME also
 * NAME.{md,json} and NAME-growth.png (the copy committed for a machine kind).
 */
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { databaseFigures } from './lib/database-figures.mjs';
import { mysql, postgres } from './lib/databases.mjs';
import { programPath, ROOT } from './lib/dysnomia.mjs';
import { gitFigures } from './lib/git-figures.mjs';
import { plotGrowth } from './lib/plot.mjs';
import { killRunning, versionOf } from './lib/process.mjs';
import { evaluateTargets, markdown } from './lib/report.mjs';
import { storeFigures } from './lib/store-figures.mjs';

const GROUPS = ['pg', 'mysql', 'git', 'store'];
/** A 1-minute load average above this means other work shared the cores: the run is noisy. */
const QUIET_LOAD = 0.5;

const USAGE = `usage: node bench/run.mjs [options]   (npm run bench -- [options])

  --only LIST        comma-separated groups to run: ${GROUPS.join(', ')} (default: all)
  --pairs N          reference/ours pairs per figure (default 3; fewer is a development run)
  --scale F          fraction of the shared dataset to use, e.g. 0.07 for about 20 MB (default 1)
  --nights N         nights of churn for the store-growth figure (default 7)
  --xz-every-night   run Dysnomia's xz on every night's dump instead of estimating nights 1+
  --no-xz            skip Dysnomia's xz pipeline (it takes minutes on the full dataset)
  --git-mib N        size of the git benchmark repository (default 110, at least 100 for the target)
  --db NAME          base name of the benchmark databases (default dysnomia_bench)
  --save-as NAME     also write bench/results/NAME.{md,json} and NAME-growth.png
  -h, --help         this text

Environment: DYSNOMIA_BENCH_DATA (the dataset folder, default ../shared/bench beside the repo),
PGHOST/PGPORT/PGUSER, MYSQL_UNIX_PORT or MYSQL_HOST/MYSQL_TCP_PORT, MYSQL_USER.`;

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      only: { type: 'string' },
      pairs: { type: 'string', default: '3' },
      scale: { type: 'string', default: '1' },
      nights: { type: 'string', default: '7' },
      'xz-every-night': { type: 'boolean', default: false },
      'no-xz': { type: 'boolean', default: false },
      'git-mib': { type: 'string' },
      db: { type: 'string', default: 'dysnomia_bench' },
      'save-as': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const number = (name, min, max = Infinity) => {
    const value = Number(values[name]);
    if (!Number.isFinite(value) || value < min || value > max) throw new Error(`--${name} ${values[name]}: expected a number from ${min} to ${max}`);
    return value;
  };
  const only = values.only ? values.only.split(',').map((group) => group.trim()) : GROUPS;
  for (const group of only) if (!GROUPS.includes(group)) throw new Error(`--only: unknown group ${JSON.stringify(group)}; expected ${GROUPS.join(', ')}`);
  const scale = number('scale', 0.001, 1);
  if (values['save-as'] !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(values['save-as'])) {
    throw new Error(`--save-as ${JSON.stringify(values['save-as'])}: use letters, digits, dots, dashes`);
  }
  return {
    only,
    pairs: Math.round(number('pairs', 1, 50)),
    scale,
    nights: Math.round(number('nights', 1, 60)),
    xzEveryNight: values['xz-every-night'],
    skipXz: values['no-xz'],
    gitMib: values['git-mib'] === undefined ? (scale === 1 ? 110 : Math.max(5, Math.round(110 * scale))) : Math.round(number('git-mib', 1, 10000)),
    baseName: scale === 1 ? values.db : `${values.db}_${String(scale).replace('.', '_')}`,
    saveAs: values['save-as'],
  };
}

async function machine() {
  const tools = [];
  for (const [program, args] of [
    ['pg_dump', ['--version']],
    ['mysqldump', ['--version']],
    ['git', ['--version']],
    ['xz', ['--version']],
  ]) {
    const version = await versionOf(program, args);
    if (version) tools.push(version);
  }
  const cpus = os.cpus();
  return {
    kind: process.env.DYSNOMIA_BENCH_MACHINE ?? os.hostname(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    tools,
    loadAtStart: os.loadavg().map((load) => Number(load.toFixed(2))),
  };
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  if (!existsSync(programPath('dysnomia'))) throw new Error(`${programPath('dysnomia')} is missing: run \`npm run build\` first (npm run bench does)`);
  const dataDir = path.resolve(process.env.DYSNOMIA_BENCH_DATA ?? path.join(ROOT, '..', 'shared', 'bench'));
  const log = (text) => process.stderr.write(`[bench] ${text}\n`);
  const results = {
    started: new Date().toISOString(),
    command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim(),
    options: { ...options, dataDir },
    machine: await machine(),
    skipped: [],
  };
  if (results.machine.loadAtStart[0] > QUIET_LOAD) log(`load average ${results.machine.loadAtStart[0]}: other work is running, timings will be noisy`);
  if (options.pairs < 3 || options.scale < 1) log('fewer than 3 pairs or a scaled-down dataset: a development run, not figures to publish');
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-bench-'));
  // On Ctrl-C or kill: end the commands and remove the temporary files (database copies are
  // dropped by the next run before it starts).
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      killRunning();
      rmSync(workDir, { recursive: true, force: true });
      process.stderr.write(`bench: stopped by ${signal}\n`);
      process.exit(130);
    });
  }
  const common = { ...options, dataDir, workDir, log };
  // A group that fails is reported, and the others' figures are still written: a full run takes
  // most of an hour.
  results.failed = [];
  const group = async (name, measure) => {
    try {
      await measure();
    } catch (error) {
      log(`${name}: FAILED: ${error.message}`);
      results.failed.push(`${name}: ${error.message}`);
    }
  };
  try {
    if (options.only.includes('pg') || options.only.includes('mysql')) {
      if (!existsSync(dataDir)) throw new Error(`the benchmark dataset folder ${dataDir} is missing; set DYSNOMIA_BENCH_DATA`);
      results.databases = [];
      for (const engine of [postgres(), mysql()]) {
        if (!options.only.includes(engine.id)) continue;
        await group(engine.id, async () => results.databases.push(await databaseFigures(engine, common)));
      }
    }
    if (options.only.includes('git')) await group('git', async () => (results.git = await gitFigures({ pairs: options.pairs, mib: options.gitMib, log })));
    if (options.only.includes('store')) {
      await group('store', async () => {
        const { skipped, ...store } = await storeFigures(common);
        results.store = store;
        results.skipped.push(...skipped);
      });
    }
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
  results.machine.loadAtEnd = os.loadavg().map((load) => Number(load.toFixed(2)));
  // Only the load before the run says whether other work shared the cores: the run's own work
  // (and the database servers' background work after each night of churn) raises it by the end.
  results.noisy = results.machine.loadAtStart[0] > QUIET_LOAD;
  results.development = options.pairs < 3 || options.scale < 1;
  results.finished = new Date().toISOString();
  results.targets = evaluateTargets(results);
  await writeResults(results, options.saveAs, log);
  process.stdout.write(`${results.targets.map((t) => `${t.result.padEnd(4)}  ${t.name}: ${t.measured} (${t.limit})`).join('\n')}\n`);
  if (results.failed.length > 0) {
    process.stderr.write(`bench: ${results.failed.length} group(s) failed:\n${results.failed.map((line) => `  ${line}`).join('\n')}\n`);
    process.exitCode = 1;
  }
}

async function writeResults(results, saveAs, log) {
  const dir = path.join(ROOT, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const write = async (name) => {
    const plot = `${name}-growth.png`;
    const hasPlot = (results.databases ?? []).length > 0;
    if (hasPlot) await plotGrowth(results.databases, path.join(dir, plot));
    await writeFile(path.join(dir, `${name}.json`), `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(path.join(dir, `${name}.md`), markdown(results, { plotFile: hasPlot ? plot : undefined }));
    log(`wrote bench/results/${name}.md, ${name}.json${hasPlot ? `, ${plot}` : ''}`);
  };
  await write('latest');
  if (saveAs) await write(saveAs);
}

main().catch((error) => {
  process.stderr.write(`bench: ${error.message}\n`);
  process.exitCode = 1;
});
