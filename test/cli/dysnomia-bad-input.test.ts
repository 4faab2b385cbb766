/**
 * Every bad input of `dysnomia`: a clear message naming what is wrong, exit 2, no stack trace, no
 * module run, and the state dir exactly as it was (it holds a marker of another component, and
 * even lock files count here).
 */
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { recordedOperations, type Stage, tree, useStage } from '../support/core.js';

interface BadCase {
  stage: Stage;
  /** A valid container file using the recorder module. */
  container: string;
}

async function prepare(): Promise<BadCase> {
  const stage = await useStage();
  await stage.module('recorder');
  const container = await stage.container('prod', `type=recorder\nrecordTo=${stage.log}\n`);
  await mkdir(path.join(stage.stateDir, 'activated', 'prod', 'other'), { recursive: true });
  await writeFile(path.join(stage.stateDir, 'activated', 'prod', 'other', 'keep'), 'unrelated');
  return { stage, container };
}

/** Runs dysnomia, expects exit 2 with `message` in stderr, and nothing changed or run. */
async function expectRejected(
  { stage }: BadCase,
  args: string[],
  message: string | RegExp,
  env: Record<string, string | undefined> = {},
): Promise<string> {
  const before = await tree(stage.stateDir, true);
  const result = await stage.dysnomia(args, { env });
  expect(result.exitCode, result.stderr).toBe(2);
  if (typeof message === 'string') expect(result.stderr).toContain(message);
  else expect(result.stderr).toMatch(message);
  expect(result.stderr.startsWith('dysnomia: ')).toBe(true);
  expect(result.stderr).not.toMatch(/^\s+at /m);
  expect(result.stdout).toBe('');
  expect(await tree(stage.stateDir, true)).toEqual(before);
  expect(await recordedOperations(stage.log)).toEqual([]);
  return result.stderr;
}

describe('bad input: exit 2, a clear message, nothing changed', () => {
  it('an unknown operation, naming it and the valid ones', async () => {
    const bad = await prepare();
    await expectRejected(
      bad,
      ['-o', 'explode', '-c', bad.stage.component, '-C', bad.container],
      'dysnomia: unknown operation "explode"; expected one of activate, deactivate, lock, unlock, snapshot, restore, collect-garbage, shell\n',
    );
  });

  it('no --operation', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-c', bad.stage.component, '-C', bad.container], 'no operation given: use --operation OPERATION or --shell');
  });

  it('no --component', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-o', 'activate', '-C', bad.container], 'no component given: use --component PATH or --component NAME');
  });

  it('no --container and no --environment', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component], 'no container given: use --container FILE, or --environment with --type TYPE');
  });

  it('a container file that does not exist, naming it', async () => {
    const bad = await prepare();
    const missing = path.join(bad.stage.root, 'containers', 'missing');
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', missing], `dysnomia: ${missing}: container file does not exist\n`);
  });

  it('a container name found nowhere, naming the search path', async () => {
    const bad = await prepare();
    const dir = path.join(bad.stage.root, 'containers');
    await expectRejected(
      bad,
      ['-o', 'activate', '-c', bad.stage.component, '-C', 'nope'],
      `no container file named "nope" in DYSNOMIA_CONTAINERS_PATH (${dir})`,
      { DYSNOMIA_CONTAINERS_PATH: dir },
    );
  });

  it('a container file without a type, naming the file and the key', async () => {
    const bad = await prepare();
    const file = await bad.stage.container('untyped', '# no type\nrecordTo=/x\n');
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', file], `dysnomia: ${file}: type: no type given; add a line such as type=mysql-database\n`);
  });

  it('an unknown type, naming the file, the key and the value', async () => {
    const bad = await prepare();
    const file = await bad.stage.container('odd', 'type=no-such-plugin\n');
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', file], `dysnomia: ${file}: type: unknown type "no-such-plugin": not a built-in plugin`);
  });

  it('an unknown type with --environment', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-E', '-t', 'no-such-plugin'], 'type: unknown type "no-such-plugin"');
  });

  it('a module that is not executable, naming it', async () => {
    const bad = await prepare();
    const module = await bad.stage.module('not-executable', { mode: 0o644 });
    const file = await bad.stage.container('lazy', `type=not-executable\nrecordTo=${bad.stage.log}\n`);
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', file], `type: module ${module} is not executable; make it executable (chmod +x ${module})`);
  });

  it('a malformed line, naming the file, line and key', async () => {
    const bad = await prepare();
    const file = await bad.stage.container('broken', `type=recorder\n# fine\nrecordTo=${bad.stage.log}\nmysqlUsername=two words\n`);
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', file], `dysnomia: ${file}:4: mysqlUsername: unexpected text after the value: "words"`);
  });

  it('a container file crafted to run a command: refused, and the command never runs', async () => {
    const bad = await prepare();
    const marker = path.join(bad.stage.root, 'was-run');
    const lines = [`$(touch ${marker})`, `\`touch ${marker}\``, `x; touch ${marker}`, `x | touch ${marker}`, `x && touch ${marker}`];
    for (const [index, value] of lines.entries()) {
      const file = await bad.stage.container(`crafted-${index}`, `type=recorder\nrecordTo=${bad.stage.log}\nname=${value}\n`);
      await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', file], `dysnomia: ${file}:3: name: `);
    }
    await expect(access(marker)).rejects.toThrow();
  });

  it('a component path that does not exist, naming it', async () => {
    const bad = await prepare();
    const missing = path.join(bad.stage.root, 'components', 'missing');
    await expectRejected(bad, ['-o', 'activate', '-c', missing, '-C', bad.container], `dysnomia: component path does not exist: ${missing}\n`);
  });

  it('a component name found nowhere, naming the search path', async () => {
    const bad = await prepare();
    const dir = path.join(bad.stage.root, 'components');
    await expectRejected(
      bad,
      ['-o', 'activate', '-c', 'nope', '-C', bad.container],
      `no component named "nope" for container "prod" in DYSNOMIA_COMPONENTS_PATH (${path.join(dir, 'prod')})`,
      { DYSNOMIA_COMPONENTS_PATH: dir },
    );
  });

  it('a component whose name cannot be a state-dir folder name', async () => {
    const bad = await prepare();
    const odd = path.join(bad.stage.root, 'components', 'semi;colon');
    await mkdir(odd);
    await expectRejected(bad, ['-o', 'activate', '-c', odd, '-C', bad.container], `"semi;colon" (from ${odd}) is not a usable component name`);
  });

  it('a component whose name starts with a dot (the state dir\'s listings skip hidden names)', async () => {
    const bad = await prepare();
    const hidden = path.join(bad.stage.root, 'components', '.hidden');
    await mkdir(hidden);
    await expectRejected(bad, ['-o', 'activate', '-c', hidden, '-C', bad.container], `".hidden" (from ${hidden}) is not a usable component name`);
  });

  it('--environment without --type', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '--environment'], 'dysnomia: --environment needs --type TYPE (the plugin to use)\n');
  });

  it('an unknown option', async () => {
    const bad = await prepare();
    const stderr = await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', bad.container, '--frobnicate'], "dysnomia: error: unknown option '--frobnicate'");
    expect(stderr).toContain('(dysnomia --help shows the usage)');
  });

  it('an option without its value', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-c', bad.stage.component, '-C', bad.container, '-o'], "error: option '-o, --operation <operation>' argument missing");
  });

  it('an unexpected argument', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', bad.container, 'stray'], 'dysnomia: unexpected argument "stray"; see --help\n');
  });

  it('--lock-timeout -1', async () => {
    const bad = await prepare();
    await expectRejected(bad, ['-o', 'activate', '-c', bad.stage.component, '-C', bad.container, '--lock-timeout', '-1'], '--lock-timeout "-1": expected a number of seconds >= 0');
  });
});
