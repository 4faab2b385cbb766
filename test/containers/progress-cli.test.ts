/**
 * The progress line of the built programs: shown on a terminal (a real pseudo-terminal from
 * script(1)), absent when stderr is a pipe.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath, runCli } from '../support/cli.js';
import { makeBundle, makeWorkRepo } from '../support/git.js';
import { useMachine } from '../support/machine.js';
import { shellQuote } from '../../src/api/migrate.js';

async function gitMachine() {
  const machine = await useMachine();
  await machine.addContainer('git', { type: 'git-repository', gitBaseDir: path.join(machine.root, 'repos') });
  const work = await makeWorkRepo(path.join(machine.root, 'work'), { files: { 'blob.bin': randomBytes(6 * 1024 * 1024).toString('base64') } });
  const component = await machine.addComponent('git', 'project', {});
  await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  const deployed = await runCli('dysnomia-containers', ['--deploy'], { env: machine.env });
  expect(deployed.exitCode, deployed.stderr).toBe(0);
  return { machine, component };
}

describe('progress line of the programs', () => {
  it('dysnomia-containers --snapshot draws it on a terminal and clears it before the table', async () => {
    const { machine } = await gitMachine();
    const command = `${shellQuote(process.execPath)} ${shellQuote(programPath('dysnomia-containers'))} --snapshot`;
    const result = await execa('script', ['-qec', command, '/dev/null'], { env: machine.env, reject: false });
    expect(result.exitCode, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/\r\u001b\[Kdysnomia-containers: snapshot project: snapshot \d+(\.\d)? (B|KiB|MiB)/);
    // Cleared before the table: the table's first line starts right after an erase.
    expect(result.stdout).toMatch(/\r\u001b\[KCOMPONENT/);
  });

  it('dysnomia --operation snapshot draws it on a terminal', async () => {
    const { machine, component } = await gitMachine();
    const command = [process.execPath, programPath('dysnomia'), '--operation', 'snapshot', '--container', path.join(machine.containersDir, 'git'), '--component', component]
      .map(shellQuote)
      .join(' ');
    const result = await execa('script', ['-qec', command, '/dev/null'], { env: machine.env, reject: false });
    expect(result.exitCode, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/\r\u001b\[Kdysnomia: snapshot project: snapshot \d/);
  });

  it('writes no carriage return or escape code when stderr is not a terminal', async () => {
    const { machine } = await gitMachine();
    const result = await runCli('dysnomia-containers', ['--snapshot'], { env: machine.env });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('snapshotting git/project');
    expect(result.stderr).not.toMatch(/[\r\u001b]/);
    expect(result.stdout).not.toMatch(/[\r\u001b]/);
  });
});
