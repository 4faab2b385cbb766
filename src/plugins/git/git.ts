/**
 * Running git: simple-git for commands whose output is small, execa where bytes stream (a bundle
 * to the store, a tar of the hooks). Every failure becomes a PluginError carrying git's stderr.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { Transform, type TransformCallback, finished } from 'node:stream';
import { type SimpleGit, simpleGit } from 'simple-git';
import { AbortedError, PluginError, messageOf } from '../../core/errors.js';
import { PLUGIN_TYPE } from './options.js';

/**
 * The environment for git: ours without GIT_* variables, so a stray GIT_DIR or GIT_WORK_TREE in
 * the caller's shell can never redirect a command to another repository (simple-git strips them
 * the same way).
 */
export function gitEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith('GIT_')) env[key] = value;
  }
  return env;
}

/**
 * A mark, of its own per command, that every command started by git() and run() carries in its
 * environment, and hands down to whatever it starts. A cancel stops only the command itself
 * (simple-git and execa kill the one process they started), but `git fetch` runs
 * `git index-pack`, which goes on reading the bundle on its own for a while, in a folder the
 * failed restore has already removed. Once its parent is gone a helper no longer shows who started
 * it (its parent is then init); the mark still does. run() sets it as a variable; git() as a
 * config value (`-c dysnomia.mark=...`), which git passes to its helpers in GIT_CONFIG_PARAMETERS:
 * simple-git refuses an environment of our own that holds EDITOR, PAGER and the like.
 */
const MARK_KEY = 'dysnomia.mark';
const MARK_VARIABLE = 'DYSNOMIA_MARK';

function newMark(): string {
  return `dysnomia-${process.pid}-${randomBytes(8).toString('hex')}`;
}

/** The ids of the running processes, as /proc lists them (none where there is no /proc). */
export async function processIds(): Promise<string[]> {
  return (await readdir('/proc').catch(() => [] as string[])).filter((entry) => /^\d+$/.test(entry));
}

/** The processes that carry `mark`, zombies left out (they are gone, only not yet reaped). */
async function markedProcesses(mark: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await processIds()) {
    const environ = await readFile(`/proc/${entry}/environ`, 'latin1').catch(() => '');
    if (!environ.includes(mark)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'latin1').catch(() => '');
    // The state follows the command name in parentheses, which may itself hold any character.
    if (stat === '' || stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
    found.push(Number(entry));
  }
  return found;
}

/** How long a cancelled command's helpers get to stop on SIGTERM before they get SIGKILL. */
const STOP_MS = 5_000;

/**
 * Stops what is left of a cancelled command (git, and the helpers it started), and returns once
 * none is running: a cancelled operation may only report back when nothing it started goes on.
 * Read from /proc: elsewhere nothing is found, and the helpers end by themselves. A process that
 * even SIGKILL does not end (stuck in the kernel, on a hung NFS mount say) is given up on after
 * twice STOP_MS, rather than holding the cancel for ever.
 */
async function stopMarked(mark: string): Promise<void> {
  const started = Date.now();
  let signal: NodeJS.Signals = 'SIGTERM';
  for (let left = await markedProcesses(mark); left.length > 0; left = await markedProcesses(mark)) {
    if (Date.now() - started > 2 * STOP_MS) return;
    if (Date.now() - started > STOP_MS) signal = 'SIGKILL';
    for (const pid of left) {
      try {
        process.kill(pid, signal);
      } catch {
        // Gone meanwhile.
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Git refuses repositories owned by another user ("dubious ownership") unless told to trust them.
 * We run as root on repositories a `git` account owns, and only on the repositories the container
 * names: trusting them is the point, and the check protects people wandering into folders.
 */
export const TRUST = 'safe.directory=*';

/**
 * execa, loaded on first use: it costs more start-up time than the whole snapshot of an unchanged
 * repository, which needs only simple-git.
 */
const loadExeca = () => import('execa');

/**
 * simple-git takes a non-zero exit for success when git wrote nothing to stderr (`rev-parse
 * --quiet` says nothing), and reports only stderr (`git fsck` names missing objects on stdout).
 * For us any non-zero exit is a failure, reported with what git printed on both streams.
 */
function failureOf(error: Buffer | Error | undefined, result: { exitCode: number; stdOut: Buffer[]; stdErr: Buffer[] }) {
  if (error instanceof Error || result.exitCode === 0) return error;
  const said = Buffer.concat([...result.stdErr, ...result.stdOut]).toString('utf8').trim();
  return Buffer.from(`git exited with status ${result.exitCode}${said === '' ? '' : `: ${said}`}`);
}

function client(dir: string, signal: AbortSignal | undefined, pinned: boolean, mark: string): SimpleGit {
  return simpleGit({
    baseDir: dir,
    trimmed: false,
    config: [TRUST, `${MARK_KEY}=${mark}`],
    errors: failureOf,
    // --git-dir is one of the options simple-git holds back unless allowed; ours names our own folder.
    ...(pinned ? { unsafe: { allowUnsafeConfigPaths: true } } : {}),
    ...(signal ? { abort: signal } : {}),
  });
}

/**
 * Runs `git args...` in `dir` and returns stdout; `what` says what we were doing, for the error.
 * `pinned`: `dir` is the repository itself (`--git-dir`), so that one git does not recognise (a
 * damaged live repository) fails the command instead of letting git find a repository above it
 * (gitBaseDir inside an etckeeper /etc, say) and read that one.
 */
export async function git(dir: string, args: string[], what: string, signal?: AbortSignal, pinned = false): Promise<string> {
  const mark = newMark();
  try {
    return await client(dir, signal, pinned, mark).raw(pinned ? [`--git-dir=${dir}`, ...args] : args);
  } catch (error) {
    if (signal?.aborted) await stopMarked(mark);
    if (signal?.aborted) throw new AbortedError(`${what}: cancelled`, { plugin: PLUGIN_TYPE, cause: error });
    throw new PluginError(`${what} failed (git ${args.join(' ')})`, {
      plugin: PLUGIN_TYPE,
      stderr: error instanceof Error ? error.message : String(error),
      cause: error,
    });
  }
}

/** True when a command exits with status 0 (for questions such as `getent group NAME`). */
export async function succeeds(command: string, args: string[]): Promise<boolean> {
  const { execa } = await loadExeca();
  const result = await execa(command, args, { env: gitEnvironment(), extendEnv: false, stdin: 'ignore', reject: false });
  return result.exitCode === 0;
}

/** Runs a command (git, tar, chown ...) whose output does not matter; fails with its stderr. */
export async function run(
  command: string,
  args: string[],
  what: string,
  options: { cwd?: string; signal?: AbortSignal } = {},
): Promise<void> {
  const { execa } = await loadExeca();
  const mark = newMark();
  const result = await execa(command, args, {
    cwd: options.cwd,
    env: { ...gitEnvironment(), [MARK_VARIABLE]: mark },
    extendEnv: false,
    stdin: 'ignore',
    reject: false,
    cancelSignal: options.signal,
  });
  if (result.failed && options.signal?.aborted) await stopMarked(mark);
  if (result.failed) throw commandError(command, args, what, result, options.signal);
}

function commandError(
  command: string,
  args: string[],
  what: string,
  result: { stderr?: unknown; originalMessage?: string; isCanceled?: boolean; signal?: string; signalDescription?: string },
  signal?: AbortSignal,
): Error {
  if (result.isCanceled || signal?.aborted) {
    return new AbortedError(`${what}: cancelled`, { plugin: PLUGIN_TYPE });
  }
  // A command killed by a signal says nothing (cp past the file size limit gets SIGXFSZ).
  const killed = result.signal === undefined ? undefined : `killed by ${result.signal}${result.signalDescription ? ` (${result.signalDescription})` : ''}`;
  const stderr = typeof result.stderr === 'string' && result.stderr !== '' ? result.stderr : (result.originalMessage ?? killed);
  return new PluginError(`${what} failed (${command} ${args.join(' ')})`, { plugin: PLUGIN_TYPE, stderr });
}

/**
 * The standard output of a command as a stream that ends only once the command has succeeded, and
 * errors (with the command's stderr) if it fails, so a reader never mistakes a cut-off stream for a
 * complete one. A cancel fails it with AbortedError at once. `onChunk` sees every chunk on its way
 * through.
 */
export async function commandOutput(
  command: string,
  args: string[],
  what: string,
  options: { cwd?: string; signal?: AbortSignal; onChunk?: (chunk: Buffer) => void } = {},
): Promise<Transform> {
  const { execa } = await loadExeca();
  const { signal } = options;
  // In a process group of its own, killed as a group: `git bundle create` runs `git pack-objects`,
  // which writes to our pipe itself. Killing only git left pack-objects blocked on that pipe, its
  // stderr held open, and a cancelled snapshot that took seconds to fail and a process that never
  // exited.
  const subprocess = execa(command, args, {
    cwd: options.cwd,
    env: gitEnvironment(),
    extendEnv: false,
    stdin: 'ignore',
    buffer: { stdout: false, stderr: true },
    reject: false,
    detached: true,
  });
  let complete = false;
  // Also once git itself has exited: a pack-objects it started may still hold the pipe.
  const killGroup = () => {
    if (subprocess.pid === undefined || complete) return;
    try {
      process.kill(-subprocess.pid, 'SIGTERM');
    } catch {
      // Gone already.
    }
  };
  const exited = subprocess.then((result) => {
    if (result.failed) throw commandError(command, args, what, { ...result, isCanceled: signal?.aborted }, signal);
  });
  // Without this a failure seen only through the stream would also be an unhandled rejection.
  exited.catch(() => {});
  // Up to 16 MiB read ahead (8 MiB on each side of this stage): git writes its pack 8 KiB at a
  // time and blocks whenever our pipe is full, and the store stops reading while it waits for its
  // worker or the disk. With Node's defaults (16 KiB a side), git stood still each time: a
  // snapshot of the 110 MiB benchmark repository took 1.58-1.70 s, now 1.53-1.61 s (6
  // alternating pairs, docs/benchmarks.md). A failure of git still reaches the reader (flush),
  // once it has read what came before.
  const output = new Transform({
    readableHighWaterMark: 8 * 1024 * 1024,
    writableHighWaterMark: 8 * 1024 * 1024,
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      options.onChunk?.(chunk);
      callback(null, chunk);
    },
    flush(callback: TransformCallback) {
      exited.then(
        () => {
          complete = true;
          callback();
        },
        (error: Error) => callback(error),
      );
    },
    destroy(error, callback) {
      killGroup();
      subprocess.stdout.destroy();
      callback(error);
    },
  });
  // The one way to stop: the output fails, and its destroy stops the group. A cancel stops the
  // reader where it is, even one waiting for the next chunk.
  const cancelled = (cause: unknown) => new AbortedError(`${what}: cancelled`, { plugin: PLUGIN_TYPE, cause });
  const cancel = () => output.destroy(cancelled(signal?.reason));
  signal?.addEventListener('abort', cancel, { once: true });
  output.once('close', () => signal?.removeEventListener('abort', cancel));
  // pipe() passes on only an end: a stdout that failed or was destroyed before its end must fail
  // the output too, or its reader (the store) waits for ever.
  finished(subprocess.stdout, (error) => {
    if (!error || output.destroyed) return;
    output.destroy(
      signal?.aborted
        ? cancelled(error)
        : new PluginError(`${what}: reading the output of ${command} failed`, { plugin: PLUGIN_TYPE, stderr: messageOf(error), cause: error }),
    );
  });
  // A reader gets the failure through its own listener; this one only keeps a stream that was
  // never read (its snapshot failed or was cancelled first) from making it an uncaught error.
  output.on('error', () => {});
  subprocess.stdout.pipe(output);
  // Fired before the listener was added (while execa loaded, say): it never runs then.
  if (signal?.aborted) cancel();
  // A command that fails before writing anything still ends its stdout; flush reports the failure.
  return output;
}
