#!/usr/bin/env node
/**
 * `dysnomia-snapshots`: queries, checks, collects and moves the snapshots in the state dir, with
 * Dysnomia's options. The logic lives in src/snapshot-store; this file parses and prints.
 */
import { readFile, stat } from 'node:fs/promises';
import { Option } from 'commander';
import { OperationError, UsageError, messageOf } from '../core/errors.js';
import { debugFromEnv, type Logger, streamLogger } from '../core/log.js';
import { assertSafeName, nameFromPath } from '../core/resolve.js';
import { defaultStateDir } from '../core/state-dir.js';
import {
  listAndCheck,
  type CheckResult,
  collectGarbage,
  type ComponentFilter,
  exportSnapshot,
  type GcReport,
  importSnapshotFolder,
  importSnapshotStream,
  type ImportOutcome,
  listPoolPacks,
  printMissing,
  queryAll,
  queryLatest,
  resolvePaths,
  type RetentionPolicy,
} from '../snapshot-store/index.js';
import { parseWhole } from '../core/numbers.js';
import { exists } from '../snapshot-store/fs-util.js';
import { commonProgram, parseLockTimeout, quitOnInterrupt, parseCommandLine } from './common.js';
import { formatError, runProgram } from './run.js';

const PROGRAM = 'dysnomia-snapshots';

const OPERATIONS = ['queryLatest', 'queryAll', 'printMissing', 'resolve', 'gc', 'import', 'export', 'listPacks'] as const;

interface SnapshotsOptions {
  queryLatest?: boolean;
  queryAll?: boolean;
  printMissing?: boolean;
  resolve?: boolean;
  gc?: boolean;
  import?: boolean;
  export?: string;
  listPacks?: boolean;
  check?: boolean;
  container?: string;
  component?: string;
  keep?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  dryRun?: boolean;
  have?: string;
  base?: string;
  json?: boolean;
  quiet?: boolean;
  debug?: boolean;
  lockTimeout?: string;
}

function program() {
  return commonProgram(PROGRAM)
    .usage('[OPTION] OPERATION [PATH...]')
    .description(
      'Manages the store of snapshots: the generations of logical state of the mutable\n' +
        'components hosted in containers.',
    )
    .option('--query-latest', 'print the relative paths of the latest snapshots')
    .option('--query-all', 'print the relative paths of all snapshot generations')
    .option('--check', 'with --query-latest or --query-all: verify each snapshot completely')
    .option('--print-missing', 'print the given relative paths that are not in the store')
    .option('--resolve', 'print the absolute folders of the given relative paths')
    .option('--gc', 'remove old generations, the snapshots they alone used, and unused pool data')
    .option('--import', "import snapshot folders (PATH...: ours, Dysnomia's dumps, or any other folder, an external module's, copied as it is), or a stream made by --export (-)")
    .option('--export <path>', 'write a tar stream of the snapshot CONTAINER/COMPONENT/ID to stdout')
    .option('--list-packs', 'print the hashes of the packs in the pool (for --export --have)')
    .option('-C, --container <container>', 'name of (or path to) the container')
    .option('-c, --component <component>', 'name of (or path to) the component')
    .option('--keep <n>', 'with --gc: generations to keep per component (default: 1)')
    .option('--keep-daily <n>', 'with --gc: also keep the newest generation of each of the last N days')
    .option('--keep-weekly <n>', 'with --gc: also keep the newest generation of each of the last N weeks')
    .option('--keep-monthly <n>', 'with --gc: also keep the newest generation of each of the last N months')
    .option('--dry-run', 'with --gc: say what would be removed, remove nothing')
    .option('--have <file>', 'with --export: leave out the packs listed in FILE (from --list-packs on the receiver; - for stdin)')
    .option('--base <path>', 'with --export: leave out the packs of this snapshot, which the receiver has')
    .option('--json', 'print results as JSON on stdout')
    .addOption(new Option('--lock-timeout <seconds>', 'give up waiting for a lock after this many seconds'))
    .option('-q, --quiet', 'print only warnings and errors on stderr')
    .option('--debug', 'show stack traces and debug output (also DEBUG=dysnomia)')
    .addHelpText(
      'after',
      `
Environment:
  DYSNOMIA_STATEDIR  the state dir (default: /var/state/dysnomia as root, else ~/.dysnomia)

Moving a snapshot to another machine:
  dysnomia-snapshots --export C/c/ID | ssh host dysnomia-snapshots --import -
  ssh host dysnomia-snapshots --list-packs > have
  dysnomia-snapshots --export C/c/ID --have have | ssh host dysnomia-snapshots --import -
  A folder written by an external module is not exported: copy it and import it
  scp -r "$(dysnomia-snapshots --resolve C/c/ID)" host:/tmp/ && ssh host dysnomia-snapshots --import -C C -c c /tmp/ID

Exit status: 0 done, 1 an operation or check failed, 2 a usage error.`,
    );
}

/** A -C/-c argument as a name: a path gives its basename, Nix store hash stripped. */
function filterName(value: string | undefined, what: 'container' | 'component'): string | undefined {
  if (value === undefined) return undefined;
  if (value === '') throw new UsageError(`--${what} is empty`);
  return assertSafeName(nameFromPath(value), what);
}

function count(option: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const number = parseWhole(value);
  if (number === undefined) {
    const tooLarge = /^\d+$/.test(value);
    throw new UsageError(
      `${option} ${JSON.stringify(value)}: ${tooLarge ? `too large; at most ${Number.MAX_SAFE_INTEGER}` : 'expected a whole number of generations >= 0'}`,
    );
  }
  return number;
}

async function main(argv: string[]): Promise<number> {
  const command = program();
  parseCommandLine(command, argv);
  const options = command.opts<SnapshotsOptions>();
  const args = command.args;
  const chosen = OPERATIONS.filter((operation) => options[operation] !== undefined && options[operation] !== false);
  if (chosen.length === 0) throw new UsageError('no operation given (for example --query-all or --gc); see --help');
  if (chosen.length > 1) throw new UsageError(`give one operation at a time (got ${chosen.map(flagOf).join(' and ')})`);
  const operation = chosen[0]!;
  if (options.check && operation !== 'queryLatest' && operation !== 'queryAll') {
    throw new UsageError('--check goes with --query-latest or --query-all');
  }
  const gcOnly = ['keep', 'keepDaily', 'keepWeekly', 'keepMonthly', 'dryRun'] as const;
  for (const option of gcOnly) {
    if (options[option] !== undefined && operation !== 'gc') throw new UsageError(`${flagOf(option)} goes with --gc`);
  }
  if ((options.have !== undefined || options.base !== undefined) && operation !== 'export') {
    throw new UsageError(`${options.have !== undefined ? '--have' : '--base'} goes with --export`);
  }
  const takesPaths = operation === 'printMissing' || operation === 'resolve' || operation === 'import';
  if (!takesPaths && args.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(args[0])}; see --help`);
  const lockTimeoutMs = parseLockTimeout(options.lockTimeout);
  const log = streamLogger({ program: PROGRAM, debug: options.debug || debugFromEnv(), quiet: options.quiet });
  const stateDir = defaultStateDir();
  const filter: ComponentFilter = {
    container: filterName(options.container, 'container'),
    component: filterName(options.component, 'component'),
  };
  const print = (text: string) => process.stdout.write(text);
  const json = (value: unknown) => print(`${JSON.stringify(value, null, 2)}\n`);
  quitOnInterrupt(PROGRAM, options.check ? 'the check stopped before every snapshot was checked; nothing was changed' : INTERRUPTED[operation]);

  switch (operation) {
    case 'queryLatest':
    case 'queryAll': {
      const list = () => (operation === 'queryLatest' ? queryLatest(stateDir, filter) : queryAll(stateDir, filter));
      if (!options.check) {
        const entries = await list();
        if (options.json) json(entries);
        else for (const entry of entries) print(`${entry.path}\n`);
        return 0;
      }
      if (!(await exists(stateDir))) {
        // A mistyped DYSNOMIA_STATEDIR must not pass as a clean check in a cron job: there are no
        // snapshots where it looked, which is what a check is there to tell.
        throw new UsageError(`the state dir ${stateDir} does not exist, so it holds no snapshot to check; is DYSNOMIA_STATEDIR right?`);
      }
      const results = await listAndCheck(stateDir, list, { lockTimeoutMs, log });
      if (options.json) json(results);
      else for (const result of results) print(`${result.path}\n`);
      const failed = results.filter((result) => !result.ok);
      for (const result of failed) {
        const label = result.status === 'damaged' ? 'check failed' : 'could not check';
        for (const problem of result.problems) process.stderr.write(`${PROGRAM}: ${label}: ${problem}\n`);
      }
      log.info(checkSummary(results));
      return failed.length === 0 ? 0 : 1;
    }
    case 'printMissing': {
      const missing = await printMissing(stateDir, args);
      if (options.json) json(missing);
      else for (const rel of missing) print(`${rel}\n`);
      return 0;
    }
    case 'resolve': {
      const folders = await resolveExisting(stateDir, args);
      if (options.json) json(folders);
      else for (const folder of folders) print(`${folder}\n`);
      return 0;
    }
    case 'gc': {
      const report = await collectGarbage(stateDir, {
        ...filter,
        policy: gcPolicy(options),
        dryRun: options.dryRun,
        log,
        lockTimeoutMs,
      });
      if (options.json) json(report);
      summarizeGc(report, log);
      return 0;
    }
    case 'import': {
      if (args.length === 0) throw new UsageError('--import needs PATH... (snapshot folders) or - (a stream on stdin)');
      if (args.includes('-') && args.length > 1) throw new UsageError('--import - reads one stream from stdin; give no other paths with it');
      // Else it waits, silently, for a stream nobody will type.
      if (args.includes('-') && process.stdin.isTTY) {
        throw new UsageError('--import - reads a tar stream from stdin, which is a terminal: pipe the output of dysnomia-snapshots --export into it, or redirect a file');
      }
      const importOptions = { container: filter.container, component: filter.component, log, lockTimeoutMs };
      // Every path is looked at before anything is imported: a typo in the third path must not
      // leave the first two imported under an exit status that says nothing was done.
      for (const arg of args) {
        if (arg !== '-' && !(await stat(arg).then((info) => info.isDirectory(), () => false))) {
          throw new UsageError(`cannot import ${arg}: it is not a folder; nothing was imported`);
        }
      }
      // One failed import does not stop the others; each failure is said, and the status is 1.
      const outcomes: ImportOutcome[] = [];
      let failed = 0;
      for (const arg of args) {
        try {
          const outcome =
            arg === '-'
              ? await importSnapshotStream(stateDir, process.stdin, importOptions)
              : await importSnapshotFolder(stateDir, arg, importOptions);
          outcomes.push(outcome);
          log.info(describeImport(outcome));
        } catch (error) {
          if (args.length === 1) throw error;
          failed += 1;
          // Named, since the store's message may name only a pack.
          const text = messageOf(error);
          process.stderr.write(formatError(PROGRAM, text.includes(arg) ? error : new OperationError(`cannot import ${arg}: ${text}`, { cause: error }), options.debug || debugFromEnv()));
        }
      }
      if (options.json) json(outcomes);
      if (failed > 0) {
        log.warn(`imported ${outcomes.length} of ${args.length} snapshot folders; ${failed} failed (see above)`);
        return 1;
      }
      return 0;
    }
    case 'export': {
      if (process.stdout.isTTY) throw new UsageError('--export writes a tar stream: redirect stdout to a file or a pipe');
      const outcome = await exportSnapshot(stateDir, options.export!, process.stdout, {
        have: options.have === undefined ? undefined : await readPackList(options.have),
        base: options.base,
        log,
        lockTimeoutMs,
      });
      log.info(
        `exported ${outcome.path}: ${outcome.packsSent} pack${outcome.packsSent === 1 ? '' : 's'} sent, ${outcome.packsOmitted} left out (the receiver has them), ${formatBytes(outcome.bytesSent)}`,
      );
      return 0;
    }
    case 'listPacks': {
      const packs = await listPoolPacks(stateDir);
      if (options.json) json(packs);
      else for (const pack of packs) print(`${pack}\n`);
      return 0;
    }
  }
}

/** What an interrupted run of each operation leaves, said as it quits. */
const INTERRUPTED: Record<(typeof OPERATIONS)[number], string> = {
  queryLatest: 'nothing was changed',
  queryAll: 'nothing was changed',
  printMissing: 'nothing was changed',
  resolve: 'nothing was changed',
  listPacks: 'nothing was changed',
  // Said also of a run stopped while it still waited for the lock: nothing there claims work done.
  gc: 'the gc stopped: anything it had removed is gone, everything else is as it was; run it again to finish',
  import: 'the import stopped: what it had half-written is hidden, and the next run removes it; import again to finish (it adds only what is missing); snapshots imported before it stay',
  export: 'the export stopped: what it had sent is cut short, and an --import of it refuses it and changes nothing',
};

function flagOf(option: string): string {
  return `--${option.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`)}`;
}

/**
 * The retention policy of `--gc`. Time-based options replace `--keep`'s default of 1; but a policy
 * that keeps nothing (`--keep-daily 0` alone) removes every snapshot, which is only done when
 * asked for in so many words: `--keep 0`.
 */
function gcPolicy(options: SnapshotsOptions): RetentionPolicy {
  const timed: [string, number | undefined][] = [
    ['--keep-daily', count('--keep-daily', options.keepDaily)],
    ['--keep-weekly', count('--keep-weekly', options.keepWeekly)],
    ['--keep-monthly', count('--keep-monthly', options.keepMonthly)],
  ];
  const given = timed.filter(([, value]) => value !== undefined);
  let last = count('--keep', options.keep);
  if (last === undefined && given.length > 0) {
    if (given.every(([, value]) => value === 0)) {
      const said = given.map(([option]) => `${option} 0`).join(' ');
      throw new UsageError(`${said} keeps no generation at all, so --gc would remove every snapshot; to mean that, say --keep 0`);
    }
    last = 0;
  }
  return { last: last ?? 1, daily: timed[0]![1], weekly: timed[1]![1], monthly: timed[2]![1] };
}

/** `--resolve`: like Dysnomia, but a path that is not in the store is an error, not a guess. */
async function resolveExisting(stateDir: string, rels: string[]): Promise<string[]> {
  const folders = resolvePaths(stateDir, rels);
  const missing = await printMissing(stateDir, rels);
  if (missing.length > 0) {
    throw new UsageError(
      `no such snapshot in ${stateDir}: ${missing.join(', ')}; see --query-all for the snapshots it has (a folder that holds no complete snapshot counts as none)`,
    );
  }
  return folders;
}

async function readPackList(file: string): Promise<string[]> {
  let text: string;
  try {
    text = file === '-' ? await readStdin() : await readFile(file, 'utf8');
  } catch (error) {
    throw new UsageError(`--have ${file}: cannot read it: ${messageOf(error)}`);
  }
  const packs: string[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!/^[0-9a-f]{64}$/.test(line)) {
      throw new UsageError(`--have ${file}:${index + 1}: ${JSON.stringify(line)} is not a pack hash (64 hex digits, as --list-packs prints)`);
    }
    packs.push(line);
  });
  return packs;
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const part of process.stdin) parts.push(part as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

function describeImport(outcome: ImportOutcome): string {
  const where = outcome.newGeneration ? `generation ${outcome.generation}` : `already generation ${outcome.generation}`;
  if (!outcome.newSnapshot) return `${outcome.path}: the store has it already; ${where}`;
  const as = outcome.newGeneration ? `as generation ${outcome.generation}` : `(already generation ${outcome.generation})`;
  // Dysnomia's folders and modules' folders have no packs: their files are copied as they are.
  if (outcome.packsReceived + outcome.packsLinked === 0) return `imported ${outcome.path} ${as}: its files copied`;
  return `imported ${outcome.path} ${as}: ${outcome.packsReceived} pack${outcome.packsReceived === 1 ? '' : 's'} copied (${formatBytes(outcome.bytesReceived)}), ${outcome.packsLinked} already in the pool`;
}

function summarizeGc(report: GcReport, log: Logger): void {
  const verb = report.dryRun ? 'would remove' : 'removed';
  const parts = [
    plural(report.generationsRemoved.length, 'generation'),
    plural(report.snapshotsRemoved.length, 'snapshot'),
    plural(report.packsRemoved, 'pool pack'),
  ];
  if (report.tempsRemoved > 0) parts.push(plural(report.tempsRemoved, 'leftover of an interrupted write', 'leftovers of interrupted writes'));
  log.info(`gc${report.dryRun ? ' (dry run)' : ''}: ${verb} ${parts.join(', ')}; ${report.dryRun ? 'would free' : 'freed'} ${formatBytes(report.bytesFreed)}`);
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

runProgram(PROGRAM, main);

/** `checked 3 snapshots: all intact`, or how many are damaged and how many could not be checked. */
function checkSummary(results: CheckResult[]): string {
  const counted = `checked ${results.length} snapshot${results.length === 1 ? '' : 's'}`;
  const paths = (status: CheckResult['status']) => results.filter((r) => r.status === status).map((r) => r.path);
  const damaged = paths('damaged');
  const unchecked = paths('unchecked');
  if (damaged.length === 0 && unchecked.length === 0) return `${counted}: all intact`;
  const parts = [];
  if (damaged.length > 0) parts.push(`${damaged.length} damaged (${damaged.join(', ')})`);
  if (unchecked.length > 0) parts.push(`${unchecked.length} could not be checked (${unchecked.join(', ')})`);
  return `${counted}: ${parts.join('; ')}`;
}
