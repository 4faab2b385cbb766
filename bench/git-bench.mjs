#!/usr/bin/env node
/**
 * git-repository benchmark (issue 5), run after `npm run build`:
 *
 *   node bench/git-bench.mjs [--pairs N] [--mib SIZE] [--keep DIR]
 *
 * 1. Changed repository: on a bare repository of SIZE MiB (default 110) of incompressible blobs,
 *    `dysnomia --operation snapshot` (fresh state dir each time, so every byte is stored) against
 *    a bare `git bundle create - --all > /dev/null`, alternating A B A B; the median of the
 *    per-pair ratios must be at most 1.3.
 * 2. Unchanged repository: a second snapshot of the same refs must take under 0.3 s plus Node's
 *    start-up (`node -e 0`, measured in the same run).
 * 3. For information, the nightly case: one small new commit, the state dir holding the previous
 *    snapshot (the store deduplicates the unchanged chunks).
 *
 * `--keep DIR` builds the repository in DIR once and reuses it on later runs.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'dist', 'bin', 'dysnomia.js');

function option(name, fallback) {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : process.argv[index + 1];
}

const pairs = Number(option('--pairs', '3'));
const mib = Number(option('--mib', '110'));
const keep = option('--keep', undefined);

/** Runs a command to completion; stdout goes to `stdout` (a file descriptor or 'ignore'). */
function run(command, args, { cwd, env, stdout = 'ignore', input } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: [input ? 'pipe' : 'ignore', stdout, 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (data) => (stderr += data));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${command} ${args.join(' ')} exited ${code}: ${stderr}`))));
    if (input) {
      child.stdin.on('error', reject);
      input(child.stdin);
    }
  });
}

async function timed(fn) {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};

/** A bare repository of `mib` MiB: one commit per MiB, each adding a random (incompressible) blob. */
async function makeRepository(repo) {
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', repo]);
  await run('git', ['fast-import', '--quiet'], {
    cwd: repo,
    input: async (stdin) => {
      const write = (data) => (stdin.write(data) ? Promise.resolve() : new Promise((resolve) => stdin.once('drain', resolve)));
      for (let i = 1; i <= mib; i++) {
        const blob = randomBytes(1024 * 1024);
        const message = `commit ${i}`;
        await write(`commit refs/heads/main\ncommitter Bench <bench@example.com> ${1_700_000_000 + i} +0000\ndata ${message.length}\n${message}\n`);
        await write(`M 100644 inline blob-${i % 50}.bin\ndata ${blob.length}\n`);
        await write(blob);
        await write('\n');
        if (i % 10 === 0) await write(`reset refs/tags/t${i}\nfrom refs/heads/main\n\n`);
      }
      stdin.end();
    },
  });
}

async function main() {
  const dir = keep ?? (await mkdtemp(path.join(os.tmpdir(), 'dysnomia-git-bench-')));
  const baseDir = path.join(dir, 'repos');
  const repo = path.join(baseDir, 'bench');
  const component = path.join(dir, 'components', 'bench');
  const container = path.join(dir, 'git-bench-container');
  try {
    if (!existsSync(repo)) {
      process.stderr.write(`building a ${mib} MiB repository in ${repo} ...\n`);
      await mkdir(baseDir, { recursive: true });
      await makeRepository(repo);
    }
    await mkdir(component, { recursive: true });
    await writeFile(container, `type=git-repository\ngitBaseDir=${baseDir}\n`);

    const devNull = await open('/dev/null', 'w');
    const bundle = () => run('git', ['bundle', 'create', '--quiet', '-', '--all'], { cwd: repo, stdout: devNull.fd });
    const stateDir = path.join(dir, 'state');
    const snapshot = () => run(process.execPath, [cli, '--operation', 'snapshot', '--component', component, '--container', container, '--quiet'], {
      env: { DYSNOMIA_STATEDIR: stateDir },
    });

    // Warm the page cache so neither side pays for the first read.
    await bundle();
    const ratios = [];
    for (let pair = 0; pair < pairs; pair++) {
      const a = await timed(bundle);
      await rm(stateDir, { recursive: true, force: true });
      const b = await timed(snapshot);
      ratios.push(b / a);
      process.stderr.write(`pair ${pair + 1}: git bundle ${a.toFixed(3)} s, dysnomia snapshot ${b.toFixed(3)} s, ratio ${(b / a).toFixed(3)}\n`);
    }

    // The nightly case: the previous snapshot is in the store, one small commit is new.
    const nightly = [];
    for (let pair = 0; pair < pairs; pair++) {
      await run('sh', ['-c', 'c=$(echo "nightly $1" | git commit-tree -p main -m "nightly $1" main^{tree}) && git update-ref refs/heads/main "$c"', 'sh', String(Date.now())], {
        cwd: repo,
        env: { GIT_AUTHOR_NAME: 'Bench', GIT_AUTHOR_EMAIL: 'b@example.com', GIT_COMMITTER_NAME: 'Bench', GIT_COMMITTER_EMAIL: 'b@example.com' },
      });
      const a = await timed(bundle);
      const b = await timed(snapshot);
      nightly.push(b / a);
      process.stderr.write(`nightly ${pair + 1}: git bundle ${a.toFixed(3)} s, dysnomia snapshot ${b.toFixed(3)} s, ratio ${(b / a).toFixed(3)}\n`);
    }
    await devNull.close();

    const nodeStart = [];
    const unchanged = [];
    for (let i = 0; i < 5; i++) {
      nodeStart.push(await timed(() => run(process.execPath, ['-e', '0'])));
      unchanged.push(await timed(snapshot));
    }
    const changedRatio = median(ratios);
    const unchangedCost = median(unchanged) - median(nodeStart);
    const results = {
      repositoryMiB: mib,
      pairs,
      changed: { ratios: ratios.map((r) => Number(r.toFixed(3))), medianRatio: Number(changedRatio.toFixed(3)), limit: 1.3 },
      nightly: { ratios: nightly.map((r) => Number(r.toFixed(3))), medianRatio: Number(median(nightly).toFixed(3)) },
      unchanged: {
        snapshotSeconds: Number(median(unchanged).toFixed(3)),
        nodeStartSeconds: Number(median(nodeStart).toFixed(3)),
        beyondNodeStartSeconds: Number(unchangedCost.toFixed(3)),
        limit: 0.3,
      },
    };
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    const ok = changedRatio <= 1.3 && unchangedCost < 0.3;
    process.stdout.write(`git-repository: ${ok ? 'PASS' : 'FAIL'} (changed ${changedRatio.toFixed(2)}x bundle, limit 1.3x; unchanged ${unchangedCost.toFixed(3)} s beyond node start-up, limit 0.3 s)\n`);
    return ok ? 0 : 1;
  } finally {
    if (keep === undefined) await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`git-bench: ${error.stack ?? error}\n`);
    process.exitCode = 1;
  },
);
