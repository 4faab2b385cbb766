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
  /** Files, folders and reachable sockets under the temporary folder with group or other permissions. */
  badModes: string[];
  /** How many distinct regular files were seen in the temporary folder (not folders, not sockets). */
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

/**
 * Records each entry under `dir` with the permission bits its group and others have on it. For a
 * file or folder, its own mode counts, whatever the folders above it allow: a secret must be
 * private by itself. A socket (a dump tool's output, sql/tool-output.ts) holds nothing; what
 * counts is whether others can reach it to connect, so the folders above it count too (without
 * search permission on a folder, a group or others reach nothing inside it).
 */
async function walk(dir: string, found: Map<string, number>, files: Set<string>, reach = 0o077): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const entry of entries) {
    const file = path.join(dir, entry.name);
    let info;
    try {
      info = await stat(file);
    } catch {
      continue;
    }
    const mode = info.mode & 0o777;
    found.set(file, (found.get(file) ?? 0) | (mode & (info.isSocket() ? reach : 0o077)));
    if (info.isFile()) files.add(file);
    if (info.isDirectory()) await walk(file, found, files, reach & ((mode & 0o010 ? 0o070 : 0) | (mode & 0o001 ? 0o007 : 0)));
  }
}

/** Runs `work` while polling every process's command line and the files under `tmp`. */
export async function watchSecrets<T>(secret: string, tmp: string, work: () => Promise<T>): Promise<SecretWatch<T>> {
  const leaked = new Set<string>();
  const files = new Map<string, number>();
  const regularFiles = new Set<string>();
  let done = false;
  const poll = (async () => {
    while (!done) {
      for (const line of await commandLines()) if (line.includes(secret)) leaked.add(line);
      await walk(tmp, files, regularFiles);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  })();
  try {
    const result = await work();
    return {
      result,
      commandLines: [...leaked],
      badModes: [...files].filter(([, mode]) => mode !== 0).map(([file, mode]) => `${file} ${mode.toString(8)}`),
      secretFiles: regularFiles.size,
    };
  } finally {
    done = true;
    await poll;
  }
}
