/**
 * Running and timing commands for the benchmarks. Every run is a real child process; wall time is
 * taken in this process from spawn to exit, so Node's start-up counts for our CLI as it does for a
 * user. With `rss`, the command runs under `/usr/bin/time -v`, whose "Maximum resident set size"
 * is the peak of the largest process in the command's tree (the kernel's ru_maxrss).
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

const TIME = '/usr/bin/time';
/** No single command of the benchmark should take longer than this; a hang fails the run. */
const DEFAULT_TIMEOUT_SECONDS = 3600;

/** Process groups of the commands running now, ended by {@link killRunning}. */
const running = new Set();

/** Ends every command still running (each in its own process group), e.g. on Ctrl-C. */
export function killRunning() {
  for (const pid of running) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/**
 * Runs `command args` to completion and throws, with the tail of its stderr, unless it exits 0.
 *
 * - `stdout`: 'ignore' (/dev/null), 'capture' (returned as a string) or a file path to write;
 * - `stdin`: a file path to read from (as `tool < file`);
 * - `rss`: also measure the peak resident set size (KiB);
 * - `accept`: the exit codes that count as success (default only 0);
 * - `timeoutSeconds`: kill the command (its whole process group) after this long.
 *
 * Resolves to `{ seconds, stdout, stderr, exitCode, maxRssKiB }`.
 */
export async function run(
  command,
  args,
  { env, cwd, stdout = 'ignore', stdin, rss = false, accept = [0], timeoutSeconds = DEFAULT_TIMEOUT_SECONDS } = {},
) {
  let timeFile;
  let argv = [command, ...args];
  if (rss) {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-bench-time-'));
    timeFile = path.join(dir, 'time');
    argv = [TIME, '-v', '-o', timeFile, ...argv];
  }
  const outFd = typeof stdout === 'string' && stdout !== 'ignore' && stdout !== 'capture' ? openSync(stdout, 'w') : undefined;
  const inFd = stdin === undefined ? undefined : openSync(stdin, 'r');
  try {
    const started = performance.now();
    const captured = await new Promise((resolve, reject) => {
      const child = spawn(argv[0], argv.slice(1), {
        cwd,
        env: { ...process.env, ...env },
        stdio: [inFd ?? 'ignore', outFd ?? (stdout === 'capture' ? 'pipe' : 'ignore'), 'pipe'],
        detached: true,
      });
      running.add(child.pid);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        process.kill(-child.pid, 'SIGKILL');
      }, timeoutSeconds * 1000);
      const out = [];
      let err = '';
      child.stdout?.on('data', (data) => out.push(data));
      child.stderr.on('data', (data) => {
        err += data;
      });
      child.on('error', (error) => {
        clearTimeout(timer);
        running.delete(child.pid);
        reject(error);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        running.delete(child.pid);
        if (timedOut) reject(new Error(`${command} ${args.join(' ')} took longer than ${timeoutSeconds} s and was killed:\n${err.trim().slice(-4000)}`));
        else if (accept.includes(code)) resolve({ text: Buffer.concat(out).toString(), code, err });
        else reject(new Error(`${command} ${args.join(' ')} failed (${signal ?? `exit ${code}`}):\n${err.trim().slice(-4000)}`));
      });
    });
    const seconds = (performance.now() - started) / 1000;
    const result = { seconds, stdout: captured.text, stderr: captured.err, exitCode: captured.code };
    if (timeFile) result.maxRssKiB = parseMaxRss(await readFile(timeFile, 'utf8'));
    return result;
  } finally {
    if (outFd !== undefined) closeSync(outFd);
    if (inFd !== undefined) closeSync(inFd);
    if (timeFile) await rm(path.dirname(timeFile), { recursive: true, force: true });
  }
}

/** Runs a bash script with `set -o pipefail`; `params` become $1, $2, ... (no quoting games). */
export function bash(script, params = [], options = {}) {
  return run('bash', ['-o', 'pipefail', '-e', '-c', script, 'bench', ...params], options);
}

function parseMaxRss(text) {
  const match = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
  if (!match) throw new Error(`/usr/bin/time -v printed no maximum resident set size:\n${text}`);
  return Number(match[1]);
}

/** Whether a program is on PATH. */
export async function have(program) {
  try {
    await run('sh', ['-c', `command -v "$1" >/dev/null`, 'sh', program]);
    return true;
  } catch {
    return false;
  }
}

/** The first line a program prints for `--version`, or undefined. */
export async function versionOf(program, args = ['--version']) {
  try {
    const { stdout } = await run(program, args, { stdout: 'capture' });
    return stdout.split('\n')[0].trim();
  } catch {
    return undefined;
  }
}
