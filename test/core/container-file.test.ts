import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import {
  type ContainerProperties,
  parseContainerText,
  propertyString,
  readContainerFile,
  scalarProperty,
} from '../../src/core/container-file.js';
import { ConfigError } from '../../src/core/errors.js';
import { CONTAINERS_DIR } from '../support/core.js';
import { useTempDir } from '../support/temp.js';

/** The error parseContainerText throws for `text` (fails the test if it throws none). */
function parseError(text: string, file = '/etc/dysnomia/containers/bad'): ConfigError {
  try {
    parseContainerText(text, file);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected ${JSON.stringify(text)} to be rejected`);
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}

/**
 * What Bash makes of a file when it sources it (as Dysnomia does): each key's value, arrays as
 * lists. Runs in an empty environment so nothing from ours leaks in.
 */
async function bashValues(file: string, keys: string[]): Promise<ContainerProperties> {
  const script = [
    `source ${JSON.stringify(file)} >/dev/null`,
    ...keys.map(
      (key) =>
        `if declare -p ${key} 2>/dev/null | grep -q '^declare -a'; then printf 'A\\0%s\\0' "\${#${key}[@]}"; printf '%s\\0' "\${${key}[@]}"; else printf 'S\\0%s\\0' "\${${key}}"; fi`,
    ),
  ].join('\n');
  const { stdout } = await execa('bash', ['-c', script], {
    env: { PATH: process.env.PATH, HOME: '/nonexistent-home' },
    extendEnv: false,
    encoding: 'utf8',
  });
  const fields = stdout.split('\0');
  const values: ContainerProperties = {};
  let i = 0;
  for (const key of keys) {
    const kind = fields[i++];
    if (kind === 'A') {
      const count = Number(fields[i++]);
      values[key] = fields.slice(i, i + count);
      i += count;
    } else {
      values[key] = fields[i++]!;
    }
  }
  return values;
}

describe('parseContainerText: what it accepts', () => {
  it('reads key=value lines, skipping comments and blank lines', () => {
    const text = '# a comment\n\ntype=mysql-database\n   # indented comment\nmysqlUsername=root\n\n';
    expect(parseContainerText(text)).toEqual({ type: 'mysql-database', mysqlUsername: 'root' });
  });

  it('takes single quotes literally and honours double-quote escapes', () => {
    const text = [
      `a='single $HOME \\n "x"'`,
      `b="double \\"q\\" \\\\ \\$HOME \\\` kept\\n"`,
      `c='it'\\''s'`,
      `d=un\\ quoted\\;semicolon`,
      `e="mixed"'parts'plain`,
      `f=a=b=c`,
      `g=value#not-a-comment`,
    ].join('\n');
    expect(parseContainerText(text)).toEqual({
      a: 'single $HOME \\n "x"',
      b: 'double "q" \\ $HOME ` kept\\n',
      c: "it's",
      d: 'un quoted;semicolon',
      e: 'mixedpartsplain',
      f: 'a=b=c',
      g: 'value#not-a-comment',
    });
  });

  it('accepts an export prefix, indentation, trailing comments and empty values', () => {
    const text = 'export a=1\n  export\tb="two words"  # comment\nc=\nd=""\ne=\'\' # empty\n';
    expect(parseContainerText(text)).toEqual({ a: '1', b: 'two words', c: '', d: '', e: '' });
  });

  it('reads CRLF line ends and a UTF-8 byte order mark', () => {
    expect(parseContainerText('\uFEFFtype=echo\r\nname="x y"\r\n# c\r\n')).toEqual({ type: 'echo', name: 'x y' });
  });

  it('reads one-line Bash arrays as lists', () => {
    const text = `supportedTypes=("mysql-database" 'postgresql-database' git-repository)\nempty=()\nspaced=( "a b"  c )  # comment`;
    expect(parseContainerText(text)).toEqual({
      supportedTypes: ['mysql-database', 'postgresql-database', 'git-repository'],
      empty: [],
      spaced: ['a b', 'c'],
    });
  });

  it('lets a later assignment of the same key win, as Bash does', () => {
    expect(parseContainerText('type=echo\nmysqlPort=3306\nmysqlPort=3307\n')).toEqual({
      type: 'echo',
      mysqlPort: '3307',
    });
  });

  it('gives the same values as Bash sourcing the same files', async () => {
    const dir = await useTempDir();
    const samples = [
      path.join(CONTAINERS_DIR, 'echo-sample'),
      path.join(CONTAINERS_DIR, 'crlf'),
    ];
    const inline = path.join(dir, 'inline');
    await writeFile(
      inline,
      [
        `a='single $HOME "x"'`,
        `b="double \\"q\\" \\\\ \\$HOME \\\` a\\b"`,
        `c='it'\\''s'`,
        `d=un\\ quoted`,
        `e="mixed"'parts'plain`,
        `f=a=b=c`,
        `g=value#not-a-comment # comment`,
        `h=("x y" 'z' w)`,
        `export i=exported`,
        `j=first`,
        `j=second`,
        `k=`,
      ].join('\n'),
    );
    samples.push(inline);
    for (const file of samples) {
      const ours = await readContainerFile(file);
      // Bash keeps the \r of CRLF lines in the value; compare the CRLF file on its own below.
      if (file.endsWith('crlf')) continue;
      expect(ours, file).toEqual(await bashValues(file, Object.keys(ours)));
    }
  });

  it('keeps a no-break space, form feed or vertical tab outside quotes in the value, as Bash does', async () => {
    // Bash separates words with spaces and tabs only: a password pasted with a trailing no-break
    // space keeps it, and one with a form feed inside is one word.
    const file = path.join(await useTempDir(), 'invisible');
    await writeFile(file, 'a=secret\u00A0\nb=x\u00A0y\nc=x\fy\nd=tab\v\ne=("p\u00A0q" r\u00A0)\nf=crlf\r\ng=last\r');
    const ours = await readContainerFile(file);
    expect(ours).toEqual({ a: 'secret\u00A0', b: 'x\u00A0y', c: 'x\fy', d: 'tab\v', e: ['p\u00A0q', 'r\u00A0'], f: 'crlf', g: 'last' });
    const { f: _f, g: _g, ...sameAsBash } = ours;
    expect(sameAsBash).toEqual(await bashValues(file, Object.keys(sameAsBash)));
  });

  it('reads the CRLF fixture without carriage returns', async () => {
    expect(await readContainerFile(path.join(CONTAINERS_DIR, 'crlf'))).toEqual({ type: 'echo', name: 'crlf' });
  });

  it('joins array values with spaces for modules (propertyString)', () => {
    expect(propertyString(['a', 'b c'])).toBe('a b c');
    expect(propertyString('x')).toBe('x');
    expect(propertyString(undefined)).toBeUndefined();
  });
});

describe('parseContainerText: what it rejects, naming file, line and key', () => {
  const cases: Array<[string, string, number, string | undefined, RegExp]> = [
    ['unterminated double quote', 'type=echo\na="open', 2, 'a', /double quote is not closed/],
    ['unterminated single quote', "type=echo\n\nb='open", 3, 'b', /single quote is not closed/],
    ['a quoted value over two lines', 'type=echo\nkey="-----BEGIN\nEND-----"', 2, 'key', /double quote is not closed on this line \(a value over several lines is not supported/],
    ['unterminated quote in an array', 'c=("a" "b)', 1, 'c', /double quote in the array is not closed/],
    ['array over several lines', 'd=(\n"a"\n)', 1, 'd', /closing parenthesis/],
    ['text after an array', 'e=(a b) c', 1, 'e', /after the array/],
    ['key with a dash', 'my-key=1', 1, 'my-key', /not a valid property name/],
    ['key starting with a digit', '1key=1', 1, '1key', /not a valid property name/],
    ['space before =', 'key =1', 1, 'key ', /not a valid property name/],
    ['__proto__', '__proto__=x', 1, '__proto__', /not a valid property name/],
    ['array element syntax', 'a[0]=x', 1, 'a[0]', /not a valid property name/],
    ['unquoted space in the value', 'f=two words', 1, 'f', /unexpected text after the value: "words"/],
    ['space after =', 'g= value', 1, 'g', /unexpected text after the value: "value"/],
    ['variable expansion', 'h=$HOME/x', 1, 'h', /\$ expansion is not supported/],
    ['variable expansion in double quotes', 'i="${HOME}"', 1, 'i', /\$ expansion is not supported/],
    ['unquoted tilde', 'j=~/data', 1, 'j', /~ would be expanded/],
    ['tilde after a colon', 'k=/bin:~/bin', 1, 'k', /~ would be expanded/],
    ['glob in an array', 'l=(*.sql)', 1, 'l', /expanded to file names/],
    ['comment inside an array', 'm=(a #b)', 1, 'm', /comment inside an array/],
    ['trailing backslash', 'n=abc\\', 1, 'n', /trailing backslash/],
    ['braces', 'o={a,b}', 1, 'o', /shell syntax "\{"/],
    ['a line that is no assignment', 'type=echo\nnonsense', 2, undefined, /expected key=value, found "nonsense"/],
    ['a line starting with =', '=value', 1, undefined, /expected key=value/],
    ['a carriage return inside a line', 'type=echo\rname=x', 1, 'type', /carriage return in the middle of a line/],
    ['a byte order mark in the middle of a file', 'type=echo\n\uFEFFname=x', 2, '\uFEFFname', /not a valid property name .*; it holds the character U\+FEFF, which may not show$/],
    ['a no-break space before =', 'name\u00A0=x', 1, 'name\u00A0', /; it holds the character U\+00A0, which may not show$/],
    ['a letter outside ASCII (shown, so not named)', 'n\u00E9=x', 1, 'n\u00E9', /no spaces around =\)$/],
  ];
  for (const [name, text, line, key, problem] of cases) {
    it(name, () => {
      const error = parseError(text);
      expect(error.file).toBe('/etc/dysnomia/containers/bad');
      expect(error.line).toBe(line);
      expect(error.key).toBe(key);
      expect(error.message).toMatch(problem);
      expect(error.message.startsWith(`/etc/dysnomia/containers/bad:${line}: ${key === undefined ? '' : `${key}: `}`)).toBe(true);
      expect(error.exitCode).toBe(2);
    });
  }

  it('rejects a NUL byte, naming the file', () => {
    const error = parseError('type=echo\0\n', '/x/nul');
    expect(error.message).toMatch(/^\/x\/nul: .*NUL byte/);
  });

  it('rejects bytes that are not UTF-8, naming the file and line, instead of changing the value', async () => {
    const dir = await useTempDir();
    const file = path.join(dir, 'latin1');
    // A Latin-1 é: decoded loosely it became U+FFFD, another password than the one written.
    await writeFile(file, Buffer.concat([Buffer.from('type=echo\nuser=root\npassword=caf'), Buffer.from([0xe9]), Buffer.from('\n')]));
    const error = await readContainerFile(file).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${file}:3: is not UTF-8 text: re-save the file as UTF-8`);
    await writeFile(file, 'type=echo\npassword=café\n');
    expect(await readContainerFile(file)).toEqual({ type: 'echo', password: 'café' });
    // In a comment such bytes never mattered (bash skips them): the file still reads.
    await writeFile(file, Buffer.concat([Buffer.from('# Konfiguration f'), Buffer.from([0xfc]), Buffer.from('r M'), Buffer.from([0xfc]), Buffer.from('ller\ntype=echo\n  # '), Buffer.from([0xe9]), Buffer.from('\nname=x\n')]));
    expect(await readContainerFile(file)).toEqual({ type: 'echo', name: 'x' });
  });
});

describe('properties that must be one value', () => {
  it('an array where a plugin needs one value (a path, a user) is a ConfigError naming the file and key', () => {
    const properties = parseContainerText('type=git-repository\ngitBaseDir=(/tmp/a /tmp/b)\n', '/x/git');
    expect(() => scalarProperty(properties, 'gitBaseDir', '/x/git', 'git-repository')).toThrow(
      '/x/git: gitBaseDir: is an array (2 items); give one value, without parentheses',
    );
    expect(scalarProperty(properties, 'type', '/x/git')).toBe('git-repository');
    // One item is one value, as bash's $key would be.
    expect(scalarProperty(parseContainerText('gitBaseDir=(/srv/git)\n'), 'gitBaseDir', '/x/git')).toBe('/srv/git');
    expect(scalarProperty(properties, 'missing', '/x/git')).toBeUndefined();
  });
});

describe('a container file crafted to run commands when a shell sources it', () => {
  // Each line would run `touch MARKER` if the file were sourced, as Dysnomia does.
  const crafted: Array<[string, (marker: string) => string, string]> = [
    ['command substitution', (m) => `type=echo\nname=$(touch ${m})`, 'name'],
    ['command substitution in double quotes', (m) => `type=echo\nname="$(touch ${m})"`, 'name'],
    ['backticks', (m) => `type=echo\nname=\`touch ${m}\``, 'name'],
    ['semicolon', (m) => `type=echo\nname=x; touch ${m}`, 'name'],
    ['semicolon without space', (m) => `type=echo\nname=x;touch ${m}`, 'name'],
    ['pipe', (m) => `type=echo\nname=x | touch ${m}`, 'name'],
    ['and-list', (m) => `type=echo\nname=x && touch ${m}`, 'name'],
    ['or-list after a failing command', (m) => `type=echo\nname=x false || touch ${m}`, 'name'],
    ['background', (m) => `type=echo\nname=x & touch ${m}`, 'name'],
    ['redirection', (m) => `type=echo\nname=x >${m}`, 'name'],
    ['env-prefixed command', (m) => `type=echo\nname=x touch ${m}`, 'name'],
    ['command in an array', (m) => `type=echo\nlist=(a $(touch ${m}))`, 'list'],
    ['process substitution in an array', (m) => `type=echo\nlist=(<(touch ${m}))`, 'list'],
  ];

  for (const [name, make, key] of crafted) {
    it(`${name}: would run under bash, is refused here and runs nothing`, async () => {
      const dir = await useTempDir();
      await mkdir(path.join(dir, 'bash'));
      await mkdir(path.join(dir, 'ours'));
      // Proof that the file is dangerous: bash sourcing it creates the marker.
      const bashMarker = path.join(dir, 'bash', 'ran');
      const bashFile = path.join(dir, 'bash', 'container');
      await writeFile(bashFile, `${make(bashMarker)}\n`);
      await execa('bash', ['-c', `source ${JSON.stringify(bashFile)}`], { reject: false, cwd: dir });
      expect(await exists(bashMarker), 'bash should have run the command').toBe(true);

      const marker = path.join(dir, 'ours', 'ran');
      const file = path.join(dir, 'ours', 'container');
      await writeFile(file, `${make(marker)}\n`);
      const error = await readContainerFile(file).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      const config = error as ConfigError;
      expect(config.file).toBe(file);
      expect(config.line).toBe(2);
      expect(config.key).toBe(key);
      expect(config.message).toContain(`${file}:2: ${key}: `);
      expect(await exists(marker)).toBe(false);
    });
  }
});

describe('readContainerFile', () => {
  it('says when the file does not exist', async () => {
    const dir = await useTempDir();
    const file = path.join(dir, 'missing');
    await expect(readContainerFile(file)).rejects.toThrow(`${file}: container file does not exist`);
  });

  it('says when the path is a folder', async () => {
    const dir = await useTempDir();
    await expect(readContainerFile(dir)).rejects.toThrow(`${dir}: is a directory, not a container file`);
  });

  it('says when the path cannot be read (a path under a regular file)', async () => {
    const dir = await useTempDir();
    await writeFile(path.join(dir, 'plain'), 'x');
    const file = path.join(dir, 'plain', 'container');
    await expect(readContainerFile(file)).rejects.toThrow(`${file}: cannot read container file (ENOTDIR)`);
  });

  it('refuses a FIFO at once instead of waiting for a writer that never comes, and a device without end', async () => {
    const fifo = path.join(await useTempDir(), 'fifo');
    await execa('mkfifo', [fifo]);
    const error = await readContainerFile(fifo).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toBe(`${fifo}: is a FIFO (named pipe) that nobody writes to, not a container file (a regular file is needed)`);
    expect((error as ConfigError).exitCode).toBe(2);
    await expect(readContainerFile('/dev/zero')).rejects.toThrow('/dev/zero: gives more than 1048576 bytes; a container file is a few lines of text');
  }, 10_000);

  it('reads a pipe that has a writer (a FIFO a writer waits on, /dev/stdin, <(...)) and /dev/null, as bash source does', async () => {
    const fifo = path.join(await useTempDir(), 'fifo');
    await execa('mkfifo', [fifo]);
    // The writer opens the FIFO before the read and writes late: the read has to wait for it.
    const writer = execa('bash', ['-c', `exec 3>${JSON.stringify(fifo)}; sleep 0.3; printf 'type=echo\\nfoo="a b"\\n' >&3`]);
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await readContainerFile(fifo)).toEqual({ type: 'echo', foo: 'a b' });
      await writer;
    } finally {
      writer.kill(); // a writer still blocked in its open when the read failed
      await writer.catch(() => {});
    }
    expect(await readContainerFile('/dev/null')).toEqual({});
  }, 20_000);
});
