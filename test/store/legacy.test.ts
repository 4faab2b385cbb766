import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { IntegrityError } from '../../src/core/errors.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { legacyDumpOf } from '../../src/snapshot-store/legacy.js';
import { runCli } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, readAll, sha256, streamOf } from './helpers.js';

const key = { container: 'postgresql-database', component: 'testdb' };

/**
 * Builds a snapshot as Dysnomia's modules do: `<dump> | xz > dump.pgsql.xz`, the folder named by
 * the SHA-256 of that file, generation N, and the checksum of computeOutputHash: the SHA-256 of
 * `find .` output, an empty line, then the file's content (written with `echo -n`).
 */
async function dysnomiaSnapshot(stateDir: string, dump: Buffer, file = 'dump.pgsql.xz', generation = 1) {
  const xz = Buffer.from((await execa('xz', ['-c'], { input: dump, encoding: 'buffer' })).stdout);
  const id = sha256(xz);
  const folder = path.join(stateDir, 'snapshots', key.container, key.component, id);
  await mkdir(folder, { recursive: true });
  await writeFile(path.join(folder, file), xz);
  const generations = path.join(stateDir, 'generations', key.container, key.component);
  await mkdir(generations, { recursive: true });
  await symlink(`../../../snapshots/${key.container}/${key.component}/${id}`, path.join(generations, String(generation)));
  const checksum = createHash('sha256').update(`.\n./${file}\n\n`).update(xz).digest('hex');
  const checksums = path.join(stateDir, 'checksums', key.container, key.component);
  await mkdir(checksums, { recursive: true });
  await writeFile(path.join(checksums, id), `sha256:${checksum}`);
  return { id, folder, xz, checksum: `sha256:${checksum}` };
}

const cli = (stateDir: string, args: string[]) => runCli('dysnomia-snapshots', args, { env: { DYSNOMIA_STATEDIR: stateDir } });

describe("Dysnomia's own snapshot folders", () => {
  it('are listed, checked and restored as the decompressed dump', async () => {
    const stateDir = await useTempDir();
    const dump = fakeDump(400_000, 5);
    const { id } = await dysnomiaSnapshot(stateDir, dump);
    expect((await cli(stateDir, ['--query-all'])).stdout).toBe(`${key.container}/${key.component}/${id}\n`);
    const check = await cli(stateDir, ['--query-latest', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    const store = new SnapshotStore(stateDir);
    const source = await store.latest(key);
    expect(source?.identity).toBe(id);
    expect(source?.streams).toEqual(['dump.pgsql']);
    expect(source?.size('dump.pgsql')).toBe(dump.length);
    expect((await readAll(source!, 'dump.pgsql')).equals(dump)).toBe(true);
  });

  it('says a snapshot could not be checked, not that it is damaged, when xz is missing', async () => {
    const stateDir = await useTempDir();
    const { id } = await dysnomiaSnapshot(stateDir, fakeDump(50_000, 3));
    const emptyPath = await useTempDir();
    const check = await runCli('dysnomia-snapshots', ['--query-all', '--check'], { env: { DYSNOMIA_STATEDIR: stateDir, PATH: emptyPath } });
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toContain(`could not check: `);
    expect(check.stderr).toMatch(/xz/);
    expect(check.stderr).toContain(`1 could not be checked (${key.container}/${key.component}/${id})`);
    expect(check.stderr).not.toMatch(/damaged|check failed/);
    const json = await runCli('dysnomia-snapshots', ['--query-all', '--check', '--json'], { env: { DYSNOMIA_STATEDIR: stateDir, PATH: emptyPath } });
    expect(JSON.parse(json.stdout)).toMatchObject([{ ok: false, status: 'unchecked' }]);
  });

  it('says a dump this user may not read could not be checked, not that it is damaged', async () => {
    const stateDir = await useTempDir();
    const { id, folder } = await dysnomiaSnapshot(stateDir, fakeDump(50_000, 8));
    // The mode an import gives it: snapshot data is not readable by other users.
    await chmod(path.join(folder, 'dump.pgsql.xz'), 0o440);
    await chmod(stateDir, 0o755);
    const check = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), '--query-all', '--check'],
      { env: { DYSNOMIA_STATEDIR: stateDir }, reject: false },
    );
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toMatch(/cannot read \S+dump\.pgsql\.xz: permission denied; snapshot data is readable by its owner and group \(uid 0, gid 0\) only/);
    expect(check.stderr).toContain(`1 could not be checked (${key.container}/${key.component}/${id})`);
    expect(check.stderr).not.toMatch(/damaged|check failed/);
  });

  it('keeps history: a new snapshot on top is generation 2, and gc removes the old folder', async () => {
    const stateDir = await useTempDir();
    const { id } = await dysnomiaSnapshot(stateDir, fakeDump(100_000, 1), 'dump.sql.xz');
    const store = new SnapshotStore(stateDir);
    const next = await store.write(key, { type: 'postgresql-database' }, (sink) => sink.addStream('dump.pgsql', streamOf(fakeDump(100_000, 2))));
    expect(next?.generation).toBe(2);
    expect((await cli(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
    const gc = await cli(stateDir, ['--gc']);
    expect(gc.stderr).toContain(`removing snapshot ${key.container}/${key.component}/${id}`);
    expect((await cli(stateDir, ['--query-all'])).stdout).toBe(`${key.container}/${key.component}/${next!.identity}\n`);
  });

  it('reports a damaged dump: --check fails and a read ends in an IntegrityError', async () => {
    const stateDir = await useTempDir();
    const { id, folder } = await dysnomiaSnapshot(stateDir, fakeDump(300_000, 3));
    const file = path.join(folder, 'dump.pgsql.xz');
    await chmod(file, 0o644);
    const handle = await open(file, 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 20_000);
    byte[0] = byte[0]! ^ 0x10;
    await handle.write(byte, 0, 1, 20_000);
    await handle.close();
    const check = await cli(stateDir, ['--query-all', '--check']);
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toContain(`check failed: ${key.container}/${key.component}/${id}: dump.pgsql.xz is damaged`);
    const source = await new SnapshotStore(stateDir).latest(key);
    const error = await readAll(source!, 'dump.pgsql').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
  });

  it('does not restore a valid dump that is not the one the folder was made with', async () => {
    const stateDir = await useTempDir();
    const { folder } = await dysnomiaSnapshot(stateDir, fakeDump(50_000, 3));
    // Another dump, valid xz, in its place: xz's own check passes, the folder's checksum does not.
    const other = Buffer.from((await execa('xz', ['-c'], { input: fakeDump(50_000, 4), encoding: 'buffer' })).stdout);
    await chmod(path.join(folder, 'dump.pgsql.xz'), 0o644);
    await writeFile(path.join(folder, 'dump.pgsql.xz'), other);
    const source = await new SnapshotStore(stateDir).latest(key);
    const error = await readAll(source!, 'dump.pgsql').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect((error as Error).message).toMatch(/does not match its checksum/);
  });

  it('refuses to import a folder whose dump is not the one its name says', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const { id, folder } = await dysnomiaSnapshot(source, fakeDump(50_000, 5), 'dump.sql.xz');
    const copy = path.join(await useTempDir(), id);
    await execa('cp', ['-a', folder, copy]);
    const other = Buffer.from((await execa('xz', ['-c'], { input: fakeDump(50_000, 6), encoding: 'buffer' })).stdout);
    await chmod(path.join(copy, 'dump.sql.xz'), 0o644);
    await writeFile(path.join(copy, 'dump.sql.xz'), other);
    const result = await cli(target, ['--import', '-C', key.container, '-c', key.component, copy]);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`dump.sql.xz does not match the snapshot's name (its SHA-256 is ${sha256(other)})`);
    expect((await cli(target, ['--query-all'])).stdout).toBe('');
  });

  it('refuses to import a folder whose name is not a SHA-256, which its dump could not be checked against (exit 2)', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const { folder } = await dysnomiaSnapshot(source, fakeDump(50_000, 7), 'dump.pgsql.xz');
    const copy = path.join(await useTempDir(), 'deadbeef');
    await execa('cp', ['-a', folder, copy]);
    const result = await cli(target, ['--import', '-C', key.container, '-c', key.component, copy]);
    expect(result.exitCode, result.stderr).toBe(2);
    expect(result.stderr).toContain(`cannot import ${copy}: a Dysnomia snapshot folder is named by the SHA-256 of its dump.pgsql.xz, and "deadbeef" is not one`);
    expect((await cli(target, ['--query-all'])).stdout).toBe('');
  });

  it('takes only Dysnomia\'s dump names for one, not names every object has (toString, constructor)', async () => {
    for (const name of ['toString', 'constructor', '__proto__', 'dump.sql.xz']) {
      const folder = await useTempDir();
      await writeFile(path.join(folder, name), 'x');
      expect(await legacyDumpOf(folder), name).toBe(name === 'dump.sql.xz' ? name : undefined);
    }
  });

  it('finds a folder that no longer matches its Dysnomia checksum', async () => {
    const stateDir = await useTempDir();
    const { id } = await dysnomiaSnapshot(stateDir, fakeDump(50_000, 3));
    await writeFile(path.join(stateDir, 'checksums', key.container, key.component, id), `sha256:${'1'.repeat(64)}`);
    const check = await cli(stateDir, ['--query-all', '--check']);
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toMatch(/does not match its checksum/);
  });

  it('are imported into a fresh store with the checksum Dysnomia would compute', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const dump = fakeDump(200_000, 8);
    const { id, folder, checksum } = await dysnomiaSnapshot(source, dump, 'dump.sql.xz');
    const copy = path.join(await useTempDir(), id);
    await execa('cp', ['-a', folder, copy]);
    const result = await cli(target, ['--import', '-C', key.container, '-c', key.component, copy]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await readFile(path.join(target, 'checksums', key.container, key.component, id), 'utf8')).toBe(checksum);
    expect((await cli(target, ['--query-all', '--check'])).exitCode).toBe(0);
    const latest = await new SnapshotStore(target).latest(key);
    expect((await readAll(latest!, 'dump.sql')).equals(dump)).toBe(true);
  });
});
