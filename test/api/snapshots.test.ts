/**
 * The store calls of the library (queries, check, gc, export, import, packs) on snapshots of a
 * real git repository.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import * as dysnomia from '../../src/index.js';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { useTempDir } from '../support/temp.js';

async function twoGenerations() {
  const dir = await useTempDir('dysnomia-api-store-');
  const work = await makeWorkRepo(path.join(dir, 'work'), { commits: 30 });
  const component = path.join(dir, 'components', 'project');
  await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  const baseDir = path.join(dir, 'repos');
  const stateDir = path.join(dir, 'state');
  const options = { container: { properties: { type: 'git-repository', gitBaseDir: baseDir }, name: 'git' }, component, stateDir };
  await dysnomia.activate(options);
  const first = await dysnomia.snapshot(options);
  await git(work, 'commit', '--allow-empty', '-q', '-m', 'second');
  await git(work, 'push', '-q', path.join(baseDir, 'project'), 'main');
  const second = await dysnomia.snapshot(options);
  return { dir, stateDir, options, first, second, repo: path.join(baseDir, 'project') };
}

describe('library API: the snapshot store', () => {
  it('refuses an empty stateDir (it would be the working directory) with a UsageError, by rejecting', async () => {
    const s = await twoGenerations();
    const before = await readdir(process.cwd());
    const calls: [string, () => Promise<unknown>][] = [
      ['snapshot', () => dysnomia.snapshot({ ...s.options, stateDir: '' })],
      ['latestSnapshots', () => dysnomia.latestSnapshots({ stateDir: '  ' })],
      ['collectSnapshotGarbage', () => dysnomia.collectSnapshotGarbage({ stateDir: '' })],
      ['listActivatedComponents', () => dysnomia.listActivatedComponents({ stateDir: '' })],
    ];
    for (const [name, call] of calls) {
      let promise: Promise<unknown> | undefined;
      expect(() => (promise = call()), name).not.toThrow();
      const error = await promise!.catch((e: unknown) => e);
      expect(error, name).toBeInstanceOf(dysnomia.UsageError);
      expect((error as Error).message, name).toContain('is not a folder path');
    }
    expect(await readdir(process.cwd())).toEqual(before);
  });

  it('lists the latest and all generations, checks them, and finds a flipped byte', async () => {
    const s = await twoGenerations();
    const all = await dysnomia.allSnapshots({ stateDir: s.stateDir });
    expect(all.map((e) => [e.container, e.component, e.generation, e.identity])).toEqual([
      ['git', 'project', 1, s.first.snapshot!.identity],
      ['git', 'project', 2, s.second.snapshot!.identity],
    ]);
    expect(await dysnomia.latestSnapshots({ stateDir: s.stateDir, container: 'git' })).toEqual([all[1]]);
    expect(await dysnomia.latestSnapshots({ stateDir: s.stateDir, container: 'other' })).toEqual([]);
    expect((await dysnomia.checkSnapshots({ stateDir: s.stateDir, all: true })).map((r) => r.ok)).toEqual([true, true]);

    const folder = path.join(s.stateDir, 'snapshots', all[1]!.path);
    const pack = (await readdir(folder)).find((name) => name.endsWith('.pack'))!;
    const handle = await open(path.join(folder, pack), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 100);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 100);
    await handle.close();
    const checked = await dysnomia.checkSnapshots({ stateDir: s.stateDir });
    expect(checked).toHaveLength(1);
    expect(checked[0]!.ok).toBe(false);
    expect(checked[0]!.problems.join('\n')).toMatch(/chunk|pack|checksum|hash/i);
  });

  it('importSnapshot refuses a container name that is no name with a ConfigError (exit 2), not as a stream it could not read', async () => {
    const stateDir = await useTempDir('dysnomia-api-store-');
    const error = await dysnomia.importSnapshot({ stateDir, from: Readable.from([Buffer.from('x')]), container: '../x', component: 'c' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.ConfigError);
    expect((error as dysnomia.ConfigError).exitCode).toBe(2);
    expect((error as Error).message).toContain('"../x" is not a usable container name');
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('collects garbage with a retention policy, dry run first', async () => {
    const s = await twoGenerations();
    const dry = await dysnomia.collectSnapshotGarbage({ stateDir: s.stateDir, keep: 1, dryRun: true });
    expect(dry.generationsRemoved).toEqual(['git/project/1']);
    expect(await dysnomia.allSnapshots({ stateDir: s.stateDir })).toHaveLength(2);
    const report = await dysnomia.collectSnapshotGarbage({ stateDir: s.stateDir });
    expect(report.generationsRemoved).toEqual(['git/project/1']);
    expect(report.snapshotsRemoved).toEqual([`git/project/${s.first.snapshot!.identity}`]);
    expect((await dysnomia.allSnapshots({ stateDir: s.stateDir })).map((e) => e.generation)).toEqual([2]);
    await expect(dysnomia.collectSnapshotGarbage({ stateDir: s.stateDir, keep: -1 })).rejects.toBeInstanceOf(dysnomia.UsageError);
  });

  it('exports a snapshot, imports it elsewhere from the stream or the folder, and leaves out packs the receiver has', async () => {
    const s = await twoGenerations();
    const [older, newer] = await dysnomia.allSnapshots({ stateDir: s.stateDir });
    const other = path.join(s.dir, 'other-state');
    const file = path.join(s.dir, 'older.tar');
    const out = createWriteStream(file);
    const exported = await dysnomia.exportSnapshot({ stateDir: s.stateDir, snapshot: older!.path, to: out });
    await finished(out);
    expect(exported.packsOmitted).toBe(0);
    const imported = await dysnomia.importSnapshot({ stateDir: other, from: createReadStream(file), container: 'git-b' });
    expect(imported).toMatchObject({ container: 'git-b', component: 'project', identity: older!.identity, generation: 1, newSnapshot: true });

    const have = await dysnomia.listPacks({ stateDir: other });
    expect(have.length).toBeGreaterThan(0);
    const second = path.join(s.dir, 'newer.tar');
    const out2 = createWriteStream(second);
    const delta = await dysnomia.exportSnapshot({ stateDir: s.stateDir, snapshot: newer!.path, to: out2, have });
    await finished(out2);
    expect(delta.packsOmitted).toBeGreaterThan(0);
    expect(delta.bytesSent).toBeLessThan(exported.bytesSent);
    const next = await dysnomia.importSnapshot({ stateDir: other, from: createReadStream(second), container: 'git-b' });
    expect(next.generation).toBe(2);
    expect(next.packsLinked).toBeGreaterThan(0);

    // A folder copied as is imports too, under the names its path gives.
    const third = path.join(s.dir, 'third-state');
    const byFolder = await dysnomia.importSnapshot({ stateDir: third, from: path.join(s.stateDir, 'snapshots', newer!.path) });
    expect(byFolder).toMatchObject({ container: 'git', component: 'project', identity: newer!.identity });

    // And the imported snapshot restores: a component activated on the other side gets the newer refs.
    const live = await refs(s.repo);
    const restoreOptions = {
      container: { properties: { type: 'git-repository', gitBaseDir: path.join(s.dir, 'other-repos') }, name: 'git-b' },
      component: s.options.component,
      stateDir: other,
    };
    await dysnomia.activate(restoreOptions);
    await dysnomia.restore(restoreOptions);
    expect(await refs(path.join(s.dir, 'other-repos', 'project'))).toBe(live);
  });
});
