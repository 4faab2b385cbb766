/**
 * The one top-level catch shared by the programs: maps errors to messages and exit codes.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { CommanderError } from 'commander';
import { DysnomiaError, EXIT_FAILED, EXIT_USAGE } from '../core/errors.js';
import { debugFromEnv } from '../core/log.js';

/** True when the arguments or DEBUG ask for stack traces. */
export function wantsDebug(argv: readonly string[]): boolean {
  return argv.includes('--debug') || debugFromEnv();
}

/** Formats an error as the user sees it: `program: [plugin] message`, and causes with --debug. */
export function formatError(program: string, error: unknown, debug: boolean): string {
  const plugin = error instanceof DysnomiaError && error.plugin ? `[${error.plugin}] ` : '';
  const refused = refusedAccess(error);
  const message = refused ?? (error instanceof Error ? error.message : String(error));
  let text = `${program}: ${plugin}${message}\n`;
  if (!(error instanceof DysnomiaError) && refused === undefined) {
    text += debug
      ? ''
      : `${program}: this is an unexpected error; run again with --debug (or DEBUG=dysnomia) for the stack trace\n`;
  }
  if (debug && error instanceof Error) {
    text += `${error.stack ?? ''}\n`;
    let cause = (error as { cause?: unknown }).cause;
    while (cause !== undefined) {
      text += `caused by: ${cause instanceof Error ? (cause.stack ?? cause.message) : String(cause)}\n`;
      cause = cause instanceof Error ? (cause as { cause?: unknown }).cause : undefined;
    }
  }
  return text;
}

const VERBS: Record<string, string> = {
  scandir: 'list the folder',
  opendir: 'list the folder',
  open: 'open',
  stat: 'look at',
  lstat: 'look at',
  mkdir: 'create the folder',
  rename: 'rename',
  unlink: 'remove',
  rmdir: 'remove',
  rm: 'remove',
  chmod: 'change the mode of',
  chown: 'change the owner of',
  symlink: 'create the link',
  link: 'create the link',
};

/**
 * The message for a file the system refused to us (a permission, a read-only file system) that no
 * caller put into words: a state dir made under `umask 077` and read by a group member, say.
 * That is the machine's set-up, not a bug, so it names the file, its owner and mode, and who
 * asked, instead of calling the error unexpected. Undefined for anything else.
 */
function refusedAccess(error: unknown): string | undefined {
  if (error instanceof DysnomiaError || !(error instanceof Error)) return undefined;
  const { code, syscall, path: file } = error as NodeJS.ErrnoException;
  if (file === undefined || (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS')) return undefined;
  const what = `cannot ${VERBS[syscall ?? ''] ?? syscall ?? 'use'} ${file}`;
  if (code === 'EROFS') return `${what}: it is on a read-only file system`;
  const user = process.getuid === undefined ? '' : `, and this runs as uid ${process.getuid()}`;
  return `${what}: ${code === 'EPERM' ? 'operation not permitted' : 'permission denied'}${ownerOf(file)}${user}; run as a user who may, or change the permissions`;
}

/**
 * The owner and mode of `file`, or of the nearest folder above it that we may look at: when a
 * folder above refuses us, that folder is the one whose permissions matter.
 */
function ownerOf(file: string): string {
  for (let at = file; ; at = path.dirname(at)) {
    try {
      const info = statSync(at); // only on the way to an error
      const mode = (info.mode & 0o7777).toString(8).padStart(4, '0');
      return ` (${at === file ? 'it' : at} belongs to uid ${info.uid}, gid ${info.gid}, mode ${mode})`;
    } catch {
      if (at === path.dirname(at)) return '';
    }
  }
}

/** The exit code for an error. */
export function exitCodeOf(error: unknown): number {
  if (error instanceof DysnomiaError) return error.exitCode;
  if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : EXIT_USAGE;
  return EXIT_FAILED;
}

/**
 * Runs a program's main function and exits with its code. Every error, expected or not, ends up
 * here: a message on stderr, no stack trace unless --debug.
 */
export function runProgram(program: string, main: (argv: string[]) => Promise<number>): void {
  const argv = process.argv.slice(2);
  const debug = wantsDebug(argv);
  // A reader that went away (`dysnomia ... | head -1`) must not abort an operation half-way. Nor
  // must a full disk or any other failure to write the output: it is said once, the operation
  // finishes (an export sees the error itself and stops), and the exit status is 1.
  let outputFailed = false;
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE' || outputFailed) return;
    outputFailed = true;
    process.stderr.write(`${program}: cannot write to standard output: ${error.message}\n`);
    // The last write may fail after main has finished.
    if (!process.exitCode) process.exitCode = 1;
  });
  // Nor a log reader that went away (`2>&1 | head`, a logger that died): with no listener the
  // first progress line after it killed the run, and a nightly --snapshot saved one component of
  // many. There is nowhere left to say it, so the run goes on and only the exit status speaks.
  process.stderr.on('error', () => {});
  // Node ignores SIGXFSZ, so that a write past the file size limit (ulimit -f) fails with EFBIG
  // and is reported. execa's signal-exit listens for it while a tool runs, and raises it again
  // when its listener is the only one: a database snapshot was killed by it without a word.
  process.on('SIGXFSZ', () => {});
  main(argv).then(
    (code) => {
      process.exitCode = outputFailed && code === 0 ? 1 : code;
    },
    (error: unknown) => {
      if (error instanceof CommanderError) {
        // commander has printed its own message already (help, version or a usage error).
        process.exitCode = exitCodeOf(error);
        return;
      }
      process.stderr.write(formatError(program, error, debug));
      process.exitCode = exitCodeOf(error);
    },
  );
}
