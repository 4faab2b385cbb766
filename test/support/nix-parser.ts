/**
 * A parser for the data subset of the Nix language, to check that `--generate-expr` prints valid
 * Nix (there is no nix binary on the test machines). It follows the lexical rules of Nix's own
 * lexer (lexer.l) for identifiers, comments and double-quoted strings, and its grammar (parser.y)
 * for attribute sets (with dotted paths and `rec`), lists and literals, and rejects what Nix
 * rejects: a missing `;`, unbalanced brackets, an attribute defined twice, a keyword used as a
 * name, an unterminated string. It returns the value, so a test can also compare the content.
 *
 * Anything beyond data (functions, `let`, `with`, interpolation, paths, operators) throws
 * NixSyntaxError as "unsupported": the generator must never produce it.
 */

/** A parsed Nix value. */
export type NixValue = string | number | boolean | null | NixValue[] | { [name: string]: NixValue };

/** A syntax error (or an unsupported construct) at a line and column. */
export class NixSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${line}:${column}: ${message}`);
  }
}

const KEYWORDS = new Set(['if', 'then', 'else', 'assert', 'with', 'let', 'in', 'rec', 'inherit']);
const IDENTIFIER = /[a-zA-Z_][a-zA-Z0-9_'-]*/y;
const NUMBER = /(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?/y;

/** Parses one Nix expression of the data subset; throws NixSyntaxError when it is not valid. */
export function parseNix(text: string): NixValue {
  const parser = new Parser(text);
  const value = parser.expression();
  parser.skipSpace();
  if (!parser.atEnd()) parser.fail('unexpected text after the expression');
  return value;
}

class Parser {
  private position = 0;

  constructor(private readonly text: string) {}

  atEnd(): boolean {
    return this.position >= this.text.length;
  }

  fail(message: string, at = this.position): never {
    const before = this.text.slice(0, at);
    const line = before.split('\n').length;
    const column = at - before.lastIndexOf('\n');
    throw new NixSyntaxError(message, line, column);
  }

  /** Skips whitespace, `# line` comments and `/* block *\/` comments. */
  skipSpace(): void {
    for (;;) {
      const c = this.text[this.position];
      if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
        this.position++;
      } else if (c === '#') {
        while (!this.atEnd() && this.text[this.position] !== '\n') this.position++;
      } else if (c === '/' && this.text[this.position + 1] === '*') {
        const end = this.text.indexOf('*/', this.position + 2);
        if (end < 0) this.fail('unterminated /* comment');
        this.position = end + 2;
      } else {
        return;
      }
    }
  }

  private peek(): string | undefined {
    this.skipSpace();
    return this.text[this.position];
  }

  private expect(token: string): void {
    this.skipSpace();
    if (!this.text.startsWith(token, this.position)) {
      const found = this.atEnd() ? 'end of input' : JSON.stringify(this.text[this.position]);
      this.fail(`expected ${JSON.stringify(token)}, found ${found}`);
    }
    this.position += token.length;
  }

  private identifier(): string | undefined {
    this.skipSpace();
    IDENTIFIER.lastIndex = this.position;
    const match = IDENTIFIER.exec(this.text);
    return match?.[0];
  }

  expression(): NixValue {
    const c = this.peek();
    if (c === undefined) this.fail('expected an expression, found end of input');
    if (c === '{') return this.attributeSet();
    if (c === '[') return this.list();
    if (c === '"') return this.string();
    if (c === "'" && this.text.startsWith("''", this.position)) this.fail('unsupported: indented string');
    NUMBER.lastIndex = this.position;
    const number = NUMBER.exec(this.text);
    if (number) {
      this.position += number[0].length;
      return Number(number[0]);
    }
    const word = this.identifier();
    if (word === 'rec') {
      this.position += word.length;
      if (this.peek() !== '{') this.fail('expected "{" after rec');
      return this.attributeSet();
    }
    if (word === 'true' || word === 'false' || word === 'null') {
      this.position += word.length;
      return word === 'null' ? null : word === 'true';
    }
    if (word !== undefined) this.fail(`unsupported: ${KEYWORDS.has(word) ? 'keyword' : 'variable'} ${word}`);
    return this.fail(`unexpected ${JSON.stringify(c)}`);
  }

  private attributeSet(): Record<string, NixValue> {
    const start = this.position;
    this.expect('{');
    const set: Record<string, NixValue> = {};
    const defined = new Set<unknown>();
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('unterminated attribute set', start);
      if (c === '}') {
        this.position++;
        return set;
      }
      const pathStart = this.position;
      const path = this.attributePath();
      this.expect('=');
      const value = this.expression();
      this.expect(';');
      this.assign(set, path, value, defined, pathStart);
    }
  }

  /** Sets `a.b.c = value`, creating nested sets; defining an attribute twice is an error, as in Nix. */
  private assign(
    set: Record<string, NixValue>,
    path: string[],
    value: NixValue,
    defined: Set<unknown>,
    at: number,
  ): void {
    let target = set;
    for (let i = 0; i < path.length - 1; i++) {
      const name = path[i]!;
      const existing = target[name];
      if (existing === undefined) {
        const nested: Record<string, NixValue> = {};
        target[name] = nested;
        target = nested;
      } else if (typeof existing === 'object' && existing !== null && !Array.isArray(existing) && !defined.has(existing)) {
        target = existing;
      } else {
        this.fail(`attribute '${path.slice(0, i + 1).join('.')}' already defined`, at);
      }
    }
    const last = path[path.length - 1]!;
    if (Object.hasOwn(target, last)) this.fail(`attribute '${path.join('.')}' already defined`, at);
    target[last] = value;
    if (typeof value === 'object' && value !== null) defined.add(value);
  }

  private attributePath(): string[] {
    const path = [this.attributeName()];
    while (this.peek() === '.') {
      this.position++;
      path.push(this.attributeName());
    }
    return path;
  }

  private attributeName(): string {
    const c = this.peek();
    if (c === '"') return this.string();
    const word = this.identifier();
    if (word === undefined) this.fail(`expected an attribute name, found ${c === undefined ? 'end of input' : JSON.stringify(c)}`);
    if (KEYWORDS.has(word)) this.fail(`keyword ${word} cannot be an attribute name (quote it)`);
    this.position += word.length;
    return word;
  }

  private list(): NixValue[] {
    const start = this.position;
    this.expect('[');
    const items: NixValue[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('unterminated list', start);
      if (c === ']') {
        this.position++;
        return items;
      }
      items.push(this.expression());
    }
  }

  /** A double-quoted string, with the escapes of Nix's lexer; `${` (interpolation) is unsupported. */
  private string(): string {
    const start = this.position;
    this.expect('"');
    let out = '';
    for (;;) {
      if (this.atEnd()) this.fail('unterminated string', start);
      const c = this.text[this.position]!;
      if (c === '"') {
        this.position++;
        return out;
      }
      if (c === '\\') {
        if (this.position + 1 >= this.text.length) this.fail('unterminated string', start);
        const next = this.text[this.position + 1]!;
        out += next === 'n' ? '\n' : next === 'r' ? '\r' : next === 't' ? '\t' : next;
        this.position += 2;
      } else if (c === '$' && this.text[this.position + 1] === '{') {
        this.fail('unsupported: string interpolation ${...}');
      } else if (c === '$' && this.text[this.position + 1] === '$') {
        // `$$` is two literal dollars, and protects a following `{` from starting interpolation.
        out += '$$';
        this.position += 2;
      } else {
        out += c;
        this.position++;
      }
    }
  }
}
