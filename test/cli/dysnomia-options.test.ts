/**
 * Every option of `dysnomia`, through the built program (npm test builds dist first).
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { markers, recordedCalls, recordedOperations, tree, useStage } from '../support/core.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

async function waitFor(file: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      await access(file);
      return;
    } catch {
      await sleep(50);
    }
  }
  throw new Error(`${file} did not appear within 30 s`);
}

describe('dysnomia -h/--help and -v/--version', () => {
  it('--help and -h print the usage with every option and exit 0', async () => {
    const stage = await useStage();
    for (const flag of ['--help', '-h']) {
      const result = await stage.dysnomia([flag]);
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toContain('Usage: dysnomia --operation OPERATION --component COMPONENT --container CONTAINER');
      for (const option of [
        '-o, --operation',
        '-c, --component',
        '-C, --container',
        '--shell',
        '--command',
        '-E, --environment',
        '-t, --type',
        '--lock-timeout',
        '--json',
        '-q, --quiet',
        '--debug',
        '-h, --help',
        '-v, --version',
      ]) {
        expect(result.stdout, option).toContain(option);
      }
      for (const variable of ['DYSNOMIA_COMPONENTS_PATH', 'DYSNOMIA_CONTAINERS_PATH', 'DYSNOMIA_MODULES_PATH', 'DYSNOMIA_STATEDIR', 'NIX_STORE_DIR']) {
        expect(result.stdout).toContain(variable);
      }
      expect(result.stdout).toContain('Exit status: 0 done, 1 the operation failed, 2 a usage or configuration error');
      expect(result.stdout.replace(/\s+/g, ' ')).toMatch(/the operation: activate, .*collect-garbage, shell \(shell is --shell\)/);
    }
  });

  it('--version and -v print the version from package.json and exit 0', async () => {
    const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
    const stage = await useStage();
    for (const flag of ['--version', '-v']) {
      const result = await stage.dysnomia([flag]);
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toBe(`dysnomia (dysnomia ${version})\n`);
    }
  });
});

describe('dysnomia -o/-c/-C and every operation', () => {
  it('short and long forms, with a space or =, name the same things', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    const forms = [
      ['-o', 'activate', '-c', stage.component, '-C', container],
      ['--operation', 'activate', '--component', stage.component, '--container', container],
      [`--operation=activate`, `--component=${stage.component}`, `--container=${container}`],
    ];
    for (const args of forms) {
      const result = await stage.dysnomia(args);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toContain(`echo: activate ${stage.component}\n  component: testcomp\n  container: prod (${container})`);
    }
  });

  it('every operation reaches an external module with its name', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const container = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
    const operations = ['activate', 'lock', 'unlock', 'snapshot', 'restore', 'deactivate', 'collect-garbage'];
    for (const operation of operations) {
      const result = await stage.dysnomia(['-o', operation, '-c', stage.component, '-C', container]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toBe(`recorder: ${operation} ${stage.component} prod\n`);
    }
    const calls = await recordedCalls(stage.log);
    expect(calls.map((call) => call.args)).toEqual(operations.map((operation) => [operation, stage.component, 'prod']));
  });

  it('every operation reaches the echo plugin', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    for (const operation of ['activate', 'lock', 'unlock', 'snapshot', 'restore', 'deactivate', 'collect-garbage']) {
      const result = await stage.dysnomia(['-o', operation, '-c', stage.component, '-C', container]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^echo: ${operation} ${stage.component}\n`));
    }
  });

  it('reports what it did on stderr, with the plugin named', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container]);
    expect(result.stderr).toBe('dysnomia: [echo] activated prod/testcomp\n');
  });
});

describe('dysnomia --json, --quiet, --debug', () => {
  it('--json prints only the result on stdout; plugin output goes to stderr', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container, '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const parsed = JSON.parse(result.stdout) as Record<string, unknown>;
    expect(parsed).toMatchObject({
      operation: 'activate',
      container: 'prod',
      component: 'testcomp',
      status: 'done',
      message: 'activated prod/testcomp',
    });
    expect(typeof parsed.durationMs).toBe('number');
    expect(result.stderr).toContain(`echo: activate ${stage.component}`);

    const again = await stage.dysnomia(['-o', 'collect-garbage', '-c', stage.component, '-C', container, '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ operation: 'collect-garbage', status: 'skipped' });
  });

  it('--quiet and -q drop the report on stderr but keep the output', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    for (const flag of ['--quiet', '-q']) {
      const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container, flag]);
      expect(result.exitCode).toBe(0);
      expect(result.stderr).toBe('');
      expect(result.stdout).toContain('echo: activate');
    }
  });

  it('--debug and DEBUG=dysnomia are accepted and change nothing on success', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    const plain = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container]);
    const debug = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container, '--debug']);
    const env = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container], { env: { DEBUG: 'dysnomia' } });
    for (const result of [debug, env]) {
      expect(result.exitCode).toBe(0);
      expect(result.stdout).toBe(plain.stdout);
    }
    // What --debug adds on failure is tested in dysnomia-errors.test.ts.
  });
});

describe('dysnomia --lock-timeout', () => {
  it('accepts seconds, fractions and 0', async () => {
    const stage = await useStage();
    const container = await stage.container('prod', 'type=echo\n');
    for (const value of ['0', '2.5', '30']) {
      const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container, '--lock-timeout', value]);
      expect(result.exitCode, result.stderr).toBe(0);
    }
  });

  it('gives up waiting for a component another dysnomia is working on', async () => {
    const stage = await useStage();
    await stage.module('slow');
    const started = path.join(stage.root, 'started');
    const release = path.join(stage.root, 'release');
    const container = await stage.container('prod', `type=slow\nstartedFile=${started}\nreleaseFile=${release}\n`);
    const first = stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container]);
    await waitFor(started);
    const second = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container, '--lock-timeout', '0.3']);
    expect(second.exitCode).toBe(1);
    expect(second.stderr).toMatch(/prod\/testcomp/);
    expect(second.stderr).toMatch(/lock/i);
    expect(second.stderr).not.toMatch(/^\s+at /m);
    await writeFile(release, '');
    const firstResult = await first;
    expect(firstResult.exitCode, firstResult.stderr).toBe(0);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);
  });

  it('rejects a negative or non-numeric value with exit 2, changing nothing', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const container = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
    for (const value of ['-1', 'abc', '', '0x10', ' 5 ', '1e3']) {
      const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', container, `--lock-timeout=${value}`]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toBe(`dysnomia: --lock-timeout ${JSON.stringify(value)}: expected a number of seconds >= 0, as a plain decimal (10, 2.5)\n`);
    }
    expect(await recordedOperations(stage.log)).toEqual([]);
    expect(await tree(stage.stateDir, true)).toEqual({});
  });
});

describe('options given twice', () => {
  it('an option with a value given twice, or --shell with another --operation, is exit 2 and runs nothing', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const container = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
    const other = await stage.container('other', `type=recorder\nrecordTo=${stage.log}\n`);
    const cases: [string[], string][] = [
      [['-o', 'activate', '-o', 'snapshot', '-c', stage.component, '-C', container], '-o/--operation is given twice'],
      [['--operation=activate', '-c', stage.component, '-C', container, '-C', other], '-C/--container is given twice'],
      [['-o', 'activate', '-c', stage.component, '--component', stage.component, '-C', container], '-c/--component is given twice'],
      [['-o', 'snapshot', '--shell', '--command', 'true', '-c', stage.component, '-C', container], '--shell and --operation snapshot given together'],
    ];
    for (const [args, message] of cases) {
      const result = await stage.dysnomia(args);
      expect(result.exitCode, args.join(' ')).toBe(2);
      expect(result.stderr).toContain(message);
    }
    expect(await recordedOperations(stage.log)).toEqual([]);
    expect(await tree(stage.stateDir, true)).toEqual({});
  });
});
