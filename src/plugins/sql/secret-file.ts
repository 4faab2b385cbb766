/**
 * Private temporary files for secrets (a MariaDB option file holding the password): created in a
 * fresh 0700 folder with mode 0600, and removed when the work is done, whatever happened.
 */
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** The owner of the private folder, when a tool runs as another OS user. */
export interface FileOwner {
  uid: number;
  gid: number;
}

/** Runs `work` with a private folder, removed afterwards. */
export async function withPrivateDir<T>(work: (dir: string) => Promise<T>, owner?: FileOwner): Promise<T> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dysnomia-secret-'));
  try {
    if (owner !== undefined) await chown(dir, owner.uid, owner.gid);
    return await work(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes a 0600 file in a private folder and returns its path. */
export async function writePrivateFile(dir: string, name: string, content: string, owner?: FileOwner): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, content, { mode: 0o600, flag: 'wx' });
  if (owner !== undefined) await chown(file, owner.uid, owner.gid);
  return file;
}
