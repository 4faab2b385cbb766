/**
 * Groups of short flags in the three programs, as Dysnomia's getopt takes them: any flag may come
 * anywhere in a group (`-hv` as well as `-vh`), a flag that takes a value takes the rest of the
 * group or the next argument, and the first of -h and -v wins.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Program, runCli } from '../support/cli.js';
import { useStage } from '../support/core.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Each program with the short flags it has besides -h and -v. */
const PROGRAMS: { program: Program; groups: string[][] }[] = [
  {
    program: 'dysnomia',
    groups: [['-hE'], ['-Eh'], ['-hq'], ['-qh'], ['-hqE'], ['-ht', 'echo'], ['-htecho'], ['-hC', 'x'], ['-ho', 'activate']],
  },
  { program: 'dysnomia-snapshots', groups: [['-hq'], ['-qh'], ['-hC', 'x'], ['-hc', 'x']] },
  { program: 'dysnomia-containers', groups: [['-hy'], ['-yh'], ['-hq'], ['-hyq'], ['-hC', 'x'], ['-ho', 'lock'], ['-yqh']] },
];

describe.each(PROGRAMS)('$program: -h and -v in groups of short flags', ({ program, groups }) => {
  const run = async (args: string[]) => {
    const stage = await useStage();
    return runCli(program, args, { env: { DYSNOMIA_STATEDIR: stage.stateDir } });
  };
  const usage = `Usage: ${program} `;

  it('-h anywhere in a group shows the usage and exits 0', async () => {
    for (const args of groups) {
      const result = await run(args);
      expect(result.exitCode, `${args.join(' ')}: ${result.stderr}`).toBe(0);
      expect(result.stdout.startsWith(usage), args.join(' ')).toBe(true);
      expect(result.stderr, args.join(' ')).toBe('');
    }
  });

  it('the first of -h and -v wins, grouped or not', async () => {
    const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
    for (const args of [['-hv'], ['-h', '-v'], ['--help', '-v'], ['-hqv']]) {
      const result = await run(args);
      expect(result.exitCode, args.join(' ')).toBe(0);
      expect(result.stdout.startsWith(usage), args.join(' ')).toBe(true);
    }
    for (const args of [['-vh'], ['-v', '-h'], ['--version', '--help'], ['-qvh']]) {
      const result = await run(args);
      expect(result.exitCode, args.join(' ')).toBe(0);
      expect(result.stdout, args.join(' ')).toBe(`${program} (dysnomia ${version})\n`);
    }
  });

  it('an unknown flag or a missing value is still an error with -h, as getopt checks the whole line first', async () => {
    for (const args of [['-hX'], ['-h', '--bogus'], ['--bogus', '-h'], ['-hC']]) {
      const result = await run(args);
      expect(result.exitCode, args.join(' ')).toBe(2);
      expect(result.stdout, args.join(' ')).toBe('');
      expect(result.stderr, args.join(' ')).toMatch(new RegExp(`^${program}: error: (unknown option '(-X|--bogus)'|option '-C, --container <container>' argument missing)`));
    }
  });

  it('-h shows the usage even when an option with a value is given twice, which is otherwise refused', async () => {
    expect((await run(['-C', 'a', '-hC', 'b'])).stdout.startsWith(usage)).toBe(true);
    const refused = await run(['-C', 'a', '-C', 'b']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain(`${program}: -C/--container is given twice; give it once`);
  });
});

describe('dysnomia: a group of short flags runs the operation', () => {
  it('-qEtecho is -q -E -t echo', async () => {
    const stage = await useStage();
    const result = await stage.dysnomia(['-qEtecho', '-o', 'activate', '-c', stage.component]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toContain(`echo: activate ${stage.component}`);
    expect(result.stderr).toBe('');
  });

  it('an h after a flag that takes a value is that value, not -h: -qEth is -q -E -t h', async () => {
    const stage = await useStage();
    const result = await stage.dysnomia(['-qEth', '-o', 'activate', '-c', stage.component]);
    expect(result.exitCode).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('dysnomia: type: unknown type "h"');
  });
});
