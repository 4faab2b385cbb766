/**
 * The snapshot store's own figures (issue 3: write throughput against `cat`, memory, growth per
 * average chunk size, 10,000 generations) come from bench/store-bench.mjs; this calls its
 * runStoreBench on the benchmark database and turns its results into targets.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT } from './dysnomia.mjs';
import { run } from './process.mjs';

/**
 * Runs the store benchmark on copies of the benchmark database. A scaled-down (development) run
 * writes a dump of the scaled base database and leaves out the per-chunk-size growth.
 */
export async function storeFigures({ scale, baseName, workDir, log }) {
  const { runStoreBench } = await import(pathToFileURL(path.join(ROOT, 'bench', 'store-bench.mjs')).href);
  const options = { tmpDir: workDir, baseDb: baseName };
  const skipped = [];
  if (scale < 1) {
    options.input = path.join(workDir, 'store-input.sql');
    await run('pg_dump', [baseName], { stdout: options.input, env: { PGHOST: process.env.PGHOST ?? '/var/run/postgresql', PGUSER: process.env.PGUSER ?? 'postgres' } });
    options.only = ['throughput', 'generations'];
    skipped.push('the store growth per chunk size (measured on the full dataset only)');
  }
  log('store: bench/store-bench.mjs (throughput, memory, growth per chunk size, 10,000 generations)');
  const { markdown, results } = await runStoreBench(options);
  return { markdown, results, targets: targets(results), skipped };
}

function targets(results) {
  const out = [];
  const t = results.throughput;
  if (t) {
    out.push({ name: 'store: write throughput of logical input', measured: `${t.writeMBps.toFixed(0)} MB/s`, limit: '≥ 150 MB/s', pass: t.writeMBps >= 150 });
    const rss = Math.max(t.writeMaxRssMiB, t.tripleMaxRssMiB) * 2 ** 20;
    out.push({
      name: 'store: peak RSS writing 1x and 3x the dump',
      measured: `${(rss / 1e6).toFixed(1)} MB`,
      limit: '< 256 MB',
      pass: rss < 256e6,
    });
  }
  const g = results.generations;
  if (g) {
    out.push({ name: `store: --query-all with ${g.generations} generations`, measured: `${g.queryAllSeconds.toFixed(2)} s`, limit: '< 2 s', pass: g.queryAllSeconds < 2 });
    out.push({ name: `store: --gc with ${g.generations} generations`, measured: `${g.gcSeconds.toFixed(2)} s`, limit: '< 2 s', pass: g.gcSeconds < 2 });
  }
  return out;
}
