/**
 * Reading typed container properties for the SQL plugins. Every problem is a ConfigError naming
 * the container file (when there is one) and the key.
 */
import { readFileSync } from 'node:fs';
import { type ContainerProperties, scalarProperty } from '../../core/container-file.js';
import { ConfigError, messageOf } from '../../core/errors.js';
import { MAX_WAIT_SECONDS, parseDecimal, parseWhole } from '../../core/numbers.js';

/** The properties both SQL plugins read without their prefix. */
export const SHARED_PROPERTIES = ['timeout'] as const;

/** Typed access to a container's properties; `file` is named in every error. */
export class PropertyReader {
  constructor(
    private readonly properties: ContainerProperties,
    private readonly file: string | undefined,
    private readonly plugin: string,
  ) {}

  /** The error for a bad value of `key`. */
  error(key: string, problem: string, cause?: unknown): ConfigError {
    const where = this.file === undefined ? ' (no container file: set in the environment, or given as properties)' : '';
    return new ConfigError(`${problem}${where}`, { file: this.file, key, plugin: this.plugin, cause });
  }

  /** A string property; an empty value counts as unset, as in Dysnomia's shell modules. */
  string(key: string): string | undefined {
    const value = scalarProperty(this.properties, key, this.file, this.plugin);
    return value === undefined || value === '' ? undefined : value;
  }

  /** A folder or file given by its absolute path. */
  absolutePath(key: string): string | undefined {
    const value = this.string(key);
    if (value !== undefined && !value.startsWith('/')) {
      throw this.error(key, `${JSON.stringify(value)} is not an absolute path (one starting with /)`);
    }
    return value;
  }

  /** A TCP port number. */
  port(key: string): number | undefined {
    const value = this.string(key);
    if (value === undefined) return undefined;
    const port = parseWhole(value);
    if (port === undefined || port < 1 || port > 65535) {
      throw this.error(key, `${JSON.stringify(value)} is not a port number (1-65535)`);
    }
    return port;
  }

  /** One of `choices`; `fallback` when unset. */
  choice<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const value = this.string(key);
    if (value === undefined) return fallback;
    if (!(choices as readonly string[]).includes(value)) {
      throw this.error(key, `${JSON.stringify(value)} is not one of ${choices.join(', ')}`);
    }
    return value as T;
  }

  /** A duration in seconds (a plain decimal, at most MAX_WAIT_SECONDS), returned in milliseconds. */
  seconds(key: string, fallback: number): number {
    const value = this.string(key);
    if (value === undefined) return fallback * 1000;
    const seconds = parseDecimal(value);
    if (seconds === undefined) {
      throw this.error(key, `${JSON.stringify(value)} is not a number of seconds >= 0, as a plain decimal (10, 2.5)`);
    }
    if (seconds > MAX_WAIT_SECONDS) {
      throw this.error(key, `${JSON.stringify(value)} is too long: at most ${MAX_WAIT_SECONDS} seconds (about 24 days)`);
    }
    return Math.round(seconds * 1000);
  }

  /**
   * A password given inline (`inlineKey`) or in a file (`fileKey`, first line, trailing newline
   * removed). Giving both is an error, so a stale inline password never silently wins.
   */
  password(inlineKey: string, fileKey: string): string | undefined {
    const inline = this.string(inlineKey);
    const file = this.string(fileKey);
    if (file === undefined) return inline;
    if (inline !== undefined) {
      throw this.error(fileKey, `set either ${inlineKey} or ${fileKey}, not both`);
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw this.error(fileKey, `cannot read the password file ${file} (${code ?? messageOf(error)})`, error);
    }
    const password = text.replace(/\r?\n$/, '');
    if (password === '') throw this.error(fileKey, `the password file ${file} is empty`);
    if (/[\r\n]/.test(password)) {
      throw this.error(fileKey, `the password file ${file} has more than one line; it must hold only the password`);
    }
    return password;
  }
}
