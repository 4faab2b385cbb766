/** Where progress and diagnostics go: stderr for the CLIs, a callback or nothing for the library. */
export interface Logger {
  /** A step the user should see (`dysnomia: [type] message`). */
  info(message: string): void;
  /** Something went wrong but the operation goes on (a stale lock taken over, a stray file). */
  warn(message: string): void;
  /** Detail shown only with --debug / DEBUG=dysnomia. */
  debug(message: string): void;
  /** The same logger with a plugin tag, `[mysql-database]`, in front of each line. */
  child(tag: string): Logger;
}

/** True when DEBUG names dysnomia (DEBUG=dysnomia, DEBUG=*, DEBUG=dysnomia,other). */
export function debugFromEnv(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.DEBUG ?? '').split(',').some((part) => part.trim() === 'dysnomia' || part.trim() === '*');
}

export interface StreamLoggerOptions {
  /** Program name, the first word of every line. */
  program: string;
  debug?: boolean;
  /** Suppress info lines (warnings still appear). */
  quiet?: boolean;
  write?: (line: string) => void;
}

/** A logger writing `program: [tag] message` lines to stderr. */
export function streamLogger(options: StreamLoggerOptions, tag?: string): Logger {
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  const prefix = `${options.program}: ${tag ? `[${tag}] ` : ''}`;
  return {
    info: (message) => {
      if (!options.quiet) write(`${prefix}${message}\n`);
    },
    warn: (message) => write(`${prefix}warning: ${message}\n`),
    debug: (message) => {
      if (options.debug) write(`${prefix}debug: ${message}\n`);
    },
    child: (childTag) => streamLogger(options, childTag),
  };
}

/** A logger that drops everything (the library default). */
export const silentLogger: Logger = {
  info: () => {},
  warn: () => {},
  debug: () => {},
  child: () => silentLogger,
};
