/**
 * The few error classes of dysnomia. Each carries what the user needs to act on it; one catch per
 * program (src/cli/run.ts) turns them into a message and an exit code.
 *
 * Exit codes: 0 done, 1 an operation failed, 2 a usage or configuration error.
 */

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

export interface DysnomiaErrorOptions {
  cause?: unknown;
  /** The plugin (container type) the error comes from, shown as `[type]` in the message. */
  plugin?: string;
}

/** Base class: an expected failure, reported without a stack trace unless --debug is given. */
export class DysnomiaError extends Error {
  readonly exitCode: number = EXIT_FAILED;
  readonly plugin?: string;

  constructor(message: string, options: DysnomiaErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.plugin = options.plugin;
  }
}

/** Wrong or missing command-line arguments. Exit 2. */
export class UsageError extends DysnomiaError {
  override readonly exitCode = EXIT_USAGE;
}

export interface ConfigErrorOptions extends DysnomiaErrorOptions {
  /** The file the bad setting came from, if any. */
  file?: string;
  /** 1-based line number in `file`. */
  line?: number;
  /** The key (property name) that is wrong. */
  key?: string;
}

/**
 * A configuration problem: a container file, a property, a component path, a name that is not
 * allowed. Exit 2. The message reads `file:line: key: what is wrong`.
 */
export class ConfigError extends DysnomiaError {
  override readonly exitCode = EXIT_USAGE;
  readonly file?: string;
  readonly line?: number;
  readonly key?: string;

  constructor(problem: string, options: ConfigErrorOptions = {}) {
    const where = [options.file, options.line].filter((p) => p !== undefined).join(':');
    const prefix = [where, options.key].filter((p) => p !== undefined && p !== '').join(': ');
    super(prefix === '' ? problem : `${prefix}: ${problem}`, options);
    this.file = options.file;
    this.line = options.line;
    this.key = options.key;
  }
}

/** An operation that was attempted and failed (a server refused, a tool exited non-zero). Exit 1. */
export class OperationError extends DysnomiaError {}

/**
 * A failure of an external tool or server, wrapping its stderr. Exit 1.
 * `stderr` holds the tool's own words; the message says what we were doing.
 */
export class PluginError extends OperationError {
  readonly stderr?: string;

  constructor(message: string, options: DysnomiaErrorOptions & { stderr?: string } = {}) {
    const detail = options.stderr?.trim();
    super(detail ? `${message}: ${lastLines(detail, 20)}` : message, options);
    this.stderr = options.stderr;
  }
}

/** Stored data does not match its checksum. Exit 1; nothing was committed from it. */
export class IntegrityError extends OperationError {}

/** Stored data is damaged inside one pack file, named by `pack` (its hash). */
export class DamagedPackError extends IntegrityError {
  constructor(
    message: string,
    readonly pack: string,
    options: DysnomiaErrorOptions = {},
  ) {
    super(message, options);
  }
}

/** The pack a DamagedPackError anywhere in an error's cause chain names, if any. */
export function damagedPackOf(error: unknown): string | undefined {
  for (let at: unknown = error; at instanceof Error; at = (at as { cause?: unknown }).cause) {
    if (at instanceof DamagedPackError) return at.pack;
  }
  return undefined;
}

/** A lock could not be taken within --lock-timeout. Exit 1. */
export class LockTimeoutError extends OperationError {}

/**
 * The component changed while its snapshot was taken, in a way that made the snapshot
 * incomplete (a git ref that moved while git wrote the bundle). Nothing was stored; the core
 * tries the snapshot again a few times before it reports this. Exit 1.
 */
export class ChangedMeanwhileError extends OperationError {}

/** The caller's AbortSignal fired. Exit 1. */
export class AbortedError extends OperationError {
  constructor(message = 'operation cancelled', options: DysnomiaErrorOptions = {}) {
    super(message, options);
  }
}

/** Throws AbortedError when the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined, what = 'operation'): void {
  if (signal?.aborted) throw new AbortedError(`${what} cancelled`, { cause: signal.reason });
}

function lastLines(text: string, count: number): string {
  const lines = text.split('\n');
  return lines.length <= count ? text : ['...', ...lines.slice(-count)].join('\n');
}

/** The last non-empty line of a tool's output, at most a few hundred characters. */
export function lastLine(text: string): string {
  const line = text.trim().split('\n').at(-1) ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** The message of any thrown value, for logging. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
