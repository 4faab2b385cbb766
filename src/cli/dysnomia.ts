#!/usr/bin/env node
/**
 * `dysnomia`: runs one operation on one mutable component, with Dysnomia's options.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { propertyString } from '../core/container-file.js';
import { describeShell, type OperationRequest, runOperation } from '../core/dispatcher.js';
import { OperationError, UsageError } from '../core/errors.js';
import { debugFromEnv, streamLogger } from '../core/log.js';
import { isOperation, OPERATIONS } from '../core/plugin.js';
import { defaultStateDir } from '../core/state-dir.js';
import { resolveTarget } from '../core/target.js';
import { cancelOnInterrupt, commonProgram, parseLockTimeout, parseCommandLine, statusOf } from './common.js';
import { progressLine } from './progress.js';
import { runProgram } from './run.js';

const PROGRAM = 'dysnomia';

interface DysnomiaOptions {
  operation?: string;
  component?: string;
  container?: string;
  environment?: boolean;
  type?: string;
  shell?: boolean;
  command?: string;
  debug?: boolean;
  json?: boolean;
  quiet?: boolean;
  lockTimeout?: string;
}

function program(): Command {
  return commonProgram(PROGRAM)
    .usage(
      '--operation OPERATION --component COMPONENT --container CONTAINER\n' +
        `  or: ${PROGRAM} --operation OPERATION --component COMPONENT --type TYPE --environment\n` +
        `  or: ${PROGRAM} --shell --component COMPONENT --container CONTAINER\n` +
        `  or: ${PROGRAM} --shell --component COMPONENT --type TYPE --environment`,
    )
    .description(
      'Modifies the state of a container in which a mutable component is hosted: activates, ' +
        'deactivates, snapshots, restores and collects components such as databases and repositories.',
    )
    .option('-o, --operation <operation>', `the operation: ${OPERATIONS.join(', ')} (shell is --shell)`)
    .option('-c, --component <component>', 'name of (or path to) the component holding the logical state')
    .option('-C, --container <container>', 'name of (or path to) the container configuration file')
    .option('--shell', 'spawn a shell with the container properties as environment variables')
    .option('--command <command>', 'commands to run in the --shell session (then exit)')
    .option('-E, --environment', 'take the container properties from the environment (needs --type)')
    .option('-t, --type <type>', 'the plugin type, required with --environment')
    .addOption(new Option('--lock-timeout <seconds>', 'give up waiting for a lock after this many seconds'))
    .option('--json', 'print the result as JSON on stdout')
    .option('-q, --quiet', 'print only warnings and errors on stderr')
    .option('--debug', 'show stack traces and debug output (also DEBUG=dysnomia)')
    .addHelpText(
      'after',
      `
Environment:
  DYSNOMIA_COMPONENTS_PATH  colon-separated folders searched for a component given by name, as
                            <dir>/<container>/<component> (default: /etc/dysnomia/components)
  DYSNOMIA_CONTAINERS_PATH  colon-separated folders searched for a container given by name
                            (default: /etc/dysnomia/containers)
  DYSNOMIA_MODULES_PATH     colon-separated folders searched for external modules (executables
                            named after the type); they take precedence over built-in plugins
  DYSNOMIA_STATEDIR         the state dir (default: /var/state/dysnomia as root, else ~/.dysnomia)
  NIX_STORE_DIR             the Nix store, whose hashes are stripped from names (default: /nix/store)
  An empty variable counts as unset.

Exit status: 0 done, 1 the operation failed, 2 a usage or configuration error.`,
    );
}

async function main(argv: string[]): Promise<number> {
  const command = program();
  parseCommandLine(command, argv);
  const options = command.opts<DysnomiaOptions>();
  if (command.args.length > 0) {
    throw new UsageError(`unexpected argument ${JSON.stringify(command.args[0])}; see --help`);
  }
  if (options.shell && options.operation !== undefined && options.operation !== 'shell') {
    throw new UsageError(`--shell and --operation ${options.operation} given together: give one of them`);
  }
  const operation = options.shell ? 'shell' : options.operation;
  if (operation === undefined) throw new UsageError('no operation given: use --operation OPERATION or --shell; see --help');
  if (!isOperation(operation)) {
    throw new UsageError(
      `unknown operation ${JSON.stringify(operation)}; expected one of ${OPERATIONS.join(', ')}`,
    );
  }
  const lockTimeoutMs = parseLockTimeout(options.lockTimeout);
  const progress = progressLine({ program: PROGRAM });
  const log = streamLogger({
    program: PROGRAM,
    debug: options.debug || debugFromEnv(),
    quiet: options.quiet,
    write: (line) => progress.write(line),
  });
  if (options.command !== undefined && operation !== 'shell') {
    // Dysnomia keeps --command for a --shell session and ignores it otherwise; a script that
    // passes it along with every operation must keep working, but not without a word.
    log.warn(`--command is ignored: it runs only in a --shell session, and this is --operation ${operation}; the commands are not run`);
  }
  const target = await resolveTarget({
    container: options.container,
    component: options.component,
    environment: options.environment,
    type: options.type,
  });
  const request: OperationRequest = {
    operation,
    ...target,
    stateDir: defaultStateDir(),
    log,
    lockTimeoutMs,
    onProgress: (event) => progress.update(event),
    // With --json, stdout carries only the result; what plugins print goes to stderr.
    print: options.json ? (text) => process.stderr.write(text) : undefined,
  };
  if (operation === 'shell') return shell(request, options.command, options.quiet ?? false);
  // Ctrl-C or a service manager's SIGTERM cancels the operation cleanly: no staging database or
  // stale lock is left behind, and the message says in what state the component is.
  const interruption = cancelOnInterrupt(log);
  const result = await runOperation({ ...request, signal: interruption.signal }).finally(() => {
    progress.clear();
    interruption.dispose();
  });
  if (options.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  log.child(target.container.type).info(result.message);
  return 0;
}

/**
 * Starts bash with the container properties exported, as Dysnomia's --shell does: interactive,
 * or running `commands` and exiting with their status.
 */
async function shell(request: OperationRequest, commands: string | undefined, quiet: boolean): Promise<number> {
  const info = await describeShell(request);
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
  if (!request.container.fromEnvironment) {
    for (const [key, value] of Object.entries(request.container.properties)) {
      if (key !== 'type') env[key] = propertyString(value) ?? '';
    }
  }
  Object.assign(env, info.env ?? {}, {
    DYSNOMIA_STATEDIR: request.stateDir,
    this_dysnomia_module: info.module,
    this_component: request.component.path,
    this_container: request.container.file ?? request.container.name,
  });
  if (!quiet) {
    const help = [
      ...info.help,
      ...(info.help.length > 0 ? [''] : []),
      'General environment variables:',
      'this_dysnomia_module     the plugin (Dysnomia module) serving this container',
      'this_component           path to the mutable component',
      'this_container           path to the container configuration file',
    ];
    process.stderr.write(`${help.join('\n')}\n`);
  }
  // The script holds no property values (they are in the environment), only bash set-up.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-shell-'));
  try {
    const script = path.join(dir, 'rc');
    const lines =
      commands === undefined
        ? ['[ -e ~/.bashrc ] && . ~/.bashrc', 'PS1="\\n[dysnomia-shell:\\w]\\$ "', info.rc ?? '']
        : [info.rc ?? '', commands];
    await writeFile(script, `${lines.join('\n')}\n`, { mode: 0o600 });
    const args = commands === undefined ? ['--rcfile', script, '-i'] : [script];
    return await runShell(args, env, commands === undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Runs bash in the foreground; Ctrl-C belongs to the shell, not to us. A SIGTERM or SIGHUP sent to
 * us alone (a `kill` of our pid, a service manager) is passed on to bash, whose end we wait for:
 * dying first left bash running without us and its rc file in the temporary folder. An
 * interactive bash ignores SIGTERM, so it is given a SIGHUP instead (it ends on that, hanging up
 * its jobs), and the status is the one of the signal we were sent.
 */
function runShell(args: string[], env: Record<string, string>, interactive: boolean): Promise<number> {
  const ignore = () => {};
  let forward: (signal: NodeJS.Signals) => void = ignore;
  let received: NodeJS.Signals | undefined;
  process.on('SIGINT', ignore);
  process.on('SIGQUIT', ignore);
  const passOn = (signal: NodeJS.Signals) => forward(signal);
  process.on('SIGTERM', passOn);
  process.on('SIGHUP', passOn);
  return new Promise<number>((resolve, reject) => {
    const child = spawn('bash', args, { env, stdio: 'inherit' });
    forward = (signal) => {
      received = signal;
      child.kill(interactive && signal === 'SIGTERM' ? 'SIGHUP' : signal);
    };
    child.on('error', (error) => reject(new OperationError(`cannot start bash for the shell: ${error.message}`, { cause: error })));
    child.on('exit', (code, signal) => {
      const ended = signal !== null && received !== undefined ? received : signal;
      resolve(code ?? (ended ? statusOf(ended) : 128));
    });
  }).finally(() => {
    process.off('SIGINT', ignore);
    process.off('SIGQUIT', ignore);
    process.off('SIGTERM', passOn);
    process.off('SIGHUP', passOn);
  });
}

runProgram(PROGRAM, main);
