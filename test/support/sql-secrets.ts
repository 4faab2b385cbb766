/**
 * Watches a running operation for leaked secrets: a password on any process's command line (what
 * `ps` shows), and private files under TMPDIR that others could read.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export interface SecretWatch<T> {
  result: T;
  /** Command lines that contained the secret. */
  commandLines: string[];
  /** Files or folders under the temporary folder with group or other permissions. */
  badModes: string[];
  /** How many distinct files were seen in the temporary folder. */
  secretFiles: number;
}

async function commandLines(): Promise<string[]> {
  const lines: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      lines.push((await readFile(`/proc/${pid}/cmdline`)).toString().replaceAll('\0', ' '));
    } catch {
      // the process ended
    }
  }
  return lines;
}

async function walk(dir: string, found: Map<string, number>): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    try {
      found.set(file, (await stat(file)).mode & 0o777);
    } catch {
      continue;
    }
    if (entry.isDirectory()) await walk(file, found);
  }
}

/** Runs `work` while polling every process's command line and the files under `tmp`. */
export async function watchSecrets<T>(secret: string, tmp: string, work: () => Promise<T>): Promise<SecretWatch<T>> {
  const leaked = new Set<string>();
  const files = new Map<string, number>();
  let done = false;
  const poll = (async () => {
    while (!done) {
      for (const line of await commandLines()) if (line.includes(secret)) leaked.add(line);
      await walk(tmp, files);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  try {
    const result = await work();
    return {
      result,
      commandLines: [...leaked],
      badModes: [...files].filter(([, mode]) => (mode & 0o077) !== 0).map(([file, mode]) => `${file} ${mode.toString(8)}`),
      secretFiles: [...files.keys()].filter((file) => !file.endsWith(path.sep)).length,
    };
  } finally {
    done = true;
    await poll;
  }
}
