/**
 * Bad inputs, fuzzed: random bytes, mutations and truncations of real container files, fed to
 * the container-file parser (in process, thousands of times) and to the programs (as files and
 * as command-line arguments, a few hundred runs). The rule: never a crash (a stack trace, an
 * "unexpected error", a signal, a hang), only a clear message starting with the program's name
 * and exit 2, or exit 0 when the input happens to be valid. Exit 1 (an operation that failed)
 * is allowed only with such a clear message, and is counted separately.
 *
 * The random generator is seeded; the seed is printed (and RELIABILITY_SEED repeats a run).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseContainerText } from '../../src/core/container-file.js';
import { ConfigError } from '../../src/core/errors.js';
import { type CliResult, type Program, runCli } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';
import { Tally } from './support.js';

const SEED = Number(process.env.RELIABILITY_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: a small seeded generator, so a failing case can be replayed. */
function generator(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const random = generator(SEED);
const int = (max: number) => Math.floor(random() * max);
const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;

/** Real container files of every shape the parser knows (echo type, so a valid one runs). */
const VALID_FILES = [
  'type=echo\n',
  "# a comment\nexport type=echo\nmysqlUsername='root'\nmysqlPassword=\"se\\\"cret\"\n",
  'type=echo\nnames=("a" \'b\' c)\nempty=\ndq="a b\\$c"\n\n',
  '\uFEFFtype="echo"\r\nkey=value\r\n',
  "type=echo\npath='/var/lib/x y'\nexport port=3306\nlist=()\n",
];

/** Pieces a mutation inserts: shell syntax the parser must refuse, quotes, controls, Unicode. */
const PIECES = ['$(id)', '`id`', '$HOME', ';', '|', '&', '>', '<', '~', '*', '"', "'", '\\', '(', ')', '=', '\n', '\r', '\t', '\0', '\u00e9', '\u{1F600}', '\uFFFD', 'export ', '#', ' '];

function mutate(text: string): string {
  let out = text;
  for (let n = 1 + int(4); n > 0; n--) {
    const at = int(out.length + 1);
    switch (int(4)) {
      case 0:
        out = out.slice(0, at) + pick(PIECES) + out.slice(at);
        break;
      case 1:
        out = out.slice(0, at) + out.slice(at + 1 + int(3));
        break;
      case 2:
        out = out.slice(0, at) + String.fromCharCode(int(256)) + out.slice(at + 1);
        break;
      default:
        out = out.slice(0, at);
    }
  }
  return out;
}

function randomBytes(length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = int(256);
  return data;
}

/** One fuzzed container file's bytes. */
function fuzzedFile(): Buffer {
  switch (int(3)) {
    case 0:
      return randomBytes(int(300));
    case 1: {
      const text = Buffer.from(pick(VALID_FILES));
      return text.subarray(0, int(text.length + 1));
    }
    default:
      return Buffer.from(mutate(pick(VALID_FILES)));
  }
}

/** What is wrong with a program's run, or undefined when it is a clean success or a clear error. */
function crashOf(program: Program, result: CliResult, allowed: number[]): string | undefined {
  const stderr = result.stderr;
  if (/^\s+at .+(:\d+:\d+\)?|\(native\))$/m.test(stderr)) return 'a stack trace';
  if (/unexpected error|node:internal|Unhandled|TypeError|RangeError|ReferenceError|SyntaxError: /.test(stderr)) return 'an unexpected error';
  if (!allowed.includes(result.exitCode)) return `exit ${result.exitCode}`;
  if (result.exitCode !== 0) {
    // dysnomia-containers --restore without -y asks first; its message follows the question.
    const message = stderr.replace(/^[^]*Are you sure you want to proceed\? \[n\] /, '');
    const first = message.split('\n').find((line) => line.trim() !== '');
    if (first === undefined) return `exit ${result.exitCode} without a message`;
    if (!first.startsWith(`${program}:`) && !first.startsWith('error:')) return `a message not from ${program}: ${first}`;
  }
  return undefined;
}

describe(`bad inputs (seed ${SEED})`, () => {
  it('the container-file parser: only a ConfigError or a result, for 6000 fuzzed files', () => {
    const tally = new Tally('bad-inputs-parser');
    const problems: string[] = [];
    for (let i = 0; i < 6000; i++) {
      const bytes = fuzzedFile();
      const text = int(2) === 0 ? bytes.toString('utf8') : bytes.toString('latin1');
      tally.trials += 1;
      tally.faults += 1;
      try {
        const properties = parseContainerText(text, '/etc/dysnomia/containers/fuzzed');
        expect(typeof properties).toBe('object');
        tally.note('parsed');
      } catch (error) {
        if (!(error instanceof ConfigError)) {
          problems.push(`${JSON.stringify(text)}: ${(error as Error).stack}`);
        } else if (!error.message.includes('/etc/dysnomia/containers/fuzzed')) {
          problems.push(`${JSON.stringify(text)}: the message does not name the file: ${error.message}`);
        } else {
          tally.note('refused with a ConfigError');
        }
      }
    }
    tally.lost.push(...problems.slice(0, 20));
    tally.save();
    expect(problems.slice(0, 5)).toEqual([]);
  });

  it('dysnomia with fuzzed and truncated container files: exit 2 with a message naming the file, or 0', { timeout: 300_000 }, async () => {
    const tally = new Tally('bad-inputs-container-files');
    const dir = await useTempDir('dysnomia-fuzz-');
    const component = path.join(dir, 'components', 'fuzzcomp');
    await mkdir(component, { recursive: true });
    const env = { DYSNOMIA_STATEDIR: path.join(dir, 'state'), DYSNOMIA_MODULES_PATH: path.join(dir, 'no-modules') };
    const problems: string[] = [];
    const cases = Array.from({ length: 80 }, (_, i) => ({ i, bytes: fuzzedFile(), operation: pick(['activate', 'snapshot', 'deactivate', 'lock']) }));
    // Two at a time: the machine has two cores.
    for (let i = 0; i < cases.length; i += 2) {
      await Promise.all(
        cases.slice(i, i + 2).map(async ({ i: n, bytes, operation }) => {
          const file = path.join(dir, `container-${n}`);
          await writeFile(file, bytes);
          const result = await runCli('dysnomia', ['--operation', operation, '--component', component, '--container', file], { env, input: '', timeoutMs: 30_000 });
          tally.trials += 1;
          tally.faults += 1;
          tally.note(`exit ${result.exitCode}`);
          const crash = crashOf('dysnomia', result, [0, 2]);
          if (crash) problems.push(`${JSON.stringify(bytes.toString('latin1'))} (${operation}): ${crash}\n${result.stderr}`);
          else if (result.exitCode === 2 && !result.stderr.includes(file)) problems.push(`${JSON.stringify(bytes.toString('latin1'))}: the message does not name ${file}:\n${result.stderr}`);
        }),
      );
    }
    tally.lost.push(...problems.slice(0, 20));
    tally.save();
    expect(problems.slice(0, 5)).toEqual([]);
  });

  it('the three programs with fuzzed arguments: a clear message and exit 2, or a valid run', { timeout: 300_000 }, async () => {
    const tally = new Tally('bad-inputs-arguments');
    const dir = await useTempDir('dysnomia-fuzz-');
    const component = path.join(dir, 'components', 'echo-c', 'fuzzcomp');
    await mkdir(component, { recursive: true });
    await mkdir(path.join(dir, 'containers'), { recursive: true });
    await writeFile(path.join(dir, 'containers', 'echo-c'), 'type=echo\n');
    const env = {
      DYSNOMIA_STATEDIR: path.join(dir, 'state'),
      DYSNOMIA_CONTAINERS_PATH: path.join(dir, 'containers'),
      DYSNOMIA_COMPONENTS_PATH: path.join(dir, 'components'),
      DYSNOMIA_MODULES_PATH: path.join(dir, 'no-modules'),
    };
    // Real options of each program (no --shell: it would open an interactive shell) and values.
    const options: Record<Program, string[]> = {
      dysnomia: ['--operation', '-o', '--component', '-c', '--container', '-C', '--environment', '-E', '--type', '-t', '--json', '-q', '--lock-timeout', '--debug', '-h', '-v'],
      'dysnomia-snapshots': ['--query-latest', '--query-all', '--check', '--print-missing', '--resolve', '--gc', '--keep', '--keep-daily', '--keep-weekly', '--keep-monthly', '--dry-run', '--import', '--export', '--list-packs', '-C', '-c', '--json', '--lock-timeout', '-q', '-h', '-v'],
      'dysnomia-containers': ['--query-containers', '--query-available-components', '--query-activated-components', '--generate-expr', '--generate-dot', '--deploy', '--snapshot', '--restore', '--collect-garbage', '-o', '--operation', '-C', '--container', '-y', '--json', '--lock-timeout', '-q', '-h', '-v'],
    };
    const values = [
      'activate', 'snapshot', 'restore', 'deactivate', 'lock', 'unlock', 'collect-garbage', 'shell', 'bogus',
      'echo', 'echo-c', 'fuzzcomp', component, 'echo-c/fuzzcomp', 'echo-c/fuzzcomp/abc', '-1', '0', '2', '1e309', 'NaN', '99999999999999999999',
      '', ' ', '-', '--', '---x', '--keep=-1', '--operation=', '../../etc/passwd', '/dev/null', '/dev/null/x', dir, '\u00e9\u{1F600}', 'a'.repeat(5000), '$(id)', '%s%n',
    ];
    const randomArg = () => {
      const data = randomBytes(1 + int(20)).toString('latin1').replaceAll('\0', '');
      return data === '' ? 'x' : data;
    };
    const programs = Object.keys(options) as Program[];
    const problems: string[] = [];
    const runs = Array.from({ length: 150 }, () => {
      const program = pick(programs);
      const args: string[] = [];
      for (let n = int(5); n >= 0; n--) {
        const roll = random();
        if (roll < 0.5) args.push(pick(options[program]));
        else if (roll < 0.85) args.push(pick(values));
        else args.push(randomArg());
      }
      return { program, args };
    });
    for (let i = 0; i < runs.length; i += 2) {
      await Promise.all(
        runs.slice(i, i + 2).map(async ({ program, args }) => {
          const result = await runCli(program, args, { env, input: '', timeoutMs: 30_000 });
          tally.trials += 1;
          tally.faults += 1;
          tally.note(`exit ${result.exitCode}`);
          // --debug asks for stack traces; only an exit code outside 0-2 is a crash then.
          const crash = args.includes('--debug') ? ([0, 1, 2].includes(result.exitCode) ? undefined : `exit ${result.exitCode}`) : crashOf(program, result, [0, 1, 2]);
          if (crash) problems.push(`${program} ${JSON.stringify(args)}: ${crash}\n${result.stderr.slice(0, 2000)}`);
        }),
      );
    }
    tally.lost.push(...problems.slice(0, 20));
    tally.save();
    expect(problems.slice(0, 5)).toEqual([]);
  });
});
