/**
 * Shared tools of the reliability suite: counting trials and faults, reading the state dir from
 * the outside (symlinks and folders, not through the code under test), running and killing the
 * real programs.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readlink, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { expect } from 'vitest';
import { type CliResult, type Program, programPath, runCli } from '../support/cli.js';
import { git } from '../support/git.js';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

/** Counts of one reliability area, written to test/reliability/results/<area>.json. */
export class Tally {
  trials = 0;
  faults = 0;
  /** What was lost, one line each; the suite asserts it stays empty. */
  readonly lost: string[] = [];
  readonly notes: Record<string, number> = {};

  constructor(readonly area: string) {}

  /** Counts a named event (e.g. "killed during gc"). */
  note(what: string): void {
    this.notes[what] = (this.notes[what] ?? 0) + 1;
  }

  /** Writes the counts and prints them (vitest shows a test's console output). */
  save(): void {
    mkdirSync(RESULTS, { recursive: true });
    const data = { area: this.area, trials: this.trials, faults: this.faults, dataLost: this.lost.length, lost: this.lost, notes: this.notes };
    writeFileSync(path.join(RESULTS, `${this.area}.json`), `${JSON.stringify(data, null, 2)}\n`);
    console.log(`[reliability] ${this.area}: ${this.trials} trials, ${this.faults} faults injected, ${this.lost.length} data lost ${JSON.stringify(this.notes)}`);
  }
}

/** One generation link: its number and the snapshot identity it points at. */
export interface GenerationLink {
  number: number;
  identity: string;
}

/** Every component's generations (`container/component` to links, oldest first), read from disk. */
export async function readGenerations(stateDir: string): Promise<Map<string, GenerationLink[]>> {
  const out = new Map<string, GenerationLink[]>();
  const base = path.join(stateDir, 'generations');
  for (const container of await list(base)) {
    for (const component of await list(path.join(base, container))) {
      const dir = path.join(base, container, component);
      const links: GenerationLink[] = [];
      for (const name of await list(dir)) {
        if (!/^\d+$/.test(name)) continue;
        links.push({ number: Number(name), identity: path.basename(await readlink(path.join(dir, name))) });
      }
      out.set(`${container}/${component}`, links.sort((a, b) => a.number - b.number));
    }
  }
  return out;
}

async function list(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

/**
 * What a reader could see half-made: a generation pointing at a missing folder or at one without
 * manifest.json, a visible (non-temporary) snapshot folder without manifest.json, a checksum of a
 * folder that does not exist. Temporary names (`.tmp-*`) are invisible by design.
 */
export async function visiblePartials(stateDir: string): Promise<string[]> {
  const problems: string[] = [];
  for (const [key, links] of await readGenerations(stateDir)) {
    for (const link of links) {
      const folder = path.join(stateDir, 'snapshots', key, link.identity);
      if (!(await isFile(path.join(folder, 'manifest.json')))) problems.push(`generation ${key}/${link.number} -> ${link.identity}: no complete folder`);
    }
  }
  const snapshots = path.join(stateDir, 'snapshots');
  for (const container of await list(snapshots)) {
    for (const component of await list(path.join(snapshots, container))) {
      for (const id of await list(path.join(snapshots, container, component))) {
        if (id.startsWith('.')) continue;
        if (!(await isFile(path.join(snapshots, container, component, id, 'manifest.json')))) {
          problems.push(`snapshot folder ${container}/${component}/${id} has no manifest.json`);
        }
      }
    }
  }
  const checksums = path.join(stateDir, 'checksums');
  for (const container of await list(checksums)) {
    for (const component of await list(path.join(checksums, container))) {
      for (const id of await list(path.join(checksums, container, component))) {
        if (id.startsWith('.')) continue;
        const folder = path.join(snapshots, container, component, id);
        if (!(await isDirectory(folder))) problems.push(`checksum ${container}/${component}/${id} of a missing folder`);
      }
    }
  }
  return problems;
}

/** Names starting with `.tmp-` under snapshots/ and pool/ (what a kill leaves for the next run). */
export async function tempLeftovers(stateDir: string): Promise<string[]> {
  const found: string[] = [];
  const walk = async (dir: string, depth: number) => {
    for (const name of await list(dir)) {
      if (name.startsWith('.tmp-')) found.push(path.join(dir, name));
      else if (depth > 0) await walk(path.join(dir, name), depth - 1);
    }
  };
  await walk(path.join(stateDir, 'snapshots'), 2);
  await walk(path.join(stateDir, 'pool'), 1);
  return found;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function isDirectory(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isDirectory();
  } catch {
    return false;
  }
}

/** `dysnomia-snapshots --query-all --check` on a state dir; the result, for an expect with its stderr. */
export function checkAll(stateDir: string): Promise<CliResult> {
  return runCli('dysnomia-snapshots', ['--query-all', '--check'], { env: { DYSNOMIA_STATEDIR: stateDir } });
}

/** Expects `--query-all --check` to pass and nothing half-made to be visible. */
export async function expectIntact(stateDir: string, context: string): Promise<void> {
  const check = await checkAll(stateDir);
  expect(check.exitCode, `${context}: --query-all --check failed:\n${check.stderr}`).toBe(0);
  expect(await visiblePartials(stateDir), context).toEqual([]);
}

/** Starts a program in its own process group (so a kill can take its children too). */
export function startCli(program: Program, args: string[], env: Record<string, string>): ResultPromise<{ reject: false; detached: true }> {
  return execa(process.execPath, [programPath(program), ...args], {
    env: { ...env },
    reject: false,
    detached: true,
  });
}

/**
 * SIGKILLs a started program after `ms`: the whole process group (as a service manager does) or
 * only the Node process (as the OOM killer does, leaving its children orphaned). Resolves to
 * whether the kill landed before the program had finished.
 */
export async function killAfter(child: ResultPromise, ms: number, wholeGroup: boolean): Promise<boolean> {
  let finished = false;
  void child.then(() => {
    finished = true;
  });
  await new Promise((resolve) => setTimeout(resolve, ms));
  if (!finished && child.pid !== undefined) {
    try {
      if (wholeGroup) process.kill(-child.pid, 'SIGKILL');
      else process.kill(child.pid, 'SIGKILL');
    } catch {
      // it ended in between
    }
  }
  const result = await child;
  if (wholeGroup && child.pid !== undefined) {
    // Children that outlived the group leader's death would keep writing; make sure they are gone.
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // none left
    }
  }
  return result.signal === 'SIGKILL';
}

/** Adds a commit of `bytes` incompressible bytes to a work repository and pushes it to `repo`. */
export async function pushChange(work: string, repo: string, bytes: number, label: string): Promise<void> {
  await writeFile(path.join(work, `data-${label}.bin`), randomBytes(bytes));
  await git(work, 'add', '.');
  await git(work, 'commit', '-q', '-m', `change ${label}`);
  await git(work, 'push', '-q', '--force', repo, 'HEAD:refs/heads/main');
}

/** Every ref of a repository with its target, and HEAD's symbolic ref: equal for equal states. */
export async function refState(repo: string): Promise<string> {
  const refs = await git(repo, 'for-each-ref', '--format=%(objectname) %(refname)');
  const head = await git(repo, 'symbolic-ref', 'HEAD');
  return `${refs}\nHEAD -> ${head}`;
}

/** A random integer in [min, max). */
export function randomInt(min: number, max: number): number {
  return Math.floor(min + Math.random() * (max - min));
}

/** A component a loop snapshots and restores through the real CLI. */
export interface Subject {
  stateDir: string;
  /** The dysnomia arguments naming the component and container. */
  target: string[];
  /** `container/component`, as in generations/. */
  key: string;
  /** A fingerprint of the live component, equal for equal states. */
  fingerprint(): Promise<string>;
  /** Moves the live component away from its latest snapshot (for the final restore). */
  damage(): Promise<void>;
}

/** The live component's fingerprint at each snapshot identity, remembered as the loop goes. */
export function fingerprintMemory(subject: Subject) {
  const fingerprints = new Map<string, string>();
  return {
    /** Records the live fingerprint for the newest generation. */
    async remember(): Promise<void> {
      const links = (await readGenerations(subject.stateDir)).get(subject.key) ?? [];
      fingerprints.set(links.at(-1)!.identity, await subject.fingerprint());
    },
    /**
     * Damages the component and restores it: the restore must give back the fingerprint of the
     * newest generation (one trial; anything else is lost data).
     */
    async expectLatestRestores(tally: Tally): Promise<void> {
      const latest = ((await readGenerations(subject.stateDir)).get(subject.key) ?? []).at(-1)!;
      await subject.damage();
      const restore = await runCli('dysnomia', ['--operation', 'restore', ...subject.target], { env: { DYSNOMIA_STATEDIR: subject.stateDir } });
      expect(restore.exitCode, restore.stderr).toBe(0);
      tally.trials += 1;
      if ((await subject.fingerprint()) !== fingerprints.get(latest.identity)) tally.lost.push(`the restore did not give back ${latest.identity}`);
    },
  };
}

