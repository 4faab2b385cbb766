/** Temporary folders and unique names, so tests run in parallel and leave nothing behind. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { onTestFinished } from 'vitest';

let counter = 0;

/** A name unique to this process and call, usable as an SQL identifier and a file name. */
export function uniqueName(prefix = 't'): string {
  counter += 1;
  const random = Math.random().toString(36).slice(2, 8);
  return `${prefix}_${process.pid}_${counter}_${random}`.toLowerCase();
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
