import { closeSync, constants, openSync, readSync, type Stats } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { ConfigError } from './errors.js';

/** A container property: a plain string, or a list for Bash-array values such as `a=("x" "y")`. */
export type PropertyValue = string | string[];

/** The key=value settings of a container, `type` included. */
export type ContainerProperties = Record<string, PropertyValue>;

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * What separates words for bash: a space or a tab, nothing else. A no-break space, form feed or
 * vertical tab is part of the value (JavaScript's \s would end the value there, and a password
 * pasted with a trailing no-break space would lose it without a word).
 */
const BLANK = /[ \t]/;

/**
 * Parses the text of a Dysnomia container file without executing it.
 *
 * Dysnomia sources these files with Bash. We accept the subset that is data: `key=value` lines,
 * `#` comments, blank lines, an optional leading `export`, single- and double-quoted values (with
 * `\"`, `\\`, `\$` and `` \` `` escapes in double quotes), and one-line arrays `key=("a" 'b' c)`.
 * As in Bash, a later assignment of the same key wins. Anything that would make a shell do work or
 * change the value (`$(...)`, backticks, `$VAR`, `;`, `|`, `&`, redirections, an unquoted `~`, a
 * glob in an array) is rejected with an error naming the file, line and key, so a crafted file
 * never runs a command and every value reads exactly as it is written.
 *
 * Written by hand: shell-quote and similar libraries expand or tokenise shell syntax, which is the
 * opposite of what we need (refuse it).
 */
export function parseContainerText(text: string, file = '<container>'): ContainerProperties {
  if (text.includes('\0')) {
    throw new ConfigError('the file contains a NUL byte; a container file is text', { file });
  }
  const properties: ContainerProperties = {};
  // A CR before the end of the text (a CRLF file without a final newline) ends the line too.
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n|\r$/);
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    // Only leading blanks go: trailing ones may be escaped (`a=x\ `) and the value parser skips the rest.
    const line = lines[index]!.replace(/^[ \t]+/, '').replace(/^export[ \t]+/, '');
    if (line.trim() === '' || line.startsWith('#')) continue;
    const equals = line.indexOf('=');
    if (equals <= 0) {
      throw new ConfigError(`expected key=value, found ${JSON.stringify(truncate(line))}`, {
        file,
        line: lineNumber,
      });
    }
    const key = line.slice(0, equals);
    if (!KEY.test(key) || key === '__proto__') {
      throw new ConfigError(
        `not a valid property name (a letter or _, then letters, digits and _; no spaces around =)${unseen(key)}`,
        { file, line: lineNumber, key: truncate(key) },
      );
    }
    const raw = line.slice(equals + 1);
    try {
      properties[key] = raw.startsWith('(') ? parseArray(raw) : parseWord(raw, true);
    } catch (error) {
      if (error instanceof SyntaxProblem) {
        throw new ConfigError(error.message, { file, line: lineNumber, key });
      }
      throw error;
    }
  }
  return properties;
}

/** More than any container file holds; what a pipe or device gives beyond it is refused. */
const MAX_STREAMED = 1024 * 1024;

function tooLong(file: string): ConfigError {
  return new ConfigError(`gives more than ${MAX_STREAMED} bytes; a container file is a few lines of text`, { file });
}
/** Reads, 50 ms apart, before a FIFO with nothing at the other end is taken to have no writer. */
const WRITER_TRIES = 20;

/**
 * Reads and parses a container file; errors name the file. A pipe given as the path (`<(...)`,
 * /dev/stdin) and a character device (/dev/null) are read as bash's `source` reads them, but
 * a FIFO nobody writes to is refused at once instead of waited on, and a device such as
 * /dev/zero is cut off after {@link MAX_STREAMED} bytes. Sockets and block devices are refused.
 */
export async function readContainerFile(file: string): Promise<ContainerProperties> {
  let text: string;
  try {
    const info = await stat(file);
    let bytes: Buffer;
    if (info.isFile() || info.isDirectory()) {
      bytes = await readFile(file);
    } else if (info.isFIFO()) {
      bytes = await readPipe(file);
    } else if (info.isCharacterDevice()) {
      bytes = await readCapped(file);
    } else {
      throw new ConfigError(`is ${specialKind(info)}, not a container file (a regular file is needed)`, { file });
    }
    text = decodeUtf8(bytes, file);
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    const problem =
      code === 'ENOENT'
        ? 'container file does not exist'
        : code === 'EISDIR'
          ? 'is a directory, not a container file'
          : `cannot read container file (${code ?? String(error)})`;
    throw new ConfigError(problem, { file, cause: error });
  }
  return parseContainerText(text, file);
}

/** A character device, read to its end or to MAX_STREAMED bytes, whichever comes first. */
async function readCapped(file: string): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(MAX_STREAMED + 1);
    let size = 0;
    while (size <= MAX_STREAMED) {
      const { bytesRead } = await handle.read(buffer, size, buffer.length - size, null);
      if (bytesRead === 0) return buffer.subarray(0, size);
      size += bytesRead;
    }
    throw tooLong(file);
  } finally {
    await handle.close();
  }
}

/**
 * A FIFO or pipe. Opened without waiting for a writer (O_NONBLOCK), a read that ends at once
 * means there is none, and nothing would ever come: that is refused instead of hanging a run.
 * A pipe with a writer (process substitution, a shell's pipe, a FIFO a writer waits on) is then
 * read to its end.
 */
async function readPipe(file: string): Promise<Buffer> {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const first = Buffer.alloc(65536);
  let got = 0;
  // A writer blocked in its own open of a named FIFO attaches only now that there is a reader:
  // it is given a second to do so.
  for (let tries = 0; got === 0 && tries < WRITER_TRIES; tries++) {
    if (tries > 0) await new Promise((resolve) => setTimeout(resolve, 50));
    try {
      got = readSync(fd, first);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') {
        closeSync(fd);
        throw error;
      }
      got = -1; // a writer, that has not written yet
    }
  }
  if (got === 0) {
    closeSync(fd);
    throw new ConfigError('is a FIFO (named pipe) that nobody writes to, not a container file (a regular file is needed)', { file });
  }
  const chunks: Buffer[] = got > 0 ? [first.subarray(0, got)] : [];
  let size = Math.max(got, 0);
  // The socket reads the non-blocking descriptor as the event loop allows, and closes it at the end.
  const pipe = new Socket({ fd, readable: true, writable: false });
  for await (const chunk of pipe as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.length;
    if (size > MAX_STREAMED) {
      pipe.destroy();
      throw tooLong(file);
    }
  }
  return Buffer.concat(chunks);
}

function specialKind(info: Stats): string {
  if (info.isFIFO()) return 'a FIFO (named pipe)';
  if (info.isSocket()) return 'a socket';
  return 'a device';
}

/**
 * The file's text. Bytes that are not UTF-8 (a Latin-1 `é`) in a key or value are a ConfigError
 * naming the line: decoding them loosely would hand modules and servers another value than the
 * one written (a password that then fails to log in, with no hint why). In a comment they do not
 * matter, as they never did to Dysnomia's bash, so such a line is read as an empty comment.
 */
function decodeUtf8(bytes: Buffer, file: string): string {
  const strict = new TextDecoder('utf-8', { fatal: true });
  try {
    return strict.decode(bytes);
  } catch {
    // Line by line, below.
  }
  const lines: string[] = [];
  for (let start = 0, line = 1; ; line += 1) {
    const end = bytes.indexOf(0x0a, start);
    const raw = bytes.subarray(start, end === -1 ? bytes.length : end);
    try {
      lines.push(strict.decode(raw));
    } catch {
      if (!raw.toString('utf8').replace(/^\uFEFF/, '').trimStart().startsWith('#')) {
        throw new ConfigError('is not UTF-8 text: re-save the file as UTF-8', { file, line });
      }
      lines.push('#');
    }
    if (end === -1) return lines.join('\n');
    start = end + 1;
  }
}

class SyntaxProblem extends Error {}

/** Bash would read on to a closing quote on a later line; values here are one line each. */
const ON_THIS_LINE = 'on this line (a value over several lines is not supported: put it on one line)';

function parseArray(raw: string): string[] {
  const close = findArrayEnd(raw);
  const rest = raw.slice(close + 1).replace(/^[ \t]+/, '');
  if (rest !== '' && !rest.startsWith('#')) {
    throw new SyntaxProblem(`unexpected text after the array: ${JSON.stringify(truncate(rest))}`);
  }
  const inner = raw.slice(1, close);
  const items: string[] = [];
  let position = 0;
  while (position < inner.length) {
    while (position < inner.length && BLANK.test(inner[position]!)) position++;
    if (position >= inner.length) break;
    const [word, next] = readWord(inner, position, false);
    items.push(word);
    position = next;
  }
  return items;
}

function findArrayEnd(raw: string): number {
  let quote: string | undefined;
  for (let i = 1; i < raw.length; i++) {
    const c = raw[i]!;
    if (quote) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '\\') i++;
    else if (c === ')') return i;
  }
  if (quote) throw new SyntaxProblem(`${quote === '"' ? 'double' : 'single'} quote in the array is not closed`);
  throw new SyntaxProblem('array value has no closing parenthesis (arrays must fit on one line)');
}

/** Parses one whole value; trailing `# comment` is allowed after whitespace. */
function parseWord(raw: string, topLevel: boolean): string {
  const [word, next] = readWord(raw, 0, topLevel);
  const rest = raw.slice(next).replace(/^[ \t]+/, '');
  if (rest !== '' && !rest.startsWith('#')) {
    throw new SyntaxProblem(
      `unexpected text after the value: ${JSON.stringify(truncate(rest))} (a shell would run it as a command); quote the whole value if the space belongs to it`,
    );
  }
  return word;
}

/**
 * Reads one shell word (concatenated quoted and unquoted parts) starting at `start`.
 * Returns the word and the index after it.
 */
function readWord(text: string, start: number, topLevel: boolean): [string, number] {
  let out = '';
  let i = start;
  if (!topLevel && text[i] === '#') {
    throw new SyntaxProblem('a comment inside an array is not supported; put the array on one line');
  }
  while (i < text.length) {
    const c = text[i]!;
    if (BLANK.test(c)) break;
    if (c === '\r') {
      throw new SyntaxProblem('a carriage return in the middle of a line; save the file with LF or CRLF line ends');
    }
    if (c === '~' && (i === start || text[i - 1] === ':')) {
      throw new SyntaxProblem(
        "an unquoted ~ would be expanded to a home folder by a shell; write the full path, or quote it ('~') to keep it",
      );
    }
    if (!topLevel && '*?['.includes(c)) {
      throw new SyntaxProblem(
        `an unquoted ${JSON.stringify(c)} in an array would be expanded to file names by a shell; quote the item`,
      );
    }
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0) throw new SyntaxProblem(`single quote is not closed ${ON_THIS_LINE}`);
      out += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      let closed = false;
      while (i < text.length) {
        const d = text[i]!;
        if (d === '"') {
          closed = true;
          i++;
          break;
        }
        if (d === '\\' && i + 1 < text.length && '"\\$`'.includes(text[i + 1]!)) {
          out += text[i + 1];
          i += 2;
          continue;
        }
        if (d === '$' || d === '`') {
          throw new SyntaxProblem(
            `${d === '$' ? '$' : 'backtick'} expansion is not supported (the file is read, never run); escape it as \\${d}`,
          );
        }
        out += d;
        i++;
      }
      if (!closed) throw new SyntaxProblem(`double quote is not closed ${ON_THIS_LINE}`);
    } else if (c === '\\') {
      if (i + 1 >= text.length) throw new SyntaxProblem('trailing backslash');
      out += text[i + 1];
      i += 2;
    } else if ('$`'.includes(c)) {
      throw new SyntaxProblem(
        `${c === '$' ? '$' : 'backtick'} expansion is not supported (the file is read, never run); quote the value with '...'`,
      );
    } else if (';|&<>(){}'.includes(c)) {
      if (!topLevel && c === ')') break;
      throw new SyntaxProblem(
        `shell syntax ${JSON.stringify(c)} is not allowed in a value (the file is read, never run); quote the value`,
      );
    } else {
      out += c;
      i++;
    }
  }
  return [out, i];
}

/**
 * Names the first character of a bad key that a terminal shows as nothing or as a plain space (a
 * byte order mark in the middle of a file, a no-break space), so that `user: not a valid property
 * name` does not leave the reader staring at a name that looks right.
 */
function unseen(key: string): string {
  const odd = [...key].find((c) => c !== ' ' && /[\p{Cc}\p{Cf}\p{Z}]/u.test(c));
  if (odd === undefined) return '';
  return `; it holds the character U+${odd.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}, which may not show`;
}

function truncate(text: string, max = 60): string {
  return text.length <= max ? text : `${text.slice(0, max)}...`;
}

/**
 * A property that must be one value, such as a path or a user name. An array (`key=(a b)`) is a
 * ConfigError naming the file and key: joining its items makes a path with a space in it, and
 * bash would have taken the first item for `$key`.
 */
export function scalarProperty(
  properties: ContainerProperties,
  key: string,
  file: string | undefined,
  plugin?: string,
): string | undefined {
  const value = properties[key];
  // `key=(x)`: bash's $key is x, as it is here.
  if (Array.isArray(value) && value.length === 1) return value[0];
  if (Array.isArray(value)) {
    throw new ConfigError(`is an array (${value.length} items); give one value, without parentheses`, { file, key, plugin });
  }
  return value;
}

/** A property as one string: arrays are joined with spaces, as Dysnomia passes them to modules. */
export function propertyString(value: PropertyValue | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(' ') : value;
}
