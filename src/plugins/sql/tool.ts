/**
 * Running the vendors' command-line tools (mysqldump, mysql, pg_dump, psql) for the SQL plugins:
 * a dump's output goes to the snapshot store with back-pressure, a load reads a snapshot stream,
 * and every failure becomes a PluginError carrying the tool's own words. Secrets never appear in
 * the arguments; callers pass them in the environment or in a private option file.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { PassThrough, type Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { execa, type Result } from 'execa';
import { AbortedError, DysnomiaError, PluginError, messageOf } from '../../core/errors.js';
import { FilterTransform, type PieceFilter } from './piece-filter.js';
import { ToolOutput } from './tool-output.js';

/** How to run a tool. */
export interface ToolOptions {
  plugin: string;
  /** Extra environment for the tool (on top of ours). */
  env?: Record<string, string>;
  /** Run as this OS user (PostgreSQL peer authentication); needs root. */
  uid?: number;
  gid?: number;
  signal?: AbortSignal;
  /** Detail for --debug (the plugin's Logger.debug). */
  debug?: (message: string) => void;
}

/**
 * The first of `names` found on PATH, or undefined. Synchronous: a few access() calls, and
 * withStdbuf must not wait (see there).
 */
function firstOnPath(names: readonly string[]): string | undefined {
  for (const name of names) {
    for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
      if (dir === '') continue;
      const candidate = path.join(dir, name);
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

/** The first of `names` found on PATH, or undefined. */
export async function findTool(names: readonly string[]): Promise<string | undefined> {
  return firstOnPath(names);
}

function spawnOptions(options: ToolOptions) {
  return {
    env: options.env,
    uid: options.uid,
    gid: options.gid,
    // A tool run as another user may not be allowed into our working directory.
    cwd: options.uid === undefined ? undefined : '/',
    cancelSignal: options.signal,
    reject: false,
    stripFinalNewline: false,
    maxBuffer: { stderr: 16 * 1024 * 1024 },
  } as const;
}

/**
 * Throws the right error for a finished tool run, or returns when it succeeded. `viaStdbuf`: the
 * tool ran under stdbuf, which exits 125 when it fails itself and 126 or 127 when it cannot start
 * the tool (the tools we run never exit with those).
 */
function check(result: Result, command: string, what: string, options: ToolOptions, viaStdbuf = false): void {
  if (result.isCanceled) throw new AbortedError(`${what} cancelled`, { plugin: options.plugin });
  if (result.exitCode === 0) return;
  const tool = path.basename(command);
  if (viaStdbuf && (result.exitCode === 125 || result.exitCode === 126 || result.exitCode === 127)) {
    throw new PluginError(`${what}: cannot run ${tool}`, { plugin: options.plugin, stderr: String(result.stderr ?? '') });
  }
  if (result.code === 'ENOENT' || (result.exitCode === undefined && result.signal === undefined)) {
    throw new PluginError(`${what}: cannot run ${tool} (${result.originalMessage ?? result.code ?? 'unknown error'})`, {
      plugin: options.plugin,
      cause: result.cause,
    });
  }
  const status = result.signal ? `killed by ${result.signal}` : `exit status ${result.exitCode}`;
  throw new PluginError(`${what}: ${tool} failed (${status})`, {
    plugin: options.plugin,
    stderr: String(result.stderr ?? ''),
  });
}

/** Runs a tool to completion with optional input; returns its standard output. */
export async function runTool(
  command: string,
  args: string[],
  what: string,
  options: ToolOptions & { input?: string | Buffer },
): Promise<string> {
  const result = await execa(command, args, { ...spawnOptions(options), input: options.input });
  check(result, command, what, options);
  return String(result.stdout ?? '');
}

const toolOutputs = new Map<string, Promise<string>>();

/**
 * The output of a question a tool answers the same for the life of this process (`--help`,
 * `--version`), asked once. Not cancellable, and a failure is not remembered: one cancelled
 * operation must not decide for the next ones in this process.
 */
export function toolOutput(tool: string, args: string[], what: string, options: ToolOptions): Promise<string> {
  const key = JSON.stringify([tool, ...args]);
  let output = toolOutputs.get(key);
  if (output === undefined) {
    output = runTool(tool, args, what, { ...options, signal: undefined });
    toolOutputs.set(key, output);
    output.catch(() => toolOutputs.delete(key));
  }
  return output;
}

/** coreutils' stdbuf, looked up once: undefined before, null where it is not installed. */
let stdbuf: string | null | undefined;

/**
 * The command line that runs `command` under coreutils' stdbuf with a 1 MiB buffer on standard
 * output (`-o1M`) or input (`-i1M`), or the command itself where stdbuf is not installed. C stdio
 * uses 4 KiB buffers on a pipe: a tool writing its output through it makes a system call, and
 * wakes its reader, every 4 KiB, and one reading its input through it makes a read (and waits for
 * its writer) every 4 KiB. stdbuf execs the tool, so its exit status and signals are the tool's
 * own (check() tells stdbuf's own failures apart).
 *
 * Synchronous (a few access() calls, once per process): loadWith must pipe its input before it
 * waits for anything, or a file stream that fails to open would emit its error to nobody.
 */
function withStdbuf(stream: '-o1M' | '-i1M', command: string, args: string[]): { file: string; args: string[]; viaStdbuf: boolean } {
  if (stdbuf === undefined) stdbuf = firstOnPath(['stdbuf']) ?? null;
  return stdbuf === null ? { file: command, args, viaStdbuf: false } : { file: stdbuf, args: [stream, command, ...args], viaStdbuf: true };
}

/**
 * Runs a dump tool (with `input` on its standard input, if given) and hands its standard output
 * to `consume` (the store), which reads it with back-pressure. Throws when the tool failed, even
 * though `consume` already took the (truncated) stream: the caller's snapshot must then be
 * discarded.
 *
 * mysqldump and pg_dump write through C stdio; under stdbuf -o1M (withStdbuf) they write 1 MiB at
 * a time, which saves about half a CPU-second per 300 MB of dump on the benchmark
 * (docs/benchmarks.md). `transforms` see the output before `consume` does.
 */
export async function dumpWith(
  command: string,
  args: string[],
  what: string,
  consume: (output: Readable) => Promise<void>,
  options: ToolOptions & { input?: string },
  transforms: Transform[] = [],
): Promise<void> {
  const run = withStdbuf('-o1M', command, args);
  const subprocess = execa(run.file, run.args, {
    ...spawnOptions(options),
    ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
    buffer: { stdout: false, stderr: true },
  });
  // execa resumes an unbuffered stdout that nobody reads by the next tick, dropping its data; a
  // consumer that first does some I/O (the store opens its files) would get a truncated dump.
  // Piping at once keeps every byte, with back-pressure.
  const output = new PassThrough({ highWaterMark: 1024 * 1024 });
  // `transforms` work on the output on its way (a filter, a meter), in this same pipeline.
  const piping = pipeline([subprocess.stdout, ...transforms, output]).catch((error: unknown) => error);
  try {
    await consume(output);
  } catch (error) {
    output.destroy(); // so that the pipeline settles, whether or not the consumer began to read
    subprocess.kill();
    await subprocess;
    // A filter that failed: said as a failure to read the output, as dumpPieces says it. Not an
    // echo of the consumer's end being destroyed (the store gave up): the caller finds its cause.
    if (error === (await piping) && !(error instanceof DysnomiaError) && !isStreamEcho(error)) {
      throw readFailure(what, path.basename(command), error, options);
    }
    throw error;
  }
  const [result, pipeError] = await Promise.all([subprocess, piping]);
  check(result, command, what, options, run.viaStdbuf);
  if (pipeError !== undefined) throw readFailure(what, path.basename(command), pipeError, options);
}

/** An error a stream raises because the other end was destroyed: it has no cause of its own. */
export function isStreamEcho(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ABORT_ERR' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED';
}

/**
 * A dump whose output could not be read (the pipe or socket, or a filter on it). Without the
 * tool's words: once we stop reading, they only tell of that (a broken pipe).
 */
function readFailure(what: string, tool: string, error: unknown, options: ToolOptions): PluginError {
  return new PluginError(`${what}: reading the output of ${tool} failed: ${messageOf(error)}`, { plugin: options.plugin, cause: error });
}

/**
 * Runs a dump tool (with `input` on its standard input, if given) and hands its standard output,
 * through `filters`, to `consume` (the store) as borrowed pieces: each is valid until the next is
 * asked for (tool-output.ts). This reads the output into a few reused buffers, which on the
 * benchmark VM saves about a fifth of the bare dump's time over reading it as a stream. Throws
 * when the tool failed, even though `consume` already took the (truncated) output: the caller's
 * snapshot must then be discarded.
 *
 * Where the output socket cannot be made (no writable temporary folder, a TMPDIR too long for a
 * socket's address), the output is read as a stream instead (dumpWith), with the same filters.
 */
export async function dumpPieces(
  command: string,
  args: string[],
  what: string,
  consume: (pieces: AsyncIterable<Buffer>) => Promise<void>,
  options: ToolOptions & { input?: string },
  filters: PieceFilter[] = [],
): Promise<void> {
  let output: ToolOutput;
  try {
    output = await ToolOutput.open(filters);
  } catch (error) {
    options.debug?.(`${what}: reading ${path.basename(command)}'s output from a pipe: ${messageOf(error)}`);
    await dumpWith(command, args, what, consume, options, filters.map((filter) => new FilterTransform(filter)));
    return;
  }
  const run = withStdbuf('-o1M', command, args);
  let subprocess;
  try {
    subprocess = execa(run.file, run.args, {
      ...spawnOptions(options),
      ...(options.input === undefined ? { stdin: 'ignore' as const } : { input: options.input }),
      stdout: output.theirs,
      buffer: { stdout: false, stderr: true },
    });
  } catch (error) {
    output.destroy();
    throw error;
  }
  // Our copy of the tool's end is closed once the tool has exited, and the output then ends with
  // the tool's own copy. Not before: execa watches the stream it was given, and takes its closing
  // for a failure of the tool's output, which would hide a cancellation.
  const exited = subprocess.finally(() => output.handedOver());
  const tool = path.basename(command);
  try {
    await consume(output);
  } catch (error) {
    output.destroy();
    subprocess.kill();
    await exited;
    // The consumer's own error (the store's) as it is; a failure to read the output (the socket,
    // a filter) said as that. The tool's status says nothing then: we stopped reading first.
    if (error !== output.readError) throw error;
    throw readFailure(what, tool, error, options);
  }
  if (!output.complete) {
    // The consumer stopped before the end without an error: whatever the tool says, the dump is
    // not whole. Stop the tool (it may be busy without writing: waiting for a lock, sorting).
    output.destroy();
    subprocess.kill();
    await exited;
    // Not result.isCanceled: our closing of the tool's end may reach execa before the cancel does.
    // Nor the tool's words: once we stop reading, they only tell of that (a broken pipe).
    if (options.signal?.aborted) throw new AbortedError(`${what} cancelled`, { plugin: options.plugin });
    throw new PluginError(`${what}: the output of ${tool} was not read to its end`, { plugin: options.plugin });
  }
  check(await exited, command, what, options, run.viaStdbuf);
}

/**
 * Pipes `input`, through `transforms`, into a load tool. If the input fails (a corrupted chunk
 * raises an IntegrityError) the tool is killed and the input's error is thrown, so a partial load
 * never looks complete.
 *
 * `bufferedInput`: the tool reads its input through C stdio (psql does; mysql reads with read()
 * itself, which stdbuf cannot change), so it runs under stdbuf -i1M (withStdbuf). Otherwise psql
 * reads our pipe 4 KiB at a time and waits for us between reads: on the benchmark dump, a psql
 * load from a pipe took about 1.0 CPU-second and 86,000 context switches in the reading and the
 * writing process, and about 0.5 and 10,000 under stdbuf (docs/benchmarks.md).
 *
 * `input` is piped before anything is awaited, so an error it emits early (a file that cannot be
 * opened) is this load's error.
 */
export async function loadWith(
  command: string,
  args: string[],
  what: string,
  input: Readable,
  options: ToolOptions & { bufferedInput?: boolean },
  transforms: Transform[] = [],
): Promise<void> {
  const run = options.bufferedInput === true ? withStdbuf('-i1M', command, args) : { file: command, args, viaStdbuf: false };
  const subprocess = execa(run.file, run.args, {
    ...spawnOptions(options),
    stdin: 'pipe',
    stdout: 'ignore',
    buffer: { stderr: true },
  });
  let inputError: unknown;
  try {
    await pipeline([input, ...transforms, subprocess.stdin]);
  } catch (error) {
    inputError = error;
  }
  // The tool went away first: EPIPE when a write met its closed input, a premature close when
  // it exited between writes (the server ended its session, say). Its own exit status and
  // message say why; anything else came from our side (a damaged snapshot, a cancel).
  const code = (inputError as NodeJS.ErrnoException | undefined)?.code;
  const brokenPipe = code === 'EPIPE' || code === 'ERR_STREAM_PREMATURE_CLOSE';
  if (inputError !== undefined && !brokenPipe) {
    subprocess.kill('SIGKILL');
    await subprocess;
    if (inputError instanceof DysnomiaError) throw inputError;
    if (options.signal?.aborted) throw new AbortedError(`${what} cancelled`, { plugin: options.plugin });
    throw new PluginError(`${what}: ${messageOf(inputError)}`, { plugin: options.plugin, cause: inputError });
  }
  const result = await subprocess;
  check(result, command, what, options, run.viaStdbuf);
  if (brokenPipe) {
    throw new PluginError(`${what}: the tool stopped reading its input before the end`, {
      plugin: options.plugin,
      stderr: String(result.stderr ?? ''),
    });
  }
}
