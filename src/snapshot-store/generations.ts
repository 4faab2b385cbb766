/**
 * Generation symlinks, exactly as Dysnomia makes them:
 * `generations/<container>/<component>/<N> -> ../../../snapshots/<container>/<component>/<id>`.
 */
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { lutimes, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { fsyncPath } from './fs-util.js';

/** One generation of a component. */
export interface Generation {
  number: number;
  /** The snapshot identity the link names (the basename of its target). */
  identity: string;
  /** The link's own file path. */
  file: string;
}

/** A generation with the time it was made (the link's mtime). */
export interface TimedGeneration extends Generation {
  time: Date;
}

const NUMBER = /^[1-9][0-9]*$/;

/**
 * Whether a failed readlink or lstat of a generation entry means "not a generation": gone
 * meanwhile (ENOENT) or not a symlink (EINVAL). Any other error (EIO, EACCES, a stale NFS handle)
 * is not an answer, and must not read as "no generation": gc would then delete its snapshot.
 */
function notAGeneration(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'EINVAL';
}

/** The generation numbers in `dir`, whatever their entries are; none when it does not exist. */
function generationNumbers(dir: string): number[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return [];
    throw error;
  }
  return names.filter((name) => NUMBER.test(name)).map(Number);
}

/** The generation entry `number` of `dir`, or undefined when it is not a symlink. */
function readGeneration(dir: string, number: number): Generation | undefined {
  const file = path.join(dir, String(number));
  try {
    return { number, identity: path.basename(readlinkSync(file)), file };
  } catch (error) {
    if (notAGeneration(error)) return undefined;
    throw error;
  }
}

/**
 * The generations of a component, oldest first. Synchronous calls on purpose: a component may
 * have thousands of links, and a thread-pool round trip per readlink costs more than the call.
 */
export async function listGenerations(stateDir: string, key: ComponentKey): Promise<Generation[]> {
  const dir = stateLayout.generations(stateDir, key);
  const result: Generation[] = [];
  for (const number of generationNumbers(dir).sort((a, b) => a - b)) {
    const generation = readGeneration(dir, number);
    if (generation !== undefined) result.push(generation);
  }
  return result;
}

/** The generations with the time each was made, for time-based retention. */
export async function listTimedGenerations(stateDir: string, key: ComponentKey): Promise<TimedGeneration[]> {
  const result: TimedGeneration[] = [];
  for (const generation of await listGenerations(stateDir, key)) {
    try {
      result.push({ ...generation, time: lstatSync(generation.file).mtime });
    } catch (error) {
      if (!notAGeneration(error)) throw error; // else removed meanwhile
    }
  }
  return result;
}

/** The newest generation, or undefined when there is none. */
export async function latestGeneration(stateDir: string, key: ComponentKey): Promise<Generation | undefined> {
  const dir = stateLayout.generations(stateDir, key);
  return newestIn(dir, generationNumbers(dir));
}

/** The newest of the generations `numbers` of `dir` that is a link. */
function newestIn(dir: string, numbers: number[]): Generation | undefined {
  for (const number of [...numbers].sort((a, b) => b - a)) {
    const generation = readGeneration(dir, number);
    if (generation !== undefined) return generation;
  }
  return undefined;
}

/** The result of {@link addGeneration}. */
export interface GenerationOutcome {
  generation: number;
  /** False when the latest generation already named this identity (Dysnomia's rule). */
  newGeneration: boolean;
}

/**
 * Makes the next generation point at `identity`, unless the latest one already does. `time` sets
 * the link's mtime (the generation's time for retention); default now.
 */
export async function addGeneration(
  stateDir: string,
  key: ComponentKey,
  identity: string,
  time?: Date,
): Promise<GenerationOutcome> {
  const dir = stateLayout.generations(stateDir, key);
  await mkdir(dir, { recursive: true });
  const target = path.join('..', '..', '..', 'snapshots', key.container, key.component, identity);
  for (;;) {
    const numbers = generationNumbers(dir);
    const latest = newestIn(dir, numbers);
    if (latest?.identity === identity) return { generation: latest.number, newGeneration: false };
    // After the highest entry, not the highest link: a stray file named like a generation must
    // not make the symlink below fail with EEXIST forever.
    const number = numbers.reduce((highest, n) => Math.max(highest, n), 0) + 1;
    const file = path.join(dir, String(number));
    try {
      await symlink(target, file);
    } catch (error) {
      // Someone else made this number meanwhile: look again.
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw error;
    }
    if (time !== undefined) await lutimes(file, time, time);
    await fsyncPath(dir);
    return { generation: number, newGeneration: true };
  }
}
