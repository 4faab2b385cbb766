/**
 * What a user sees when something goes wrong: one message, no stack trace unless --debug or
 * DEBUG=dysnomia, exit 1 for a failed operation. Also the top-level catch (src/cli/run.ts) for an
 * unexpected error, and an early-closed stdout.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { markers, useStage } from '../support/core.js';
import { useTempDir } from '../support/temp.js';

const STACK_LINE = /^\s+at /m;

describe('stack traces', () => {
  it('an expected error shows none without --debug, and one with --debug or DEBUG=dysnomia', async () => {
    const stage = await useStage();
    const file = await stage.container('broken', 'type=echo\nname=two words\n');
    const args = ['-o', 'activate', '-c', stage.component, '-C', file];
    const plain = await stage.dysnomia(args);
    expect(plain.exitCode).toBe(2);
    expect(plain.stderr).toBe(`dysnomia: ${file}:2: name: unexpected text after the value: "words" (a shell would run it as a command); quote the whole value if the space belongs to it\n`);
    for (const [extra, env] of [
      [['--debug'], {}],
      [[], { DEBUG: 'dysnomia' }],
      [[], { DEBUG: 'other,*' }],
    ] as const) {
      const debug = await stage.dysnomia([...args, ...extra], { env });
      expect(debug.exitCode).toBe(2);
      expect(debug.stderr.startsWith(plain.stderr)).toBe(true);
      expect(debug.stderr).toContain('ConfigError:');
      expect(debug.stderr).toMatch(STACK_LINE);
    }
  });

  it('a failed operation exits 1 naming the module and operation, with its cause only under --debug', async () => {
    const stage = await useStage();
    const module = await stage.module('failing');
    const file = await stage.container('prod', `type=failing\nrecordTo=${stage.log}\n`);
    const args = ['-o', 'activate', '-c', stage.component, '-C', file];
    const plain = await stage.dysnomia(args);
    expect(plain.exitCode).toBe(1);
    expect(plain.stderr).toContain(`dysnomia: [failing] module ${module} (activate of testcomp) failed with exit status 3`);
    expect(plain.stderr).not.toMatch(STACK_LINE);
    const debug = await stage.dysnomia([...args, '--debug']);
    expect(debug.stderr).toContain('PluginError:');
    expect(debug.stderr).toMatch(STACK_LINE);
  });

  it('a state dir that cannot be written: exit 1, naming the path, no stack trace', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\n');
    await writeFile(path.join(stage.root, 'plain-file'), '');
    const stateDir = path.join(stage.root, 'plain-file', 'state');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file], { env: { DYSNOMIA_STATEDIR: stateDir } });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(stateDir);
    expect(result.stderr).not.toMatch(STACK_LINE);
  });
});

describe('the top-level catch for unexpected errors', () => {
  /** Runs a program whose main throws a TypeError, through the built runProgram. */
  async function crash(args: string[], env: Record<string, string> = {}) {
    const dir = await useTempDir();
    // The module as tsc built it (dist/cli), beside the bundled programs (dist/bin).
    const runJs = path.resolve(path.dirname(programPath('dysnomia')), '../cli/run.js');
    const script = path.join(dir, 'crasher.mjs');
    await writeFile(
      script,
      `import { runProgram } from ${JSON.stringify(runJs)};\nrunProgram('crasher', async () => { const value = undefined; return value.property; });\n`,
    );
    return execa(process.execPath, [script, ...args], {
      env: { DEBUG: undefined, ...env },
      reject: false,
    });
  }

  it('prints the message and a hint, no stack, exit 1', async () => {
    const result = await crash([]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/^crasher: Cannot read properties of undefined \(reading 'property'\)\n/);
    expect(result.stderr).toContain('crasher: this is an unexpected error; run again with --debug (or DEBUG=dysnomia) for the stack trace');
    expect(result.stderr).not.toMatch(STACK_LINE);
  });

  it('prints the stack with --debug or DEBUG=dysnomia', async () => {
    for (const result of [await crash(['--debug']), await crash([], { DEBUG: 'dysnomia' })]) {
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain('TypeError: Cannot read properties of undefined');
      expect(result.stderr).toMatch(STACK_LINE);
      expect(result.stderr).not.toContain('this is an unexpected error');
    }
  });
});

describe('a reader that goes away', () => {
  it('does not abort the operation half-way (dysnomia ... | head -c 10)', async () => {
    const stage = await useStage();
    await stage.module('big-output');
    const file = await stage.container('prod', 'type=big-output\n');
    const command = `'${process.execPath}' '${programPath('dysnomia')}' -o activate -c '${stage.component}' -C '${file}' | head -c 10 >/dev/null; echo "status \${PIPESTATUS[0]}"`;
    const result = await execa('bash', ['-c', command], { env: stage.env, reject: false });
    expect(result.stdout).toBe('status 0');
    expect(await markers(stage.stateDir)).toEqual(['activated/prod/testcomp']);
  });
});
