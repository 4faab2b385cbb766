/**
 * Generation symlinks, exactly as Dysnomia makes them:
 * `generations/<container>/<component>/<N> -> ../../../snapshots/<container>/<component>/<id>`.
 */
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { lutimes, mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { type ComponentKey, stateLayout } from '../core/state-dir.js';
import { fsyncPath, readdirOrEmpty } from './fs-util.js';

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
 * The generations of a component, oldest first. Synchronous calls on purpose: a component may
 * have thousands of links, and a thread-pool round trip per readlink costs more than the call.
 */
export async function listGenerations(stateDir: string, key: ComponentKey): Promise<Generation[]> {
  const dir = stateLayout.generations(stateDir, key);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const numbers = names
    .filter((name) => NUMBER.test(name))
    .map(Number)
    .sort((a, b) => a - b);
  const result: Generation[] = [];
  for (const number of numbers) {
    const file = path.join(dir, String(number));
    try {
      result.push({ number, identity: path.basename(readlinkSync(file)), file });
    } catch {
      // Not a symlink (a stray file) or removed meanwhile: not a generation.
    }
  }
  return result;
}

/** The generations with the time each was made, for time-based retention. */
export async function listTimedGenerations(stateDir: string, key: ComponentKey): Promise<TimedGeneration[]> {
  const result: TimedGeneration[] = [];
  for (const generation of await listGenerations(stateDir, key)) {
    try {
      result.push({ ...generation, time: lstatSync(generation.file).mtime });
    } catch {
      // Removed meanwhile.
    }
  }
  return result;
}

/** The newest generation, or undefined when there is none. */
export async function latestGeneration(stateDir: string, key: ComponentKey): Promise<Generation | undefined> {
  const dir = stateLayout.generations(stateDir, key);
  const numbers = (await readdirOrEmpty(dir)).filter((name) => NUMBER.test(name)).map(Number);
  numbers.sort((a, b) => b - a);
  for (const number of numbers) {
    const file = path.join(dir, String(number));
    try {
      return { number, identity: path.basename(readlinkSync(file)), file };
    } catch {
      // Not a symlink: skip it.
    }
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
    const latest = await latestGeneration(stateDir, key);
    if (latest?.identity === identity) return { generation: latest.number, newGeneration: false };
    const number = (latest?.number ?? 0) + 1;
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
