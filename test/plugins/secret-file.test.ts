/**
 * The private folders of the SQL plugins' secrets (a MariaDB option file that may hold the
 * password): a run killed before it removed its folder leaves it in /tmp, and the next run on this
 * host removes it, and nothing else.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { HOST_TAG } from '../../src/core/lock.js';
import { removeSecretsOfDeadRuns, withPrivateDir } from '../../src/plugins/sql/secret-file.js';
import { deadPid } from '../store/helpers.js';
import { useTempDir } from '../support/temp.js';

/** Makes a secret folder named `name` in `dir`, holding an option file. */
async function secretDir(dir: string, name: string): Promise<string> {
  const folder = path.join(dir, name);
  await mkdir(folder, { mode: 0o700 });
  await writeFile(path.join(folder, 'client.cnf'), '[client]\npassword="secret"\n', { mode: 0o600 });
  return folder;
}

describe('secret folders of killed runs', () => {
  it('removes those of dead processes on this host, and keeps live, other-host, old-style and unrelated ones', async () => {
    const tmp = await useTempDir('dysnomia-tmp-');
    const dead = await deadPid();
    const otherHost = HOST_TAG === '00000000' ? 'ffffffff' : '00000000';
    const keep = [
      `dysnomia-secret-${process.pid}@${HOST_TAG}-live01`,
      `dysnomia-secret-${dead}@${otherHost}-other1`,
      'dysnomia-secret-Ab12Cd',
      `unrelated-${dead}@${HOST_TAG}-x`,
    ];
    for (const name of keep) await secretDir(tmp, name);
    await secretDir(tmp, `dysnomia-secret-${dead}@${HOST_TAG}-dead01`);

    await removeSecretsOfDeadRuns(tmp);
    expect((await readdir(tmp)).sort()).toEqual([...keep].sort());
  });

  it('a new private folder carries the pid and host, and a dead run\'s folder in the system temp dir goes first', async () => {
    const leftover = await secretDir(os.tmpdir(), `dysnomia-secret-${await deadPid()}@${HOST_TAG}-test${process.pid}`);
    onTestFinished(() => rm(leftover, { recursive: true, force: true }));
    let used = '';
    await withPrivateDir(async (dir) => {
      used = dir;
      expect(existsSync(leftover)).toBe(false);
    });
    expect(path.basename(used)).toMatch(new RegExp(`^dysnomia-secret-${process.pid}@${HOST_TAG}-`));
    expect(existsSync(used)).toBe(false);
  });
});
