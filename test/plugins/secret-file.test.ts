/**
 * The private folders of the SQL plugins' secrets (a MariaDB option file that may hold the
 * password): a run killed before it removed its folder leaves it in /tmp, and the next run on this
 * host removes it, and nothing else.
 */
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { HOST_TAG, processStartTime } from '../../src/core/lock.js';
import { removeSecretsOfDeadRuns, withPrivateDir, writePrivateFile } from '../../src/plugins/sql/secret-file.js';
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
  it('removes the folder of an earlier process that had this process\'s pid (another start time)', async () => {
    const tmp = await useTempDir('dysnomia-tmp-');
    const start = processStartTime(process.pid);
    expect(start).toBeDefined();
    const live = `dysnomia-secret-${process.pid}.${start}@${HOST_TAG}-live01`;
    const earlier = `dysnomia-secret-${process.pid}.${start! - 1}@${HOST_TAG}-old001`;
    for (const name of [live, earlier]) await secretDir(tmp, name);
    await removeSecretsOfDeadRuns(tmp);
    expect(await readdir(tmp)).toEqual([live]);
  });

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
    // Named like a dead run's folder, but a link to a folder elsewhere: neither goes.
    const elsewhere = await secretDir(tmp, 'elsewhere');
    await symlink(elsewhere, path.join(tmp, `dysnomia-secret-${dead}@${HOST_TAG}-link01`));
    keep.push('elsewhere', `dysnomia-secret-${dead}@${HOST_TAG}-link01`);
    // A dead run's folder owned by another user stays (as root: chowned to nobody).
    if (process.getuid?.() === 0) {
      const foreign = await secretDir(tmp, `dysnomia-secret-${dead}@${HOST_TAG}-foreign`);
      await chown(foreign, 65534, 65534);
      keep.push(path.basename(foreign));
    }

    await removeSecretsOfDeadRuns(tmp);
    expect((await readdir(tmp)).sort()).toEqual([...keep].sort());
    expect(await readdir(elsewhere)).toEqual(['client.cnf']);
  });

  it('removes only the plain files of a dead run\'s folder, never what is below a folder in it', async () => {
    const tmp = await useTempDir('dysnomia-tmp-');
    const folder = await secretDir(tmp, `dysnomia-secret-${await deadPid()}@${HOST_TAG}-nested`);
    await secretDir(folder, 'sub');
    await removeSecretsOfDeadRuns(tmp);
    expect(await readdir(folder)).toEqual(['sub']);
    expect(await readdir(path.join(folder, 'sub'))).toEqual(['client.cnf']);
  });

  it('a new private folder carries the pid and host, and a dead run\'s folder in the temp dir goes first', async () => {
    // A temp dir of this test's own (os.tmpdir() follows TMPDIR), so no other run sweeps it.
    const tmp = await useTempDir('dysnomia-tmp-');
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    onTestFinished(() => {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    });
    const leftover = await secretDir(tmp, `dysnomia-secret-${await deadPid()}@${HOST_TAG}-test01`);
    let used = '';
    await withPrivateDir(async (dir) => {
      used = dir;
      expect(existsSync(leftover)).toBe(false);
    });
    expect(path.dirname(used)).toBe(tmp);
    expect(path.basename(used)).toMatch(new RegExp(`^dysnomia-secret-${process.pid}\\.${processStartTime(process.pid)}@${HOST_TAG}-`));
    expect(existsSync(used)).toBe(false);
  });

  it('sweeps nothing in a temp dir that others may write and that is not sticky', async () => {
    const tmp = await useTempDir('dysnomia-tmp-');
    const name = `dysnomia-secret-${await deadPid()}@${HOST_TAG}-open01`;
    await secretDir(tmp, name);
    await chmod(tmp, 0o777);
    await removeSecretsOfDeadRuns(tmp);
    expect(await readdir(tmp)).toEqual([name]);
    await chmod(tmp, 0o1777);
    await removeSecretsOfDeadRuns(tmp);
    expect(await readdir(tmp)).toEqual([]);
  });

  it('a folder whose file goes to another OS user stays this user\'s, reachable but not listable (0711)', async () => {
    const uid = process.getuid!();
    const nobody = { uid: 65534, gid: 65534 };
    await withPrivateDir(async (dir) => {
      const file = await writePrivateFile(dir, 'pgpass', 'secret', uid === 0 ? nobody : undefined);
      const folder = await stat(dir);
      expect(folder.uid).toBe(uid);
      expect(folder.mode & 0o777).toBe(0o711);
      if (uid === 0) expect((await stat(file)).uid).toBe(65534);
      expect((await stat(file)).mode & 0o777).toBe(0o600);
    }, uid === 0 ? nobody : { uid, gid: process.getgid!() });
  });
});
