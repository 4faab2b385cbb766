/**
 * What gc must leave alone: snapshots of components without generations (modules that never make
 * any, as Dysnomia's older util did), folders no generation names while gc thins nothing, files an
 * operator put there, everything behind a symlinked container or component folder, and the intact
 * snapshots a generation pointing at a missing snapshot would otherwise push out of --keep.
 */
import { chmod, mkdir, readdir, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { collectGarbage } from '../../src/snapshot-store/gc.js';
import { SnapshotStore } from '../../src/snapshot-store/store.js';
import { programPath } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, recordingLogger, streamOf } from './helpers.js';

const key = { container: 'pg', component: 'db' };

async function storeWithGenerations(count: number): Promise<{ stateDir: string; identities: string[] }> {
  const stateDir = await useTempDir();
  const store = new SnapshotStore(stateDir);
  const identities: string[] = [];
  for (let seed = 1; seed <= count; seed += 1) {
    const outcome = await store.write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(20_000, seed))));
    identities.push(outcome!.identity);
  }
  return { stateDir, identities };
}

/** A snapshot folder as an external module writes it: any files, no manifest. */
async function moduleFolder(stateDir: string, container: string, component: string, name: string): Promise<string> {
  const folder = path.join(stateDir, 'snapshots', container, component, name);
  await mkdir(folder, { recursive: true });
  await writeFile(path.join(folder, 'state'), `state of ${name}\n`);
  return folder;
}

/** `--gc --keep 1` as the user nobody, who owns the state dir but cannot read `unreadable` (as root can). */
async function gcAsNobodyWithout(stateDir: string, unreadable: string) {
  await chmod(stateDir, 0o755);
  await execa('chown', ['-R', 'nobody', stateDir]);
  await chmod(unreadable, 0o000);
  try {
    return await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, programPath('dysnomia-snapshots'), '--gc', '--keep', '1'],
      { env: { DYSNOMIA_STATEDIR: stateDir }, reject: false },
    );
  } finally {
    await chmod(unreadable, 0o755);
  }
}

const snapshotsOf = (stateDir: string, container = key.container, component = key.component) =>
  readdir(path.join(stateDir, 'snapshots', container, component));

describe('gc leaves alone what is not its to remove', () => {
  it('keeps every folder of a component that has no generations, whatever --keep says', async () => {
    const { stateDir } = await storeWithGenerations(2);
    await moduleFolder(stateDir, 'svn', 'repo', '5');
    await moduleFolder(stateDir, 'svn', 'repo', '6');
    const log = recordingLogger();
    const report = await collectGarbage(stateDir, { policy: { last: 1 }, log });
    expect(report.snapshotsRemoved).toHaveLength(1);
    expect(report.snapshotsRemoved[0]).toMatch(/^pg\/db\//);
    expect((await snapshotsOf(stateDir, 'svn', 'repo')).sort()).toEqual(['5', '6']);
  });

  it('keeps a folder no generation names while the component has no more generations than --keep, and removes it once gc thins them', async () => {
    const { stateDir } = await storeWithGenerations(1);
    await moduleFolder(stateDir, key.container, key.component, 'unlinked');
    const log = recordingLogger();
    expect((await collectGarbage(stateDir, { policy: { last: 1 }, log })).snapshotsRemoved).toEqual([]);
    expect(await snapshotsOf(stateDir)).toContain('unlinked');
    expect(log.lines.join('\n')).toContain('left pg/db/unlinked alone: no generation refers to it');

    await new SnapshotStore(stateDir).write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(20_000, 9))));
    expect((await collectGarbage(stateDir, { policy: { last: 1 } })).snapshotsRemoved).toContain('pg/db/unlinked');
  });

  it('leaves files an operator put beside the snapshots', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    await writeFile(path.join(stateDir, 'snapshots', key.container, key.component, 'NOTES~'), 'mine');
    const report = await collectGarbage(stateDir, { policy: { last: 1 } });
    expect(report.snapshotsRemoved.sort()).toEqual(identities.slice(0, 2).map((id) => `pg/db/${id}`).sort());
    expect((await snapshotsOf(stateDir)).sort()).toEqual(['NOTES~', identities[2]].sort());
  });

  it('does not follow a symlinked container or component folder to the snapshots behind it', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const other = await storeWithGenerations(3);
    for (const kind of ['generations', 'snapshots']) {
      await symlink(key.container, path.join(stateDir, kind, 'pg-old'));
      await symlink(key.component, path.join(stateDir, kind, key.container, 'db-old'));
      await symlink(path.join(other.stateDir, kind, key.container), path.join(stateDir, kind, 'elsewhere'));
    }
    const log = recordingLogger();
    const report = await collectGarbage(stateDir, { policy: { last: 1 }, log });
    // Only the real pg/db is thinned, once.
    expect(report.generationsRemoved.sort()).toEqual(['pg/db/1', 'pg/db/2']);
    expect(report.snapshotsRemoved.sort()).toEqual(identities.slice(0, 2).map((id) => `pg/db/${id}`).sort());
    expect(await snapshotsOf(stateDir)).toEqual([identities[2]]);
    // The other state dir, reached through the links, keeps everything.
    expect((await snapshotsOf(other.stateDir)).sort()).toEqual([...other.identities].sort());
    expect((await readdir(path.join(other.stateDir, 'generations', key.container, key.component))).sort()).toEqual(['1', '2', '3']);
    expect(log.lines.filter((line) => line.startsWith('warn:') && line.includes('it is a symlink'))).toHaveLength(6);
  });

  it('with a symlinked generations folder, leaves the component\'s snapshots alone without saying no generation refers to them', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const generations = path.join(stateDir, 'generations', key.container, key.component);
    const moved = path.join(await useTempDir(), 'generations');
    await rename(generations, moved);
    await symlink(moved, generations);
    const log = recordingLogger();
    const report = await collectGarbage(stateDir, { policy: { last: 1 }, log });
    expect(report.generationsRemoved).toEqual([]);
    expect(report.snapshotsRemoved).toEqual([]);
    expect((await snapshotsOf(stateDir)).sort()).toEqual([...identities].sort());
    expect(log.lines.filter((line) => line.includes('it is a symlink'))).toHaveLength(1);
    expect(log.lines.join('\n')).not.toContain('no generation refers');
  });

  it('removes a symlinked snapshot entry alone, not the pool packs of the kept snapshot it points at', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const folder = path.join(stateDir, 'snapshots', key.container, key.component);
    await symlink(identities[2]!, path.join(folder, 'alias'));
    const packsOfKept = (await readdir(path.join(folder, identities[2]!))).filter((name) => name.endsWith('.pack'));
    const report = await collectGarbage(stateDir, { policy: { last: 1 } });
    expect(report.snapshotsRemoved.sort()).toEqual([...identities.slice(0, 2).map((id) => `pg/db/${id}`), 'pg/db/alias'].sort());
    const pool = path.join(stateDir, 'pool');
    const pooled = (await Promise.all((await readdir(pool)).map((fanout) => readdir(path.join(pool, fanout))))).flat();
    for (const pack of packsOfKept) expect(pooled).toContain(pack);
    expect(await snapshotsOf(stateDir)).toEqual([identities[2]]);
  });

  it('does not count a generation whose snapshot is missing toward --keep', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const folder = path.join(stateDir, 'snapshots', key.container, key.component);
    // What an import that replaces a damaged copy leaves when it is killed between its renames.
    await rename(path.join(folder, identities[2]!), path.join(folder, `.damaged-${identities[2]}`));
    const log = recordingLogger();
    const report = await collectGarbage(stateDir, { policy: { last: 1 }, log });
    expect(report.generationsRemoved).toEqual(['pg/db/1']);
    expect(report.snapshotsRemoved).toEqual([`pg/db/${identities[0]}`]);
    expect(await snapshotsOf(stateDir)).toContain(identities[1]);
    // The generation stays, for --check to report and an import to heal.
    expect(path.basename(await readlink(path.join(stateDir, 'generations', key.container, key.component, '3')))).toBe(identities[2]);
    expect(log.lines.join('\n')).toContain(`generation pg/db/3 points at the missing snapshot pg/db/${identities[2]}`);
  });

  it('judges every generation that names a missing or a present snapshot alike, however many name it', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const generations = path.join(stateDir, 'generations', key.container, key.component);
    // Generations 4 and 5 name the snapshots of 3 and 2 again (a database that flips between states).
    await symlink(`../../../snapshots/${key.container}/${key.component}/${identities[2]}`, path.join(generations, '4'));
    await symlink(`../../../snapshots/${key.container}/${key.component}/${identities[1]}`, path.join(generations, '5'));
    const folder = path.join(stateDir, 'snapshots', key.container, key.component);
    await rename(path.join(folder, identities[2]!), path.join(folder, `.damaged-${identities[2]}`));
    const log = recordingLogger();
    const report = await collectGarbage(stateDir, { policy: { last: 1 }, log });
    // Kept: 5 (the newest with its snapshot), and 3 and 4 (missing snapshots count for nothing).
    expect(report.generationsRemoved.sort()).toEqual(['pg/db/1', 'pg/db/2']);
    expect(report.snapshotsRemoved).toEqual([`pg/db/${identities[0]}`]);
    expect((await readdir(generations)).sort()).toEqual(['3', '4', '5']);
    const warnings = log.lines.filter((line) => line.includes('points at the missing snapshot'));
    expect(warnings.map((line) => /generation (\S+) points/.exec(line)?.[1]).sort()).toEqual(['pg/db/3', 'pg/db/4']);
  });

  it("judges a snapshot missing in one component by that component's folder, not by another's of the same identity", async () => {
    const { stateDir, identities } = await storeWithGenerations(2);
    // The same dumps in a second component: the same identities, in folders of its own.
    const other = { container: 'pg', component: 'copy' };
    const store = new SnapshotStore(stateDir);
    for (const seed of [1, 2]) await store.write(other, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(20_000, seed))));
    expect((await snapshotsOf(stateDir, other.container, other.component)).sort()).toEqual([...identities].sort());
    // db's newest snapshot goes missing; copy's stays.
    const folder = path.join(stateDir, 'snapshots', key.container, key.component);
    await rename(path.join(folder, identities[1]!), path.join(folder, `.damaged-${identities[1]}`));
    const log = recordingLogger();
    const report = await collectGarbage(stateDir, { policy: { last: 1 }, log });
    // db keeps both (its 2 counts for nothing, so 1 is its newest); copy thins to its 2.
    expect(report.generationsRemoved).toEqual(['pg/copy/1']);
    expect(log.lines.filter((line) => line.includes('points at the missing snapshot'))).toHaveLength(1);
    expect(log.lines.join('\n')).toContain(`generation pg/db/2 points at the missing snapshot pg/db/${identities[1]}`);
  });

  it('says which folder it cannot read, and removes nothing', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const unreadable = path.join(stateDir, 'snapshots', key.container, key.component, identities[0]!);
    const result = await gcAsNobodyWithout(stateDir, unreadable);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot read ${unreadable}`);
    expect(result.stderr).toContain('gc removed nothing');
    expect(result.stderr).not.toContain('unexpected');
    expect((await snapshotsOf(stateDir)).sort()).toEqual([...identities].sort());
    expect((await readdir(path.join(stateDir, 'generations', key.container, key.component))).sort()).toEqual(['1', '2', '3']);
  });

  it('stops at a component folder it cannot read, names it, and removes nothing', async () => {
    const { stateDir, identities } = await storeWithGenerations(3);
    const unreadable = path.join(stateDir, 'snapshots', key.container, key.component);
    const result = await gcAsNobodyWithout(stateDir, unreadable);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot read ${path.join(unreadable, identities[0]!)}`);
    expect(result.stderr).toContain('gc removed nothing');
    expect(result.stderr).not.toContain('missing snapshot');
    expect((await snapshotsOf(stateDir)).sort()).toEqual([...identities].sort());
    expect((await readdir(path.join(stateDir, 'generations', key.container, key.component))).sort()).toEqual(['1', '2', '3']);
  });
});

