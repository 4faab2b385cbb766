/**
 * The external plugin: Dysnomia's module protocol, through `dysnomia` and real executable modules
 * (test/fixtures/modules). A module is called as `<module> <operation> <component> <container>`.
 */
import { chmod, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { programPath, runCli } from '../support/cli.js';
import { MODULES_DIR, markers, recordedCalls, tree, useStage } from '../support/core.js';

/** Variables a POSIX shell sets by itself, whatever environment it was given. */
const SHELL_OWN = new Set(['PWD', 'SHLVL', '_', 'OLDPWD']);

describe('external modules: how they are found', () => {
  it('by type name in DYSNOMIA_MODULES_PATH', async () => {
    const stage = await useStage();
    await stage.module('recorder', { as: 'my-service' });
    const file = await stage.container('prod', `type=my-service\nrecordTo=${stage.log}\n`);
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('dysnomia: [my-service] activated prod/testcomp');
    expect((await recordedCalls(stage.log)).length).toBe(1);
  });

  it('a module named like a built-in type is used, with a warning naming it and the way back to the built-in plugin', async () => {
    const stage = await useStage();
    const module = await stage.module('recorder', { as: 'mysql-database' });
    const file = await stage.container('prod', `type=mysql-database\nrecordTo=${stage.log}\n`);
    const result = await stage.dysnomia(['-o', 'lock', '-c', stage.component, '-C', file]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect((await recordedCalls(stage.log)).map((call) => call.args)).toEqual([['lock', stage.component, 'prod']]);
    expect(result.stderr).toContain(`the module ${module} (found in DYSNOMIA_MODULES_PATH) handles mysql-database instead of the built-in plugin`);
    expect(result.stderr).toContain(`take ${stage.modulesDir} out of DYSNOMIA_MODULES_PATH`);

    await stage.module('recorder', { as: 'my-service' });
    const other = await stage.container('svc', `type=my-service\nrecordTo=${stage.log}\n`);
    const plain = await stage.dysnomia(['-o', 'lock', '-c', stage.component, '-C', other]);
    expect(plain.exitCode, plain.stderr).toBe(0);
    expect(plain.stderr).not.toContain('instead of the built-in plugin');
  });

  it('by path in type, absolute or relative to the working folder', async () => {
    const stage = await useStage();
    const module = await stage.module('recorder');
    for (const type of [module, './modules/recorder']) {
      const file = await stage.container('prod', `type=${type}\nrecordTo=${stage.log}\n`);
      const result = await stage.dysnomia(['-o', 'lock', '-c', stage.component, '-C', file], { env: { DYSNOMIA_MODULES_PATH: undefined } });
      expect(result.exitCode, result.stderr).toBe(0);
    }
    expect((await recordedCalls(stage.log)).map((call) => call.args)).toEqual([
      ['lock', stage.component, 'prod'],
      ['lock', stage.component, 'prod'],
    ]);
  });
});

describe('external modules: what they get', () => {
  it('with a container file: the properties, DYSNOMIA_STATEDIR and PATH, and none of the caller\'s variables', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const file = await stage.container(
      'prod',
      `type=recorder\nrecordTo=${stage.log}\nmysqlUsername=root\nspaced="a b"\nlist=(x "y z")\nPATH=/from/the/file\n`,
    );
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file], {
      env: { CALLER_ONLY: 'must-not-leak', PATH: `/caller/bin:${process.env.PATH}` },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    const [call] = await recordedCalls(stage.log);
    expect(call!.args).toEqual(['activate', stage.component, 'prod']);
    const own = Object.fromEntries(Object.entries(call!.env).filter(([key]) => !SHELL_OWN.has(key)));
    expect(own).toEqual({
      recordTo: stage.log,
      mysqlUsername: 'root',
      spaced: 'a b',
      list: 'x y z',
      DYSNOMIA_STATEDIR: stage.stateDir,
      // As in Dysnomia, the caller's PATH wins over a PATH property.
      PATH: `/caller/bin:${process.env.PATH}`,
    });
  });

  it('with --environment: the whole environment, plus DYSNOMIA_STATEDIR', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-E', '-t', 'recorder'], {
      env: { recordTo: stage.log, CALLER_VAR: 'passed', HOME: '/home/someone' },
    });
    expect(result.exitCode, result.stderr).toBe(0);
    const [call] = await recordedCalls(stage.log);
    expect(call!.args).toEqual(['activate', stage.component, 'recorder']);
    expect(call!.env).toMatchObject({
      CALLER_VAR: 'passed',
      HOME: '/home/someone',
      PATH: process.env.PATH,
      DYSNOMIA_STATEDIR: stage.stateDir,
      DYSNOMIA_MODULES_PATH: stage.modulesDir,
    });
    expect(call!.env.type).toBeUndefined();
  });

  it('with --environment, a variable that is not UTF-8 is refused (exit 2) naming it, and the module is not run; a built-in plugin minds only its own, echo none', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    // Only a shell can set raw bytes: Node encodes every variable it passes as UTF-8.
    const run = (type: string, assignments: string) =>
      execa('bash', ['-c', `${assignments} exec "$0" "$1" -o activate -c "$2" -E -t "$3"`, process.execPath, programPath('dysnomia'), stage.component, type], {
        env: { ...stage.env, recordTo: stage.log, gitBaseDir: path.join(stage.root, 'repos') },
        reject: false,
      });
    const refused = await run('recorder', "export LEGACY_NAME=$'caf\\xe9';");
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('the environment variable LEGACY_NAME is not UTF-8 text, and recorder would get another value than the one set');
    expect(refused.stderr).toContain('Nothing was done');
    expect(await recordedCalls(stage.log)).toEqual([]);
    expect(await tree(stage.stateDir)).toEqual({});

    const gitOwn = await run('git-repository', "export gitBaseDir=$'/tmp/caf\\xe9';");
    expect(gitOwn.exitCode).toBe(2);
    expect(gitOwn.stderr).toContain('the environment variable gitBaseDir is not UTF-8 text');
    const gitOther = await run('git-repository', "export LEGACY_NAME=$'caf\\xe9';");
    expect(gitOther.exitCode, gitOther.stderr).toBe(0);
    expect(gitOther.stderr).toContain('activated git-repository/testcomp');

    const echo = await run('echo', "export LEGACY_NAME=$'caf\\xe9';");
    expect(echo.exitCode, echo.stderr).toBe(0);
    expect(echo.stdout).toContain('echo: activate');

    const plain = await run('recorder', "export LEGACY_NAME='café';");
    expect(plain.exitCode, plain.stderr).toBe(0);
    expect((await recordedCalls(stage.log))[0]!.env.LEGACY_NAME).toBe('café');
  });

  it("stdin is empty, not the caller's, so a module cannot hang waiting for input", async () => {
    const stage = await useStage();
    await stage.module('reads-stdin');
    const file = await stage.container('prod', 'type=reads-stdin\n');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file], { input: 'typed by a user\n' });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('read: []\n');
  });
});

describe('external modules: output and exit status', () => {
  it('passes stdout and stderr through', async () => {
    const stage = await useStage();
    await stage.module('recorder');
    const file = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
    const result = await stage.dysnomia(['-o', 'snapshot', '-c', stage.component, '-C', file]);
    expect(result.stdout).toBe(`recorder: snapshot ${stage.component} prod\n`);
    expect(result.stderr).toContain('recorder: on stderr during snapshot\n');
  });

  it('passes large output through byte for byte, multi-byte characters intact', async () => {
    const stage = await useStage();
    await stage.module('big-output');
    const file = await stage.container('prod', 'type=big-output\n');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(`x${'é'.repeat(100_000)}\n`);
  });

  it('passes bytes that are not UTF-8 through unchanged, through a pipe too', async () => {
    const stage = await useStage();
    const module = path.join(stage.modulesDir, 'latin1');
    await writeFile(module, "#!/bin/sh\nprintf 'caf\\351 \\377\\n'\nprintf 'na\\357ve\\n' >&2\n");
    await chmod(module, 0o755);
    const file = await stage.container('prod', 'type=latin1\n');
    const run = await execa(process.execPath, [programPath('dysnomia'), '-o', 'activate', '-c', stage.component, '-C', file], {
      env: stage.env,
      encoding: 'buffer',
      stripFinalNewline: false,
      reject: false,
    });
    expect(run.exitCode, Buffer.from(run.stderr).toString()).toBe(0);
    expect(Buffer.from(run.stdout)).toEqual(Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0xff, 0x0a]));
    expect(Buffer.from(run.stderr).includes(Buffer.from([0x6e, 0x61, 0xef, 0x76, 0x65, 0x0a]))).toBe(true);
  });

  it('a module exiting non-zero: exit 1, naming the module and operation, its stderr shown, markers unchanged', async () => {
    const stage = await useStage();
    const module = await stage.module('failing');
    const file = await stage.container('prod', `type=failing\nrecordTo=${stage.log}\n`);
    for (const operation of ['activate', 'snapshot', 'restore', 'lock']) {
      const result = await stage.dysnomia(['-o', operation, '-c', stage.component, '-C', file]);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(`failing: refusing to ${operation} ${stage.component} (on purpose)`);
      expect(result.stderr).toContain(
        `dysnomia: [failing] module ${module} (${operation} of testcomp) failed with exit status 3 (its own messages, if any, are above)\n`,
      );
    }
    expect(await tree(stage.stateDir)).toEqual({});
  });

  it('a module that cannot be started (its #! names no program): exit 1, saying so', async () => {
    const stage = await useStage();
    const module = await stage.module('bad-interpreter');
    const file = await stage.container('prod', 'type=bad-interpreter\n');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`dysnomia: [bad-interpreter] cannot run module ${module} (activate of testcomp); check its first line (#!)`);
    expect(await markers(stage.stateDir)).toEqual([]);
  });

  it('a module killed by a signal: exit 1, naming the signal', async () => {
    const stage = await useStage();
    const module = await stage.module('killed');
    const file = await stage.container('prod', 'type=killed\n');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`module ${module} (activate of testcomp) was killed by SIGKILL`);
    expect(await markers(stage.stateDir)).toEqual([]);
  });

  it('a module file that is not executable is refused (exit 2) and never run', async () => {
    const stage = await useStage();
    const module = await stage.module('not-executable', { mode: 0o644 });
    const file = await stage.container('prod', `type=not-executable\nrecordTo=${stage.log}\n`);
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`module ${module} is not executable`);
    expect(await recordedCalls(stage.log)).toEqual([]);
  });

  it('the fixture modules are what the tests think they are', async () => {
    // A fixture silently changed to succeed would make the failure tests above meaningless.
    expect(await readFile(path.join(MODULES_DIR, 'failing'), 'utf8')).toContain('exit 3');
    expect(await readFile(path.join(MODULES_DIR, 'bad-interpreter'), 'utf8')).toMatch(/^#!\/nonexistent\//);
  });
});

describe('external modules: a module that leaves a daemon running', () => {
  const daemons: number[] = [];
  afterEach(() => {
    for (const pid of daemons.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  /** The daemon's process id, which the module wrote; it must still be running. */
  async function runningDaemon(pidFile: string): Promise<number> {
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    expect(pid).toBeGreaterThan(1);
    daemons.push(pid);
    expect(() => process.kill(pid, 0)).not.toThrow();
    return pid;
  }

  it('output captured through a pipe: the run ends when the module exits, not when the daemon does', async () => {
    // A daemon holding the pipe kept dysnomia (and whoever read its output) waiting 5 minutes.
    const stage = await useStage();
    await stage.module('daemon');
    const pidFile = path.join(stage.root, 'daemon.pid');
    const file = await stage.container('prod', `type=daemon\ndaemonPidFile=${pidFile}\n`);
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file], { timeoutMs: 30_000 });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe('daemon: module started it\n');
    expect(result.stderr).toContain('daemon: module on stderr\n');
    expect(result.stderr).toContain('activated prod/testcomp');
    await runningDaemon(pidFile);
  });

  it('output going to a file: the module and its daemon write there, as under Dysnomia', async () => {
    const stage = await useStage();
    await stage.module('daemon');
    const pidFile = path.join(stage.root, 'daemon.pid');
    const output = path.join(stage.root, 'cron.log');
    const file = await stage.container('prod', `type=daemon\ndaemonPidFile=${pidFile}\n`);
    // bash waits for dysnomia only; its output goes to the file, as a cron job's `>> log` does.
    const run = await execa('bash', ['-c', 'node "$0" -o activate -c "$1" -C "$2" >>"$3" 2>&1', programPath('dysnomia'), stage.component, file, output], {
      env: stage.env,
      reject: false,
      timeout: 30_000,
    });
    expect(run.exitCode, run.stderr).toBe(0);
    await runningDaemon(pidFile);
    // The daemon writes half a second after it starts.
    let text = '';
    for (let i = 0; i < 100 && !text.includes('daemon: on stderr'); i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      text = await readFile(output, 'utf8');
    }
    expect(text).toContain('daemon: module started it\n');
    expect(text).toContain('daemon: module on stderr\n');
    expect(text).toContain('daemon: still running\n');
    expect(text).toContain('daemon: on stderr\n');
  });

  it("the library API with the caller's print: resolves when the module exits, its output printed", async () => {
    const stage = await useStage();
    const module = await stage.module('daemon');
    const pidFile = path.join(stage.root, 'daemon.pid');
    const printed: string[] = [];
    const result = await dysnomia.activate({
      container: { type: module, daemonPidFile: pidFile },
      component: stage.component,
      stateDir: stage.stateDir,
      print: (text) => printed.push(text),
    });
    expect(result.operation).toBe('activate');
    expect(printed.join('')).toBe('daemon: module started it\n');
    await runningDaemon(pidFile);
  });
});

describe('external modules: snapshots they write themselves', () => {
  it('a gc while a module writes its snapshot waits for it, and never removes the folder before the module links it', async () => {
    const stage = await useStage();
    // As Dysnomia's util does: the folder first, the generation link last (here after a pause).
    const module = path.join(stage.modulesDir, 'slow-snapshots');
    await writeFile(
      module,
      `#!/bin/sh
set -e
folder="$DYSNOMIA_STATEDIR/snapshots/$3/testcomp"; generations="$DYSNOMIA_STATEDIR/generations/$3/testcomp"
case "$1" in snapshot)
  id=$(date +%s%N); mkdir -p "$folder/$id" "$generations"; echo "state $id" > "$folder/$id/state"
  touch "$DYSNOMIA_STATEDIR/written"; sleep "$pause"
  last=$(ls "$generations" | sort -n | tail -1)
  ln -s "../../../snapshots/$3/testcomp/$id" "$generations/$(( \${last:-0} + 1 ))";;
esac
`,
    );
    await chmod(module, 0o755);
    const run = (pause: string) => stage.dysnomia(['-o', 'snapshot', '-c', stage.component, '--type', 'slow-snapshots', '-E', '-C', 'mod'], { env: { pause } });
    for (let i = 0; i < 2; i += 1) expect((await run('0')).exitCode).toBe(0);
    await rm(path.join(stage.stateDir, 'written'));
    const snapshot = run('2');
    while (!(await readdir(stage.stateDir)).includes('written')) await new Promise((resolve) => setTimeout(resolve, 20));
    const gc = await runCli('dysnomia-snapshots', ['--gc', '--keep', '1'], { env: stage.env });
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect(gc.stderr).toContain('waiting for the snapshot store');
    expect((await snapshot).exitCode).toBe(0);
    const check = await runCli('dysnomia-snapshots', ['--query-all', '--check'], { env: stage.env });
    expect(check.exitCode, check.stderr).toBe(0);
    expect(check.stdout.trim().split('\n')).toHaveLength(1);
    expect(await readdir(path.join(stage.stateDir, 'generations', 'mod', 'testcomp'))).toEqual(['3']);
  });
});

