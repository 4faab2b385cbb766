/**
 * The git-repository figures come from the git engineer's bench/git-bench.mjs (snapshot vs
 * `git bundle create --all` to /dev/null on a repository of incompressible blobs, alternating;
 * unchanged snapshot vs `node -e 0`); this runs it and takes the JSON it prints.
 */
import path from 'node:path';
import { ROOT } from './dysnomia.mjs';
import { run } from './process.mjs';

/** Runs bench/git-bench.mjs on a repository of `mib` MiB and returns its results. */
export async function gitFigures({ pairs, mib, log }) {
  log(`git: snapshot vs git bundle create --all on a ${mib} MiB repository (bench/git-bench.mjs)`);
  // It exits 1 when a target is missed and still prints its results, which is all we want here.
  const { stdout, stderr, exitCode } = await run(process.execPath, [path.join(ROOT, 'bench', 'git-bench.mjs'), '--pairs', String(pairs), '--mib', String(mib)], {
    stdout: 'capture',
    accept: [0, 1],
  });
  const start = stdout.indexOf('{');
  const end = stdout.lastIndexOf('\n}');
  if (start === -1 || end === -1) throw new Error(`bench/git-bench.mjs (exit ${exitCode}) printed no JSON results:\n${stdout}`);
  const results = JSON.parse(stdout.slice(start, end + 2));
  // The absolute times are in its progress lines only; without them the ratios still stand.
  for (const [key, label] of [['changed', 'pair'], ['nightly', 'nightly']]) {
    const times = [...stderr.matchAll(new RegExp(`^${label} \\d+: git bundle ([\\d.]+) s, dysnomia snapshot ([\\d.]+) s`, 'gm'))];
    if (results[key] && times.length > 0) {
      results[key].bundleSeconds = times.map((match) => Number(match[1]));
      results[key].snapshotSeconds = times.map((match) => Number(match[2]));
    }
  }
  return results;
}
