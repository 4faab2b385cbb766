/**
 * `dysnomia --shell`, as Dysnomia's: bash with the container properties exported, the
 * this_* variables set, the module's own `shell` part sourced, and with --command the commands
 * run and their status returned. The interactive session runs under `script`, a real terminal.
 */
import { access, mkdir, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { markers, recordedCalls, recordedOperations, useStage } from '../support/core.js';

/** Prints NAME=value lines for the variables a test wants to see. */
const show = (...names: string[]) => names.map((name) => `printf '%s=%s\\n' ${name} "\${${name}-<unset>}"`).join('; ');

describe('dysnomia --shell --command', () => {
  it('exports the container properties and this_* variables, then runs the commands', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', `type=echo\nmysqlUsername=root\nmysqlPassword='pa ss'\nlist=(a "b c")\n`);
    const result = await stage.dysnomia(
      ['--shell', '-c', stage.component, '-C', file, '--command', show('mysqlUsername', 'mysqlPassword', 'list', 'type', 'DYSNOMIA_STATEDIR', 'this_dysnomia_module', 'this_component', 'this_container', 'CALLER_VAR')],
      { env: { CALLER_VAR: 'kept' } },
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      [
        'mysqlUsername=root',
        'mysqlPassword=pa ss',
        'list=a b c',
        'type=<unset>',
        `DYSNOMIA_STATEDIR=${stage.stateDir}`,
        'this_dysnomia_module=echo',
        `this_component=${stage.component}`,
        `this_container=${file}`,
        'CALLER_VAR=kept',
        '',
      ].join('\n'),
    );
  });

  it("prints the plugin's help and the general variables on stderr, without secrets; --quiet drops them", async () => {
    const stage = await useStage();
    const file = await stage.container('prod', `type=echo\nmysqlPassword=hunter2\n`);
    const result = await stage.dysnomia(['--shell', '-c', stage.component, '-C', file, '--command', 'true']);
    expect(result.stderr).toContain(`echo: shell ${stage.component}`);
    expect(result.stderr).toContain('mysqlPassword=(hidden)');
    expect(result.stderr).toContain('General environment variables:\nthis_dysnomia_module');
    expect(result.stderr).not.toContain('hunter2');
    const quiet = await stage.dysnomia(['--shell', '-c', stage.component, '-C', file, '--command', 'true', '--quiet']);
    expect(quiet.stderr).toBe('');
  });

  it("exits with the commands' status", async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\n');
    for (const [commands, status] of [
      ['true', 0],
      ['false', 1],
      ['exit 7', 7],
      ['echo one; (exit 4)', 4],
    ] as const) {
      const result = await stage.dysnomia(['--shell', '-c', stage.component, '-C', file, '--command', commands, '-q']);
      expect(result.exitCode, commands).toBe(status);
    }
  });

  it('runs several lines of commands in one session', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\nname=db\n');
    const result = await stage.dysnomia(['--shell', '-c', stage.component, '-C', file, '-q', '--command', 'x="$name-1"\necho "$x"\necho done']);
    expect(result.stdout).toBe('db-1\ndone\n');
  });

  it('sources an external module with `shell`, so what it exports is in the session', async () => {
    const stage = await useStage();
    const module = await stage.module('recorder');
    const file = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
    const result = await stage.dysnomia(['--shell', '-c', stage.component, '-C', file, '--command', show('RECORDER_SHELL', 'this_dysnomia_module')]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(`RECORDER_SHELL=sourced for ${stage.component}\nthis_dysnomia_module=${module}\n`);
    expect(result.stderr).toContain(`recorder: help for the shell of ${stage.component}`);
    expect((await recordedCalls(stage.log)).map((call) => call.args)).toEqual([['shell', stage.component, 'prod']]);
  });

  it('works with --environment, and with --operation shell', async () => {
    const stage = await useStage();
    const env = await stage.dysnomia(['--shell', '-c', stage.component, '-E', '-t', 'echo', '-q', '--command', show('FROM_ENV', 'this_container')], {
      env: { FROM_ENV: 'yes' },
    });
    expect(env.stdout).toBe('FROM_ENV=yes\nthis_container=echo\n');
    const file = await stage.container('prod', 'type=echo\nname=db\n');
    const op = await stage.dysnomia(['-o', 'shell', '-c', stage.component, '-C', file, '-q', '--command', show('name')]);
    expect(op.stdout).toBe('name=db\n');
  });

  it('without --shell, --command is ignored with a warning, as Dysnomia ignores it: the operation runs, the commands do not', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const file = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
    const marker = path.join(stage.root, 'ran');
    for (const quiet of [[], ['-q']]) {
      const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file, '--command', `touch ${marker}`, ...quiet]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stderr).toContain(
        'dysnomia: warning: --command is ignored: it runs only in a --shell session, and this is --operation activate; the commands are not run\n',
      );
    }
    expect(await recordedOperations(stage.log)).toEqual(['activate', 'activate']);
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);
    await expect(access(marker)).rejects.toThrow();
  });

  it('leaves no temporary files behind', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\n');
    const tmp = path.join(stage.root, 'tmp');
    await mkdir(tmp);
    await stage.dysnomia(['--shell', '-c', stage.component, '-C', file, '-q', '--command', 'true'], { env: { TMPDIR: tmp } });
    expect(await readdir(tmp)).toEqual([]);
  });
});

describe('dysnomia --shell stopped by a signal', () => {
  for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
    it(`passes a ${signal} sent to it alone on to bash, waits for its end, and leaves no temporary files`, async () => {
      const stage = await useStage();
      const file = await stage.container('prod', 'type=echo\n');
      const tmp = path.join(stage.root, 'tmp');
      await mkdir(tmp);
      const marker = path.join(stage.root, 'bash-pid');
      const child = execa(process.execPath, [programPath('dysnomia'), '--shell', '-c', stage.component, '-C', file, '-q', '--command', `echo $$ > ${marker}; sleep 30 >/dev/null 2>&1 & wait`], {
        env: { DYSNOMIA_STATEDIR: stage.stateDir, TMPDIR: tmp },
        reject: false,
      });
      let bash = 0;
      for (let i = 0; i < 200 && bash === 0; i += 1) {
        bash = Number(await readFile(marker, 'utf8').catch(() => '0'));
        if (bash === 0) await new Promise((resolve) => setTimeout(resolve, 25));
      }
      expect(bash).toBeGreaterThan(0);
      child.kill(signal);
      const result = await child;
      expect(result.exitCode, String(result.stderr)).toBe(128 + os.constants.signals[signal]);
      // bash is gone with us, not left running.
      expect(() => process.kill(bash, 0)).toThrow();
      expect(await readdir(tmp)).toEqual([]);
    });
  }
});

describe('dysnomia --shell, interactive', () => {
  it('starts an interactive bash with a dysnomia prompt and the properties, and exits with its status', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\nname=interactive-db\n');
    const tmp = path.join(stage.root, 'tmp');
    await mkdir(tmp);
    const command = [process.execPath, programPath('dysnomia'), '--shell', '-c', stage.component, '-C', file, '-q']
      .map((word) => `'${word}'`)
      .join(' ');
    // `script` gives the program a terminal; -e returns the shell's exit status.
    const result = await execa('script', ['-qec', command, '/dev/null'], {
      cwd: stage.root,
      input: 'echo "name is [$name]"\nexit 5\n',
      env: { ...stage.env, TMPDIR: tmp, HOME: stage.root },
      reject: false,
      timeout: 30_000,
    });
    expect(result.exitCode).toBe(5);
    expect(result.stdout).toContain('[dysnomia-shell:');
    expect(result.stdout).toContain('name is [interactive-db]');
    expect(await readdir(tmp)).toEqual([]);
  });

  it('ends an interactive bash, which ignores SIGTERM, when dysnomia alone is sent one, and exits 143', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\n');
    const tmp = path.join(stage.root, 'tmp');
    await mkdir(tmp);
    const command = [process.execPath, programPath('dysnomia'), '--shell', '-c', stage.component, '-C', file, '-q']
      .map((word) => `'${word}'`)
      .join(' ');
    // No input is given and stdin stays open: the session waits at its prompt until the signal.
    const session = execa('script', ['-qec', command, '/dev/null'], {
      cwd: stage.root,
      env: { ...stage.env, TMPDIR: tmp, HOME: stage.root },
      reject: false,
      timeout: 30_000,
    });
    const ours = (pid: string) => readFile(`/proc/${pid}/cmdline`, 'utf8').then((line) => line.startsWith(`${process.execPath}\0`) && line.includes(stage.component), () => false);
    let pid: string | undefined;
    for (let i = 0; i < 200 && pid === undefined; i += 1) {
      for (const entry of await readdir('/proc')) if (/^\d+$/.test(entry) && (await ours(entry))) pid = entry;
      if (pid === undefined) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(pid).toBeDefined();
    // Let bash start and reach its prompt.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    process.kill(Number(pid), 'SIGTERM');
    const result = await session;
    expect(result.timedOut, String(result.stdout)).toBe(false);
    expect(result.exitCode).toBe(143);
    expect(await readdir(tmp)).toEqual([]);
  });
});
