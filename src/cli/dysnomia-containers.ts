#!/usr/bin/env node
/**
 * `dysnomia-containers`: queries and operations over every container and component of a machine,
 * with Dysnomia's options. A thin layer over the library (src/api).
 */
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import {
  type BatchOptions,
  type BatchResult,
  collectAllGarbage,
  deploy,
  restoreAll,
  runOnActivated,
  snapshotAll,
} from '../api/batch.js';
import { describeMachine, toDotGraph, toNixExpression } from '../api/machine.js';
import { listActivatedComponents, listAvailableComponents, listContainers, listGarbageComponents } from '../api/queries.js';
import { formatFailures, formatOutcomeTable, outcomesToJson } from '../api/report.js';
import { EXIT_FAILED, EXIT_OK, UsageError } from '../core/errors.js';
import { debugFromEnv, type Logger, silentLogger, streamLogger } from '../core/log.js';
import { isOperation, OPERATIONS } from '../core/plugin.js';
import { defaultStateDir } from '../core/state-dir.js';
import { cancelOnInterrupt, commonProgram, parseLockTimeout, parseCommandLine } from './common.js';
import { type ProgressLine, progressLine } from './progress.js';
import { runProgram } from './run.js';

const PROGRAM = 'dysnomia-containers';

interface ContainersOptions {
  queryContainers?: boolean;
  queryAvailableComponents?: boolean;
  queryActivatedComponents?: boolean;
  generateExpr?: boolean;
  generateDot?: boolean;
  operation?: string;
  deploy?: boolean;
  snapshot?: boolean;
  restore?: boolean;
  collectGarbage?: boolean;
  container?: string;
  yes?: boolean;
  json?: boolean;
  lockTimeout?: string;
  quiet?: boolean;
  debug?: boolean;
}

/** The action flags, in the order --help lists them. */
const ACTIONS = [
  ['queryContainers', '--query-containers'],
  ['queryAvailableComponents', '--query-available-components'],
  ['queryActivatedComponents', '--query-activated-components'],
  ['generateExpr', '--generate-expr'],
  ['generateDot', '--generate-dot'],
  ['operation', '--operation'],
  ['deploy', '--deploy'],
  ['snapshot', '--snapshot'],
  ['restore', '--restore'],
  ['collectGarbage', '--collect-garbage'],
] as const;

type Action = (typeof ACTIONS)[number][0];

function program(): Command {
  return commonProgram(PROGRAM)
    .usage('[OPTION] ACTION')
    .description('Queries and manages every mutable component deployed to the containers of this machine.')
    .option('--query-containers', 'list the container files in DYSNOMIA_CONTAINERS_PATH')
    .option('--query-available-components', 'list container/component for every component in the components tree')
    .option('--query-activated-components', 'list the components the state dir marks as activated')
    .option('--generate-expr', 'print a Nix expression of the machine properties and every container')
    .option('--generate-dot', 'print a Graphviz graph of the available components per container')
    .option('-o, --operation <operation>', 'run OPERATION on every activated component')
    .option('--deploy', 'activate every available component not activated yet; deactivate every activated one no longer available')
    .option('--snapshot', 'snapshot every activated component')
    .option('--restore', 'restore every activated component from its latest snapshot (asks first; -y confirms)')
    .option('--collect-garbage', 'remove every component marked as garbage from its container')
    .option('-C, --container <container>', 'only this container (by name)')
    .option('-y, --yes', 'confirm destructive actions (--restore) without asking')
    .option('--json', 'print queries, --generate-expr and action results as JSON on stdout')
    .option('--lock-timeout <seconds>', 'give up waiting for a lock after this many seconds')
    .option('-q, --quiet', 'print only warnings and errors on stderr')
    .option('--debug', 'show stack traces and debug output (also DEBUG=dysnomia)')
    .addHelpText(
      'after',
      `
Every action goes on past a failing component, prints a table of what happened to each
(component, result, snapshot, bytes stored, seconds) and lists every failure at the end.

Environment:
  DYSNOMIA_COMPONENTS_PATH  colon-separated component trees, <dir>/<container>/<component>
                            (default: /etc/dysnomia/components)
  DYSNOMIA_CONTAINERS_PATH  colon-separated folders of container files (default: /etc/dysnomia/containers)
  DYSNOMIA_PROPERTIES       machine properties for --generate-expr (default: /etc/dysnomia/properties)
  DYSNOMIA_STATEDIR         the state dir (default: /var/state/dysnomia as root, else ~/.dysnomia)

Exit status: 0 done, 1 at least one component failed, 2 a usage or configuration error.`,
    );
}

function chosenAction(options: ContainersOptions): Action {
  const given = ACTIONS.filter(([key]) => options[key] !== undefined && options[key] !== false);
  if (given.length === 0) {
    throw new UsageError(`no action given: use one of ${ACTIONS.map(([, flag]) => flag).join(', ')}; see --help`);
  }
  if (given.length > 1) {
    throw new UsageError(`give one action, not ${given.map(([, flag]) => flag).join(' and ')}`);
  }
  return given[0]![0];
}

function print(text: string): void {
  process.stdout.write(text);
}

function printJson(value: unknown): void {
  print(`${JSON.stringify(value, null, 2)}\n`);
}

async function main(argv: string[]): Promise<number> {
  const command = program();
  parseCommandLine(command, argv);
  const options = command.opts<ContainersOptions>();
  if (command.args.length > 0) {
    throw new UsageError(`unexpected argument ${JSON.stringify(command.args[0])}; see --help`);
  }
  const action = chosenAction(options);
  const lockTimeoutMs = parseLockTimeout(options.lockTimeout);
  const progress = progressLine({ program: PROGRAM });
  const log = streamLogger({
    program: PROGRAM,
    debug: options.debug || debugFromEnv(),
    quiet: options.quiet,
    write: (line) => progress.write(line),
  });
  const container = options.container;
  // A typo in -C would otherwise list nothing, or a machine without containers, in silence.
  // (After --query-containers and --generate-expr, which listed the container files and warned
  // about their stray entries, the check does not warn about those again.)
  const warnIfNoneFound = async (found: number, containersListed = false) => {
    if (container !== undefined && found === 0) await warnUnknownContainer(container, log, containersListed);
  };
  switch (action) {
    case 'queryContainers': {
      const containers = await listContainers({ container, log });
      if (options.json) printJson(containers);
      else for (const entry of containers) print(`${entry.name}\n`);
      await warnIfNoneFound(containers.length, true);
      return EXIT_OK;
    }
    case 'queryAvailableComponents': {
      const components = await listAvailableComponents({ container, log });
      if (options.json) printJson(components);
      else for (const c of components) print(`${c.container}/${c.component}\n`);
      await warnIfNoneFound(components.length);
      return EXIT_OK;
    }
    case 'queryActivatedComponents': {
      const components = await listActivatedComponents({ container });
      if (options.json) printJson(components);
      else for (const c of components) print(`${c.container}/${c.component}\n`);
      await warnIfNoneFound(components.length);
      return EXIT_OK;
    }
    case 'generateExpr': {
      const description = await describeMachine({ container, log });
      if (options.json) printJson(description);
      else print(toNixExpression(description));
      await warnIfNoneFound(Object.keys(description.containers).length, true);
      return EXIT_OK;
    }
    case 'generateDot': {
      const components = await listAvailableComponents({ container, log });
      print(toDotGraph(components));
      await warnIfNoneFound(components.length);
      return EXIT_OK;
    }
    default:
      break;
  }

  if (action === 'restore' && !options.yes && !(await confirmRestore())) {
    process.stderr.write(`${PROGRAM}: not restoring anything\n`);
    return EXIT_OK;
  }
  const interruption = cancelOnInterrupt(log);
  const batchOptions: BatchOptions = {
    container,
    stateDir: defaultStateDir(),
    log,
    lockTimeoutMs,
    signal: interruption.signal,
    onProgress: (event) => progress.update(event),
    print: (text) => progress.write(text),
    onOutcome: () => progress.clear(),
  };
  let result: BatchResult;
  try {
    result = await runAction(action, options.operation, batchOptions);
  } finally {
    progress.clear();
    interruption.dispose();
  }
  // A typo in -C would otherwise back up nothing with "nothing to do" and exit 0.
  if (container !== undefined && result.outcomes.length === 0) await warnUnknownContainer(container, log);
  return report(result, options, log, progress);
}

function runAction(action: Action, operation: string | undefined, options: BatchOptions): Promise<BatchResult> {
  switch (action) {
    case 'deploy':
      return deploy(options);
    case 'snapshot':
      return snapshotAll(options);
    case 'restore':
      return restoreAll(options);
    case 'collectGarbage':
      return collectAllGarbage(options);
    default: {
      const op = operation ?? '';
      if (!isOperation(op) || op === 'shell') {
        throw new UsageError(
          `unknown operation ${JSON.stringify(op)}; expected one of ${OPERATIONS.filter((o) => o !== 'shell').join(', ')}`,
        );
      }
      return runOnActivated(op, options);
    }
  }
}

/**
 * Warns when no container file has the name -C gives and the state dir marks no component of it:
 * every action found nothing for it, and a typo should not look like an empty machine.
 */
async function warnUnknownContainer(container: string, log: Logger, containersListed = false): Promise<void> {
  if (await containerKnown(container, containersListed ? silentLogger : log)) return;
  log.warn(`-C ${container}: there is no container file of that name in DYSNOMIA_CONTAINERS_PATH, and no component of it is activated; check the name (--query-containers lists them)`);
}

/** Whether a container file of that name exists, or the state dir marks a component of it. */
async function containerKnown(container: string, log: Logger): Promise<boolean> {
  if ((await listContainers({ container, log })).length > 0) return true;
  const marked = await Promise.all([listActivatedComponents({ container }), listGarbageComponents({ container })]).catch(() => [[], []]);
  return marked.some((keys) => keys.length > 0);
}

function report(result: BatchResult, options: ContainersOptions, log: Logger, progress: ProgressLine): number {
  if (options.json) {
    printJson({ outcomes: outcomesToJson(result.outcomes), failed: result.failures.length });
  } else if (result.outcomes.length === 0) {
    log.info('nothing to do: no matching components');
  } else {
    print(formatOutcomeTable(result.outcomes));
  }
  if (result.failures.length === 0) return EXIT_OK;
  // A failure's further lines (what was left as it was, a tool's own message) are indented below
  // it, so that in a cron mail they read as part of that item, not as a line of their own.
  const lines = formatFailures(result).map((l) => `  ${l.replaceAll('\n', '\n    ')}\n`);
  // A component cancelled by Ctrl-C, or never started after it, did not fail: counted as failed,
  // an interrupted nightly run read "3 of 3 components failed".
  const failed = result.failures.filter((o) => o.status === 'failed').length;
  const cancelled = result.failures.length - failed;
  const total = result.outcomes.length;
  const counts =
    cancelled === 0
      ? `${failed} of ${total} components failed`
      : failed === 0
        ? `${cancelled} of ${total} components cancelled (the run was interrupted)`
        : `${failed} of ${total} components failed, ${cancelled} cancelled (the run was interrupted)`;
  progress.write(`${PROGRAM}: ${counts}:\n${lines.join('')}`);
  return EXIT_FAILED;
}

/** Asks before restoring everything, as Dysnomia does; no answer at all (end of input) is a usage error. */
async function confirmRestore(): Promise<boolean> {
  process.stderr.write(
    'This restores the state of every activated component (of the given container) from its latest\n' +
      'snapshot, replacing what is there now. Only recent snapshots can undo it.\n' +
      'Are you sure you want to proceed? [n] ',
  );
  const reader = createInterface({ input: process.stdin });
  try {
    const answer = await new Promise<string | undefined>((resolve) => {
      reader.once('line', resolve);
      reader.once('close', () => resolve(undefined));
    });
    if (answer === undefined) {
      process.stderr.write('\n');
      throw new UsageError('--restore needs a confirmation; answer y, or pass -y in scripts');
    }
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    reader.close();
  }
}

runProgram(PROGRAM, main);
