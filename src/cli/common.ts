/** What the three programs share: commander set-up and option parsing helpers. */
import os from 'node:os';
import { Command, CommanderError, Option } from 'commander';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { parseDecimal } from '../core/numbers.js';
import { packageVersion } from '../core/version.js';

/**
 * A commander program with Dysnomia's -h/-v, usage errors turned into exit 2. Parse it with
 * {@link parseCommandLine}, which answers -h and -v.
 */
export function commonProgram(name: string): Command {
  // -h and -v are ordinary options, not commander's built-in help and version: commander leaves
  // its help option out when it splits a group of short flags, so `-hv`, `-hE` and `-ht x` were
  // unknown options while `-Eh` worked, and its version option quits the moment it is seen, so
  // `-h -v` printed the version where Dysnomia's getopt loop shows the usage.
  return new Command(name)
    .helpOption(false)
    .addOption(new Option('-v, --version', 'show the version'))
    .addOption(new Option('-h, --help', 'show this help'))
    .exitOverride()
    .configureOutput({
      writeErr: (text) => process.stderr.write(text.startsWith('error:') ? `${name}: ${text}` : text),
      outputError: (text, write) => write(text.endsWith('\n') ? text : `${text}\n`),
    })
    .showSuggestionAfterError(true)
    .showHelpAfterError(`(${name} --help shows the usage)`)
    .allowExcessArguments(true);
}

/**
 * Parses the command line of a program made by {@link commonProgram} as Dysnomia's getopt loop
 * does: an unknown option or a missing value is an error whatever else is given (getopt checks
 * the whole line first); then the first of -h and -v, in any group of short flags (`-hv`, `-qh`,
 * `-ht x`), prints the usage or the version and ends the run with exit 0, before any other check
 * (a CommanderError with exit code 0, which the top-level catch turns into exit 0).
 *
 * An option with a value given twice is then a usage error. commander, like Dysnomia's getopt
 * loop, lets the last one win: `--keep 1 --keep 0` would remove every generation, and
 * `-C mysql -C pg` would activate a MySQL component in PostgreSQL.
 */
export function parseCommandLine(command: Command, argv: string[]): void {
  let asked: 'help' | 'version' | undefined;
  command.on('option:help', () => (asked ??= 'help'));
  command.on('option:version', () => (asked ??= 'version'));
  let repeated: string | undefined;
  for (const option of command.options) {
    if ((!option.required && !option.optional) || option.variadic) continue;
    let given = false;
    command.on(`option:${option.name()}`, () => {
      if (given) repeated ??= option.flags.split(/[ ,]+/).filter((f) => f.startsWith('-')).join('/');
      given = true;
    });
  }
  command.parse(argv, { from: 'user' });
  if (asked === 'help') command.help();
  if (asked === 'version') {
    process.stdout.write(`${command.name()} (dysnomia ${packageVersion()})\n`);
    throw new CommanderError(0, 'commander.version', packageVersion());
  }
  if (repeated !== undefined) throw new UsageError(`${repeated} is given twice; give it once`);
}

/** `--lock-timeout SECONDS` in milliseconds; a bad value is a usage error naming it. */
export function parseLockTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = parseDecimal(value);
  if (seconds === undefined) {
    throw new UsageError(`--lock-timeout ${JSON.stringify(value)}: expected a number of seconds >= 0, as a plain decimal (10, 2.5)`);
  }
  return Math.round(seconds * 1000);
}

/**
 * The signals that stop a run: Ctrl-C, a service manager's SIGTERM, and SIGHUP (the terminal or
 * ssh session went away). Node sets SIGHUP back to its default at start-up, even under `nohup`,
 * so without a listener it killed the run in the middle, without a word; with one, the run stops
 * as cleanly as after Ctrl-C.
 */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** The exit status of a run that a signal stopped: 128 plus the signal's number, as a shell says. */
export function statusOf(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 0);
}

/** The signal a Ctrl-C, a SIGTERM or a SIGHUP fires, and the way to stop listening for them. */
export interface Interruption {
  signal: AbortSignal;
  dispose(): void;
}

/**
 * Turns the first SIGINT, SIGTERM or SIGHUP into a cancellation of the running operation, which
 * then stops cleanly and says in what state it left the component; a second one quits at once.
 * process.on, not once: a `once` listener is gone by the time it runs, and signal-exit (execa's
 * clean-up of subprocesses) re-raises a signal that has no listener but its own, which killed
 * the run at the first Ctrl-C with no message and a half-made database left behind.
 */
export function cancelOnInterrupt(log: Logger): Interruption {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      log.warn(`interrupted again: quitting at once`);
      process.exit(statusOf(signal));
    }
    log.warn('interrupted: cancelling the current operation (press Ctrl-C again to quit at once)');
    controller.abort(new Error('interrupted'));
  };
  for (const name of STOP_SIGNALS) process.on(name, onSignal);
  return {
    signal: controller.signal,
    dispose() {
      for (const name of STOP_SIGNALS) process.off(name, onSignal);
    },
  };
}

/**
 * For a program whose operations cannot be cancelled half-way (dysnomia-snapshots: the library
 * honours an abort signal only while it waits for a lock): the first SIGINT, SIGTERM or SIGHUP
 * says what state the run leaves and quits with the signal's status. Without a listener the
 * signal killed the run without a word, and its lock holder files stayed until the next run took
 * them over as stale; now the exit handler removes them. What a kill leaves half-written is
 * hidden, and the next run removes it.
 */
export function quitOnInterrupt(program: string, state: string): void {
  const onSignal = (signal: NodeJS.Signals) => {
    process.stderr.write(`${program}: interrupted: ${state}\n`);
    process.exit(statusOf(signal));
  };
  for (const name of STOP_SIGNALS) process.on(name, onSignal);
}
