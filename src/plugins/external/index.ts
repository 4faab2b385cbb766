/**
 * `external`: runs an executable that speaks Dysnomia's module protocol, so every existing
 * Dysnomia module keeps working:
 *
 *   <module> <operation> <component path> <container name>
 *
 * with the container properties and DYSNOMIA_STATEDIR in its environment. With a container file
 * the environment is only those properties plus PATH (Dysnomia runs `env -i`); with --environment
 * it is the whole environment. Output is passed through; the exit status decides.
 */
import { fstatSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import { execa, type ResultPromise } from 'execa';
import { propertyString } from '../../core/container-file.js';
import { PluginError } from '../../core/errors.js';
import type { PassThroughPlugin, PluginContext } from '../../core/plugin.js';

/** The module's environment. Arrays are joined with spaces, as Dysnomia passes them. */
function moduleEnvironment(ctx: PluginContext<unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  // With --environment the properties are the caller's whole environment.
  for (const [key, value] of Object.entries(ctx.container.properties)) {
    if (key !== 'type') env[key] = propertyString(value) ?? '';
  }
  if (!ctx.container.fromEnvironment) env.PATH = process.env.PATH ?? '/usr/bin:/bin';
  env.DYSNOMIA_STATEDIR = ctx.stateDir;
  return env;
}

/** Quotes a word for bash. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** How long output still arriving after the module exited is waited for before the run ends. */
const PIPE_GRACE_MS = 200;

/**
 * Whether a child may be handed this process's file descriptor (a terminal or a file), as
 * Dysnomia's bash hands a module its own. Not a pipe or socket: whoever reads its other end
 * (`out=$(dysnomia ...)`, a deployer capturing the output) waits until every writer has closed
 * it, and a daemon the module leaves running would hold it open for as long as it runs.
 */
function inheritable(fd: 1 | 2): boolean {
  try {
    const stat = fstatSync(fd);
    return !stat.isFIFO() && !stat.isSocket();
  } catch {
    return false;
  }
}

/** What the run needs of execa's result. */
interface ModuleResult {
  isCanceled: boolean;
  signal?: string;
  exitCode?: number;
  cause?: unknown;
  originalMessage?: string;
}

/**
 * The module's end. execa resolves when the process has exited and its pipes have closed, but a
 * daemon the module started in the background (`some-server &`) inherits the pipes and holds
 * them open for as long as it runs. So once the module has exited, what is still in the pipes is
 * read for a moment, and then the run ends without waiting for the daemon. The pipes stay open
 * and passed on while this process lives (so a daemon writing to them is not killed by SIGPIPE
 * then), but no longer keep it alive.
 */
async function moduleEnd(subprocess: ResultPromise, signal: AbortSignal | undefined): Promise<ModuleResult> {
  const pipes = [subprocess.stdout, subprocess.stderr].filter((pipe) => pipe !== null);
  if (pipes.length === 0) return subprocess;
  const exited = new Promise<'exited'>((resolve) => subprocess.once('exit', () => resolve('exited')));
  const first = await Promise.race([subprocess, exited]);
  if (first !== 'exited') return first;
  const grace = new AbortController();
  const afterGrace = await Promise.race([
    subprocess,
    delay(PIPE_GRACE_MS, 'held' as const, { signal: grace.signal }),
  ]).finally(() => grace.abort());
  if (afterGrace !== 'held') return afterGrace;
  // A child's pipe is a net.Socket, which can be unref'd; execa types it as a plain Readable.
  for (const pipe of pipes) (pipe as Readable & { unref(): void }).unref();
  void subprocess.catch(() => undefined);
  return {
    isCanceled: signal?.aborted === true,
    signal: subprocess.signalCode ?? undefined,
    exitCode: subprocess.exitCode ?? undefined,
  };
}

/** A plugin that runs the executable at `modulePath` for every operation. */
export function externalPlugin(modulePath: string): PassThroughPlugin {
  const type = path.basename(modulePath);
  return {
    type,
    passThrough: true,
    modulePath,
    async run(ctx) {
      const what = `module ${modulePath} (${ctx.operation} of ${ctx.component.name})`;
      // Where it can, the module gets this process's own stdout and stderr, as Dysnomia's bash
      // hands them on: bytes pass unchanged, and a daemon the module starts keeps writing where
      // dysnomia's output goes. A pipe, or a caller's `print`, gets a pipe of its own.
      const subprocess = execa(modulePath, [ctx.operation, ctx.component.path, ctx.container.name], {
        env: moduleEnvironment(ctx),
        extendEnv: false,
        stdin: 'ignore',
        stdout: ctx.printFd === 1 && inheritable(1) ? 'inherit' : 'pipe',
        stderr: inheritable(2) ? 'inherit' : 'pipe',
        buffer: false,
        reject: false,
        cancelSignal: ctx.signal,
      });
      if (ctx.printFd === 1) {
        // Through a pipe to this process's stdout: the bytes as they are, UTF-8 or not.
        subprocess.stdout?.on('data', (data: Buffer) => process.stdout.write(data));
      } else {
        // Decode as a stream so a character split across two reads stays whole.
        subprocess.stdout?.setEncoding('utf8');
        subprocess.stdout?.on('data', (text: string) => ctx.print(text));
      }
      subprocess.stderr?.on('data', (data: Buffer) => process.stderr.write(data));
      const result = await moduleEnd(subprocess, ctx.signal);
      if (result.isCanceled) {
        throw new PluginError(`${what} was cancelled`, { plugin: type });
      }
      if (result.signal !== undefined) {
        throw new PluginError(`${what} was killed by ${result.signal}`, { plugin: type });
      }
      if (result.exitCode === undefined) {
        throw new PluginError(`cannot run ${what}; check its first line (#!) and that it is a program`, {
          plugin: type,
          cause: result.cause,
          stderr: result.originalMessage,
        });
      }
      if (result.exitCode !== 0) {
        throw new PluginError(
          `${what} failed with exit status ${result.exitCode} (its own messages, if any, are above)`,
          { plugin: type },
        );
      }
    },
    // Dysnomia sources the module with `shell` inside the session, so what it exports is there.
    async shell(ctx) {
      const args = ['shell', ctx.component.path, ctx.container.name].map(shellQuote).join(' ');
      return {
        help: [],
        module: modulePath,
        rc: `source ${shellQuote(modulePath)} ${args}\nset +e +o pipefail`,
      };
    },
  };
}
