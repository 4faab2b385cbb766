/**
 * `npm run demo`: shows what dysnomia is for, with no database server: a git repository as a
 * mutable component is activated, snapshotted, changed, damaged by a bad force-push, and restored.
 * Everything happens in a temporary folder (state dir included) that is removed at the end;
 * `--keep` leaves it for inspection.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), 'bin');

/** Our own git commands (making commits) must not depend on the user's git configuration. */
const GIT_ENV = {
  GIT_AUTHOR_NAME: 'Demo',
  GIT_AUTHOR_EMAIL: 'demo@example.com',
  GIT_COMMITTER_NAME: 'Demo',
  GIT_COMMITTER_EMAIL: 'demo@example.com',
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
};

class DemoFailure extends Error {}

interface Demo {
  dir: string;
  stateDir: string;
  repo: string;
  step: number;
}

function say(text = ''): void {
  process.stdout.write(`${text}\n`);
}

function heading(demo: Demo, text: string): void {
  demo.step += 1;
  say();
  say(`${demo.step}. ${text}`);
}

function indent(text: string): string {
  return text
    .trimEnd()
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => `     ${line}`)
    .join('\n');
}

function check(condition: boolean, what: string): void {
  if (!condition) throw new DemoFailure(what);
  say(`   ok: ${what}`);
}

async function git(cwd: string, ...args: string[]): Promise<string> {
  return (await execa('git', args, { cwd, env: GIT_ENV })).stdout;
}

/** Runs a dysnomia program in the demo folder, printing the command and what it said. */
async function dysnomia(demo: Demo, program: string, args: string[]): Promise<void> {
  say(`   $ ${program} ${args.join(' ')}`);
  const result = await execa(process.execPath, [path.join(CLI, `${program}.js`), ...args], {
    cwd: demo.dir,
    env: { DYSNOMIA_STATEDIR: demo.stateDir },
    reject: false,
  });
  const output = [result.stdout, result.stderr].filter((text) => text !== '').join('\n');
  if (output !== '') say(indent(output));
  if (result.exitCode !== 0) throw new DemoFailure(`${program} exited with status ${result.exitCode}`);
}

const operation = (demo: Demo, name: string) =>
  dysnomia(demo, 'dysnomia', ['--operation', name, '--component', './components/website', '--container', './containers/git-repos']);

async function generations(demo: Demo): Promise<string[]> {
  const dir = path.join(demo.stateDir, 'generations', 'git-repos', 'website');
  return (await readdir(dir).catch(() => [])).sort((a, b) => Number(a) - Number(b));
}

async function history(demo: Demo): Promise<string> {
  return git(demo.repo, 'log', '--oneline', '--decorate', '--all');
}

async function commitFile(work: string, file: string, content: string, message: string): Promise<void> {
  await writeFile(path.join(work, file), content);
  await git(work, 'add', file);
  await git(work, 'commit', '-q', '-m', message);
}

async function run(demo: Demo): Promise<void> {
  const work = path.join(demo.dir, 'work');
  say('dysnomia demo: a git repository as a mutable component (no database server needed)');
  say(`Working in ${demo.dir}`);

  heading(demo, 'Make a component: a folder holding git-repositories/initial.bundle, and a container file');
  await mkdir(work);
  await git(work, 'init', '-q', '-b', 'main');
  await commitFile(work, 'index.html', '<h1>Hello</h1>\n', 'Add home page');
  await commitFile(work, 'style.css', 'h1 { color: teal }\n', 'Add style');
  await mkdir(path.join(demo.dir, 'components', 'website', 'git-repositories'), { recursive: true });
  await git(work, 'bundle', 'create', '-q', '../components/website/git-repositories/initial.bundle', '--all');
  await mkdir(path.join(demo.dir, 'containers'));
  const container = `type=git-repository\ngitBaseDir=${path.join(demo.dir, 'repos')}\n`;
  await writeFile(path.join(demo.dir, 'containers', 'git-repos'), container);
  say('   containers/git-repos:');
  say(indent(container));

  heading(demo, 'Activate: create the bare repository from the bundle');
  await operation(demo, 'activate');
  say(indent(await history(demo)));
  check((await git(demo.repo, 'rev-list', '--count', 'main')) === '2', 'the repository has the 2 commits of the bundle');

  heading(demo, 'Snapshot: the first generation');
  await operation(demo, 'snapshot');
  check((await generations(demo)).length === 1, 'generation 1 exists');

  heading(demo, 'Work goes on: a developer pushes two commits and a tag');
  await git(work, 'remote', 'add', 'origin', demo.repo);
  await commitFile(work, 'contact.html', '<p>Write to us</p>\n', 'Add contact page');
  await commitFile(work, 'index.html', '<h1>Hello</h1>\n<a href="contact.html">Contact</a>\n', 'Link the contact page');
  await git(work, 'tag', 'v1.1');
  await git(work, 'push', '-q', 'origin', 'main', 'v1.1');
  const good = await git(demo.repo, 'rev-parse', 'main');
  say(indent(await history(demo)));

  heading(demo, 'Snapshot again: the refs changed, so a second generation');
  await operation(demo, 'snapshot');
  check((await generations(demo)).length === 2, 'generation 2 exists');

  heading(demo, 'Snapshot once more without changes: nothing is bundled, no new generation');
  await operation(demo, 'snapshot');
  check((await generations(demo)).length === 2, 'still 2 generations');

  heading(demo, 'Accident: someone force-pushes main back to the first commit and deletes the tag');
  await git(work, 'push', '-q', '--force', 'origin', 'main~3:main', ':refs/tags/v1.1');
  say(indent(await history(demo)));
  check((await git(demo.repo, 'rev-parse', 'main')) !== good, 'the two new commits are gone from main');

  heading(demo, 'Restore: the latest snapshot comes back (built beside the live repository, checked, then swapped in)');
  await operation(demo, 'restore');
  say(indent(await history(demo)));
  check((await git(demo.repo, 'rev-parse', 'main')) === good, `main is back at ${good.slice(0, 7)} ("Link the contact page")`);
  check((await git(demo.repo, 'tag', '--list')).split('\n').includes('v1.1'), 'tag v1.1 is back');
  const fsck = await execa('git', ['fsck', '--no-progress'], { cwd: demo.repo, env: GIT_ENV, reject: false });
  check(fsck.exitCode === 0, 'git fsck finds nothing wrong');

  heading(demo, 'The snapshots kept in the state dir');
  await dysnomia(demo, 'dysnomia-snapshots', ['--query-all', '--check']);
}

async function main(argv: string[]): Promise<number> {
  const keep = argv.includes('--keep');
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-demo-'));
  const demo: Demo = { dir, stateDir: path.join(dir, 'state'), repo: path.join(dir, 'repos', 'website'), step: 0 };
  try {
    await run(demo);
    say();
    say('Demo finished: every step did what it said.');
    return 0;
  } catch (error) {
    say();
    say(`Demo FAILED at step ${demo.step}: ${error instanceof Error ? error.message : String(error)}`);
    if (!(error instanceof DemoFailure) && error instanceof Error && 'stderr' in error) say(String(error.stderr));
    return 1;
  } finally {
    if (keep) say(`Kept ${dir} (--keep); remove it when done.`);
    else {
      await rm(dir, { recursive: true, force: true });
      say(`Removed ${dir}.`);
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`demo: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
