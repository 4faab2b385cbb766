/** Temporary folders and unique names, so tests run in parallel and leave nothing behind. */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';

let counter = 0;

/** PostgreSQL silently truncates longer identifiers (NAMEDATALEN - 1). */
const MAX_NAME = 63;

/** A name unique to this process and call, usable as an SQL identifier and a file name. */
export function uniqueName(prefix = 't'): string {
  counter += 1;
  // The counter restarts in every test file's module instance, and a worker process may run
  // several files: the random part keeps names apart across them.
  const random = randomBytes(5).toString('hex');
  const name = `${prefix}_${process.pid}_${counter}_${random}`.toLowerCase();
  if (name.length > MAX_NAME) {
    throw new Error(`uniqueName(${JSON.stringify(prefix)}): ${name} is longer than ${MAX_NAME} characters; use a shorter prefix`);
  }
  return name;
}

/** A new temporary folder; the caller removes it (see {@link useTempDir} inside a test). */
export function makeTempDir(prefix = 'dysnomia-test-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** A new temporary folder removed when the current test finishes. Call inside a test. */
export async function useTempDir(prefix = 'dysnomia-test-'): Promise<string> {
  const dir = await makeTempDir(prefix);
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Removes a folder made with makeTempDir. */
export function removeDir(dir: string): Promise<void> {
  return rm(dir, { recursive: true, force: true });
}
