/** What the three programs share: commander set-up and option parsing helpers. */
import { Command } from 'commander';
import { UsageError } from '../core/errors.js';
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

/** `--lock-timeout SECONDS` in milliseconds; a bad value is a usage error naming it. */
export function parseLockTimeout(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const seconds = parseDecimal(value);
  if (seconds === undefined) {
    throw new UsageError(`--lock-timeout ${JSON.stringify(value)}: expected a number of seconds >= 0, as a plain decimal (10, 2.5)`);
  }
  return Math.round(seconds * 1000);
}
