/** What the three programs share: commander set-up and option parsing helpers. */
import os from 'node:os';
import { Command } from 'commander';
import { UsageError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
import { parseDecimal } from '../core/numbers.js';
import { packageVersion } from './run.js';

/** A commander program with Dysnomia's -h/-v, usage errors turned into exit 2. */
export function commonProgram(name: string): Command {
  return new Command(name)
    .version(`${name} (dysnomia ${packageVersion()})`, '-v, --version', 'show the version')
    .helpOption('-h, --help', 'show this help')
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
 * Makes an option that takes a value a usage error when it is given twice. commander, like
 * Dysnomia's getopt loop, lets the last one win: `--keep 1 --keep 0` would remove every
 * generation, and `-C mysql -C pg` would activate a MySQL component in PostgreSQL.
 */
export function refuseRepeatedValues(command: Command): Command {
  for (const option of command.options) {
    if ((!option.required && !option.optional) || option.variadic) continue;
    let given = false;
    command.on(`option:${option.name()}`, () => {
      if (given) throw new UsageError(`${option.flags.split(/[ ,]+/).filter((f) => f.startsWith('-')).join('/')} is given twice; give it once`);
      given = true;
    });
  }
  return command;
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
