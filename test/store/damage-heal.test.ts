/**
 * A damaged pack that --check or a restore found is recorded, and the next snapshot heals what it
 * can: it does not reuse the damaged data, a pack of the same bytes that it makes replaces the
 * damaged copy in the pool and in every snapshot folder, and an unchanged component's snapshot
 * replaces its damaged copy instead of saying "unchanged". Through the real store, the built
 * programs and, for git, the real plugin.
 */
import { chmod, cp, readdir, readFile, readlink, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { git } from '../support/git.js';
import { gitSetup } from '../support/git-repository.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, flipByte, readAll, recordingLogger, snapshots, streamOf, treeOf } from './helpers.js';

const key = { container: 'mysql-production', component: 'testdb' };

/** A snapshot of one dump stream, as the SQL plugins write it. */
function writeDump(store: SnapshotStore, data: Buffer) {
  return store.write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', streamOf(data)));
}

async function packsOf(folder: string): Promise<string[]> {
  return (await readdir(folder)).filter((name) => name.endsWith('.pack')).map((name) => path.join(folder, name));
}

async function recorded(stateDir: string): Promise<string[]> {
  return readdir(path.join(stateDir, 'pool', '.damaged')).catch(() => []);
}

/** dysnomia-snapshots run as the user nobody on `stateDir`. */
function checkAsNobody(stateDir: string, args: string[]) {
  return execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), ...args], {
    env: { DYSNOMIA_STATEDIR: stateDir },
    reject: false,
  });
}

describe('damaged packs are recorded and healed by the next snapshot', () => {
  it('an unchanged component: --check records the damage, and the next snapshot makes the same pack again, which heals it in place', async () => {
    const stateDir = await useTempDir();
    const log = recordingLogger();
    const store = new SnapshotStore(stateDir, { log });
    const base = fakeDump(3_000_000, 5);
    const write = () => writeDump(store, base);
    const first = (await write())!;
    const pack = (await packsOf(first.path))[0]!;
    await flipByte(pack, 1000);

    const check = await snapshots(stateDir, ['--query-all', '--check']);
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toContain(`pack ${path.basename(pack, '.pack')} is now recorded as damaged`);
    expect(await recorded(stateDir)).toEqual([path.basename(pack, '.pack')]);
    // Not offered to a sender: an export with --have must carry it, to heal it here.
    expect((await snapshots(stateDir, ['--list-packs'])).stdout).not.toContain(path.basename(pack, '.pack'));

    // Unchanged, but not "unchanged": the data is stored anew, in the same bytes, and that copy
    // takes the damaged one's place in the pool and in the snapshot's folder.
    const again = (await write())!;
    expect(again.identity).toBe(first.identity);
    expect(log.lines.join('\n')).toContain(`pack ${path.basename(pack, '.pack')} was damaged; a good copy of it replaced it in the pool and in 1 snapshot folder`);
    const after = await snapshots(stateDir, ['--query-all', '--check']);
    expect(after.exitCode, after.stderr).toBe(0);
    expect(await recorded(stateDir)).toEqual([]);
    expect((await readAll(await new SnapshotStore(stateDir).open(key, first.identity), 'dump.sql')).equals(base)).toBe(true);
  });

  it('--check says once that a pack several snapshots link is now recorded, and names it for each', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const base = fakeDump(3_000_000, 6);
    const first = (await writeDump(store, base))!;
    await writeDump(store, Buffer.concat([base, Buffer.from('one more row\n')]));
    await writeDump(store, Buffer.concat([base, Buffer.from('two more rows\n')]));
    const pack = path.basename((await packsOf(first.path))[0]!, '.pack');
    await flipByte(path.join(stateDir, 'pool', pack.slice(0, 2), `${pack}.pack`), 1000);
    const check = await snapshots(stateDir, ['--query-all', '--check']);
    expect(check.exitCode).toBe(1);
    expect(check.stderr).toContain('3 damaged');
    expect(check.stderr.split(`pack ${pack} is now recorded as damaged`)).toHaveLength(2);
    expect(check.stderr.split(pack).length).toBeGreaterThanOrEqual(4);
  });

  it('a snapshot whose data comes out in other packs replaces the damaged copy of the same snapshot; an older one that shares the pack stays damaged', async () => {
    const stateDir = await useTempDir();
    const log = recordingLogger();
    const store = new SnapshotStore(stateDir, { log });
    const base = fakeDump(3_000_000, 7);
    const changed = Buffer.concat([base, Buffer.from('one more row\n')]);
    const write = (data: Buffer) => writeDump(store, data);
    const first = (await write(base))!;
    const second = (await write(changed))!;
    // The second snapshot reuses the first one's pack: one byte of it damages both.
    const shared = (await packsOf(first.path))[0]!;
    await flipByte(shared, 1000);
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(1);

    // The latest content again: stored anew in one new pack, which replaces the second snapshot.
    const again = (await write(changed))!;
    expect(again.identity).toBe(second.identity);
    expect(log.lines.join('\n')).toContain(`snapshot ${key.container}/${key.component}/${second.identity} in the store was damaged (pack ${path.basename(shared, '.pack')}); the snapshot just taken, which is the same, replaced it`);
    const latest = await snapshots(stateDir, ['--query-latest', '--check']);
    expect(latest.exitCode, latest.stderr).toBe(0);
    expect((await readAll(await new SnapshotStore(stateDir).open(key, second.identity), 'dump.sql')).equals(changed)).toBe(true);
    // The first snapshot still links the damaged copy, and --check still says so.
    const all = await snapshots(stateDir, ['--query-all', '--check']);
    expect(all.exitCode).toBe(1);
    expect(all.stderr).toContain(first.identity);
    expect(all.stderr).not.toContain(`check failed: generation 2`);
  });

  it('a restore that meets damaged data records it; a snapshot of changed data then stores it anew and is intact', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const base = fakeDump(2_000_000, 6);
    const write = (data: Buffer) => writeDump(store, data);
    const first = (await write(base))!;
    const pack = (await packsOf(first.path))[0]!;
    await flipByte(pack, 500);

    const failed = await store.withLatest(key, (source) => readAll(source!, 'dump.sql')).catch((error: unknown) => error);
    expect((failed as Error).message).toContain('does not match its checksum');
    expect(await recorded(stateDir)).toEqual([path.basename(pack, '.pack')]);

    const changed = Buffer.concat([Buffer.from('a new first row\n'), base]);
    const second = (await write(changed))!;
    const check = await snapshots(stateDir, ['--query-latest', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect((await readAll((await store.open(key, second.identity)), 'dump.sql')).equals(changed)).toBe(true);
  });

  it('heals a folder whose copy is another, damaged file while the pool\'s copy is good, and gc keeps that good copy until then', async () => {
    const stateDir = await useTempDir();
    const log = recordingLogger();
    const store = new SnapshotStore(stateDir, { log });
    const base = fakeDump(2_000_000, 8);
    const write = () => writeDump(store, base);
    const first = (await write())!;
    const inFolder = (await packsOf(first.path))[0]!;
    const name = path.basename(inFolder, '.pack');
    const pooled = path.join(stateDir, 'pool', name.slice(0, 2), `${name}.pack`);
    // The pool gets a good copy of its own; the folder keeps the old file, which rots.
    await cp(pooled, `${pooled}.good`);
    await flipByte(inFolder, 1000);
    await rename(`${pooled}.good`, pooled);
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(1);
    expect(await recorded(stateDir)).toEqual([name]);

    // Nothing links the pool's copy now, but it is what heals the folder: gc keeps it.
    const gc = await snapshots(stateDir, ['--gc', '--keep', '5']);
    expect(gc.exitCode, gc.stderr).toBe(0);
    expect((await stat(pooled)).isFile()).toBe(true);
    expect(await recorded(stateDir)).toEqual([name]);

    await write();
    // The pool's copy was good: only the folder's is replaced.
    expect(log.lines.join('\n')).toContain(`pack ${name} was damaged; a good copy of it replaced it in 1 snapshot folder`);
    const check = await snapshots(stateDir, ['--query-all', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(await recorded(stateDir)).toEqual([]);
  });

  it('a restore that fails on a damaged chunk index does not blame the pack', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const first = (await writeDump(store, fakeDump(1_000_000, 9)))!;
    const index = path.join(first.path, (await readdir(first.path)).find((file) => file.endsWith('.chunks'))!);
    // The first record's chunk hash: the pack is fine, the index lies about it.
    await flipByte(index, 5);
    const failed = await store.withLatest(key, (source) => readAll(source!, 'dump.sql')).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(Error);
    expect(await recorded(stateDir)).toEqual([]);
  });

  it('a snapshot of the same data replaces a copy whose chunk index is damaged, which records no pack', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const data = fakeDump(1_000_000, 12);
    const first = (await writeDump(store, data))!;
    const index = path.join(first.path, (await readdir(first.path)).find((file) => file.endsWith('.chunks'))!);
    await flipByte(index, 5);
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(1);
    expect(await recorded(stateDir)).toEqual([]);
    const log = recordingLogger();
    const again = await writeDump(new SnapshotStore(stateDir, { log }), data);
    expect(again!.path).toBe(first.path);
    expect(log.lines.join('\n')).toContain('was damaged (a chunk index that does not match its manifest); the snapshot just taken, which is the same, replaced it');
    const check = await snapshots(stateDir, ['--query-all', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(await readAll((await store.latest(key))!, 'dump.sql')).toEqual(data);
  });

  it('git: a snapshot of an unchanged repository whose chunk index is damaged stores it anew, and restores', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const generation = path.join(setup.stateDir, 'generations', setup.containerName, 'project', '1');
    const folder = path.resolve(path.dirname(generation), await readlink(generation));
    for (const index of (await readdir(folder)).filter((file) => file.endsWith('.chunks'))) await flipByte(path.join(folder, index), 5);
    expect((await snapshots(setup.stateDir, ['--query-latest', '--check'])).exitCode).toBe(1);

    const again = await setup.ok('snapshot');
    expect(again.stderr).toContain('is in the store but damaged (a chunk index that does not match its manifest): this snapshot stores it anew');
    const check = await snapshots(setup.stateDir, ['--query-latest', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(await setup.generations()).toEqual(['1']);
    const before = await git(setup.repo, 'rev-parse', 'main');
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~2:main');
    await setup.ok('restore');
    expect(await git(setup.repo, 'rev-parse', 'main')).toBe(before);
  });

  it('--check by a user who may not read the snapshot data says so: not damaged, and nothing recorded', async () => {
    const stateDir = await useTempDir();
    await writeDump(new SnapshotStore(stateDir), fakeDump(1_000_000, 11));
    await chmod(stateDir, 0o755);
    const before = await treeOf(stateDir);
    const result = await checkAsNobody(stateDir, ['--query-all', '--check']);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/cannot read \S+\.chunks: permission denied; snapshot data is readable by its owner and group \(uid 0, gid 0\) only/);
    expect(result.stderr).toContain('1 could not be checked');
    expect(result.stderr).not.toContain('damaged');
    expect(await recorded(stateDir)).toEqual([]);
    expect(await treeOf(stateDir)).toEqual(before);
  });

  it('--check of a store this user cannot write checks it all the same (it records nothing)', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const first = (await writeDump(store, fakeDump(1_000_000, 10)))!;
    await chmod(stateDir, 0o755);
    // Snapshot data is the owner's only; this operator lets others read it.
    await execa('chmod', ['-R', 'a+rX', stateDir]);
    const intact = await checkAsNobody(stateDir, ['--query-all', '--check']);
    expect(intact.exitCode, intact.stderr).toBe(0);
    expect(intact.stderr).toContain('all intact');
    await flipByte((await packsOf(first.path))[0]!, 100);
    const damaged = await checkAsNobody(stateDir, ['--query-all', '--check']);
    expect(damaged.exitCode).toBe(1);
    expect(damaged.stderr).toContain('cannot record that pack');
    expect(damaged.stderr).not.toContain('is now recorded as damaged');
  });

  it('git: after an interrupted replacement, the next snapshot replaces the damaged copy it puts back', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const generation = path.join(setup.stateDir, 'generations', setup.containerName, 'project', '1');
    const folder = path.resolve(path.dirname(generation), await readlink(generation));
    for (const pack of await packsOf(folder)) await flipByte(pack, 200);
    // As a replacement killed between its two renames leaves it.
    await rename(folder, path.join(path.dirname(folder), `.damaged-${path.basename(folder)}`));
    const again = await setup.ok('snapshot');
    expect(again.stderr).toContain('putting the damaged copy back, to be replaced again');
    const check = await snapshots(setup.stateDir, ['--query-all', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(await readdir(path.dirname(folder))).toEqual([path.basename(folder)]);
  });

  it('git: a damaged snapshot of an unchanged repository is replaced by the next snapshot, and restores', async () => {
    const setup = await gitSetup({ commits: 3 });
    await setup.ok('activate');
    await setup.ok('snapshot');
    const generation = path.join(setup.stateDir, 'generations', setup.containerName, 'project', '1');
    const folder = path.resolve(path.dirname(generation), await readlink(generation));
    for (const pack of await packsOf(folder)) await flipByte(pack, 200);
    const check = await snapshots(setup.stateDir, ['--query-latest', '--check']);
    expect(check.exitCode).toBe(1);

    const again = await setup.ok('snapshot');
    // git made the same bundle, so the same pack: it heals the damaged one in place.
    expect(again.stderr).toMatch(/pack [0-9a-f]{64} was damaged; a good copy of it replaced it in the pool and in 1 snapshot folder/);
    expect((await snapshots(setup.stateDir, ['--query-latest', '--check'])).exitCode).toBe(0);
    expect(await setup.generations()).toEqual(['1']);

    const before = await git(setup.repo, 'rev-parse', 'main');
    await git(setup.work, 'push', '-q', '--force', setup.repo, 'main~2:main');
    await setup.ok('restore');
    expect(await git(setup.repo, 'rev-parse', 'main')).toBe(before);
    expect(await readFile(path.join(setup.repo, 'HEAD'), 'utf8')).toBe('ref: refs/heads/main\n');
  });
});
