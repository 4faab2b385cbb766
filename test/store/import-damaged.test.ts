/**
 * An import of a snapshot the store already has checks the store's copy first: a damaged copy is
 * replaced by the imported one (with a warning), an intact one is kept, and a damaged import
 * changes nothing. Through the built dysnomia-snapshots, as a user or a migration runs it.
 */
import { chmod, cp, mkdir, readdir, readFile, rename, rm, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, flipByte, readAll, sha256, snapshots, streamOf, treeOf } from './helpers.js';

const key = { container: 'mysql-production', component: 'testdb' };

async function firstPack(folder: string): Promise<string> {
  return path.join(folder, (await readdir(folder)).find((name) => name.endsWith('.pack'))!);
}

/** Damage done to the store's copy of a snapshot; returns the pack it hit. */
const damages: [string, (folder: string) => Promise<string>][] = [
  [
    'a flipped byte in a pack',
    async (folder) => {
      const pack = await firstPack(folder);
      await flipByte(pack, 100);
      return pack;
    },
  ],
  [
    'a truncated pack',
    async (folder) => {
      const pack = await firstPack(folder);
      await chmod(pack, 0o644);
      await truncate(pack, Math.floor((await readFile(pack)).length / 2));
      return pack;
    },
  ],
  [
    'a missing pack',
    async (folder) => {
      const pack = await firstPack(folder);
      await rm(pack);
      return pack;
    },
  ],
];

/** A sender with one snapshot, and the two ways to import it: the folder, or its export stream. */
async function sender(dump: Buffer) {
  const stateDir = await useTempDir();
  const outcome = (await new SnapshotStore(stateDir).write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', streamOf(dump))))!;
  const rel = `${key.container}/${key.component}/${outcome.identity}`;
  const exported = await execa(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', rel], {
    env: { DYSNOMIA_STATEDIR: stateDir },
    encoding: 'buffer',
  });
  return { folder: outcome.path, rel, stream: Buffer.from(exported.stdout) };
}

type How = 'folder' | 'stream';

function importInto(stateDir: string, how: How, from: { folder: string; stream: Buffer }, extra: string[] = []) {
  return how === 'folder'
    ? snapshots(stateDir, ['--import', from.folder, ...extra])
    : snapshots(stateDir, ['--import', '-', ...extra], from.stream);
}

/** Each file of a folder with the SHA-256 of its content. */
async function contentsOf(folder: string): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of (await readdir(folder)).sort()) result[name] = sha256(await readFile(path.join(folder, name)));
  return result;
}

for (const how of ['folder', 'stream'] as const) {
  describe(`--import ${how === 'folder' ? 'PATH' : '-'} of a snapshot the store has already`, () => {
    for (const [damage, inflict] of damages) {
      it(`replaces the store's copy when it is damaged (${damage}), with a warning`, async () => {
        const dump = fakeDump(2_000_000, 11);
        const from = await sender(dump);
        const receiver = await useTempDir();
        const first = await importInto(receiver, how, from);
        expect(first.exitCode, first.stderr).toBe(0);
        const target = path.join(receiver, 'snapshots', from.rel);
        const pack = path.basename(await inflict(target), '.pack');

        const again = await importInto(receiver, how, from, ['--json']);
        expect(again.exitCode, again.stderr).toBe(0);
        expect(again.stderr).toContain(`snapshot ${from.rel} in the store was damaged (`);
        expect(again.stderr).toContain('replaced it with the imported copy');
        expect(again.stderr).toContain(`imported ${from.rel} (already generation 1): `);
        const warning = again.stderr.split('\n').find((line) => line.includes('in the store was damaged'))!;
        expect(warning).toContain(pack);
        expect(JSON.parse(again.stdout)[0]).toMatchObject({ path: from.rel, newSnapshot: true, newGeneration: false, generation: 1 });

        const latest = await new SnapshotStore(receiver).latest(key);
        expect((await readAll(latest!, 'dump.sql')).equals(dump)).toBe(true);
        expect(await contentsOf(target)).toEqual(await contentsOf(from.folder));
        const check = await snapshots(receiver, ['--query-all', '--check']);
        expect(check.exitCode, check.stderr).toBe(0);
        // No hidden leftover of the damaged copy.
        expect(await readdir(path.dirname(target))).toEqual([path.basename(target)]);
      });
    }

    it('keeps an intact copy as it is: no warning, newSnapshot false', async () => {
      const from = await sender(fakeDump(1_000_000, 12));
      const receiver = await useTempDir();
      expect((await importInto(receiver, how, from)).exitCode).toBe(0);
      const tree = await treeOf(receiver);
      const again = await importInto(receiver, how, from, ['--json']);
      expect(again.exitCode, again.stderr).toBe(0);
      expect(again.stderr).not.toMatch(/warning|damaged|replac/i);
      expect(again.stderr).toContain('the store has it already');
      expect(JSON.parse(again.stdout)[0]).toMatchObject({ newSnapshot: false, newGeneration: false, packsReceived: 0 });
      expect(await treeOf(receiver)).toEqual(tree);
    });

    it('fails, and leaves the damaged copy exactly as it was, when the imported copy is damaged too', async () => {
      const dump = fakeDump(2_000_000, 13);
      const good = await sender(dump);
      const receiver = await useTempDir();
      expect((await importInto(receiver, how, good)).exitCode).toBe(0);
      const target = path.join(receiver, 'snapshots', good.rel);
      const pack = await firstPack(target);
      const packBytes = await readFile(pack);
      await flipByte(pack, 100);
      // The incoming copy: a flipped byte in its pack, elsewhere than the store's damage.
      const bad = { folder: path.join(await useTempDir(), path.basename(target)), stream: Buffer.from(good.stream) };
      await cp(good.folder, bad.folder, { recursive: true });
      await flipByte(await firstPack(bad.folder), 5000);
      const inStream = bad.stream.indexOf(packBytes.subarray(0, 4096));
      expect(inStream).toBeGreaterThan(0);
      bad.stream[inStream + 5000] = bad.stream[inStream + 5000]! ^ 0x01;

      const tree = await treeOf(receiver);
      const contents = await contentsOf(target);
      const result = await importInto(receiver, how, bad, ['-C', key.container, '-c', key.component]);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toMatch(/pack [0-9a-f]{64} is damaged: its content hashes to [0-9a-f]{64}/);
      expect(result.stderr).not.toContain('replaced it');
      expect(await treeOf(receiver)).toEqual(tree);
      expect(await contentsOf(target)).toEqual(contents);
    });

    it("replaces a damaged copy of Dysnomia's own format (dump.sql.xz)", async () => {
      const dump = fakeDump(300_000, 14);
      const xz = Buffer.from((await execa('xz', ['-c'], { input: dump, encoding: 'buffer' })).stdout);
      const id = sha256(xz);
      const source = await useTempDir();
      const folder = path.join(source, 'snapshots', key.container, key.component, id);
      await mkdir(folder, { recursive: true });
      await writeFile(path.join(folder, 'dump.sql.xz'), xz);
      const rel = `${key.container}/${key.component}/${id}`;
      const exported = await execa(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', rel], {
        env: { DYSNOMIA_STATEDIR: source },
        encoding: 'buffer',
      });
      const from = { folder, rel, stream: Buffer.from(exported.stdout) };
      const receiver = await useTempDir();
      expect((await importInto(receiver, how, from)).exitCode).toBe(0);
      const target = path.join(receiver, 'snapshots', rel);
      await flipByte(path.join(target, 'dump.sql.xz'), 200);

      const again = await importInto(receiver, how, from);
      expect(again.exitCode, again.stderr).toBe(0);
      expect(again.stderr).toContain(`snapshot ${rel} in the store was damaged (`);
      expect(again.stderr).toContain('dump.sql.xz');
      expect(await readFile(path.join(target, 'dump.sql.xz'))).toEqual(xz);
      const latest = await new SnapshotStore(receiver).latest(key);
      expect((await readAll(latest!, 'dump.sql')).equals(dump)).toBe(true);
      const check = await snapshots(receiver, ['--query-all', '--check']);
      expect(check.exitCode, check.stderr).toBe(0);
    });
  });
}

/** A receiver that imported a snapshot of `dump` (by `how`), then had a byte of its first pack flipped. */
async function receiverWithDamagedCopy(dump: Buffer, how: How) {
  const from = await sender(dump);
  const receiver = await useTempDir();
  expect((await importInto(receiver, how, from)).exitCode).toBe(0);
  const target = path.join(receiver, 'snapshots', from.rel);
  const pack = await firstPack(target);
  await flipByte(pack, 100);
  return { from, receiver, target, pack };
}

describe('--import - of a stream that leaves out a pack the store has damaged', () => {
  it('fails naming the pack and what to do, changes nothing, and a stream that carries the pack repairs it', async () => {
    const dump = fakeDump(2_000_000, 15);
    const { from, receiver, pack } = await receiverWithDamagedCopy(dump, 'stream');
    // What a migration does: ask the receiver which packs it has, and leave those out.
    const have = path.join(await useTempDir(), 'have');
    await writeFile(have, (await snapshots(receiver, ['--list-packs'])).stdout);
    const senderStateDir = path.resolve(from.folder, '../../../..');
    const delta = await execa(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', from.rel, '--have', have], {
      env: { DYSNOMIA_STATEDIR: senderStateDir },
      encoding: 'buffer',
    });
    const tree = await treeOf(receiver);
    const refused = await snapshots(receiver, ['--import', '-'], Buffer.from(delta.stdout));
    expect(refused.exitCode).toBe(1);
    expect(refused.stderr).toContain(
      `this store's copy of pack ${path.basename(pack, '.pack')} is damaged, and the stream leaves it out; export again without --have/--base`,
    );
    expect(await treeOf(receiver)).toEqual(tree);

    const repaired = await importInto(receiver, 'stream', from);
    expect(repaired.exitCode, repaired.stderr).toBe(0);
    expect(repaired.stderr).toContain(`snapshot ${from.rel} in the store was damaged (`);
    expect((await readAll((await new SnapshotStore(receiver).latest(key))!, 'dump.sql')).equals(dump)).toBe(true);
    expect((await snapshots(receiver, ['--query-all', '--check'])).exitCode).toBe(0);
  });
});

describe('a replacement of a damaged copy that was killed halfway', () => {
  it('between its two renames: the next import puts the damaged copy back, then replaces it', async () => {
    const dump = fakeDump(2_000_000, 16);
    const { from, receiver, target } = await receiverWithDamagedCopy(dump, 'folder');
    // What a kill after moving the damaged copy aside leaves: no folder under the identity.
    const aside = path.join(path.dirname(target), `.damaged-${path.basename(target)}`);
    await rename(target, aside);
    // Until then, a restore says what happened and what to do.
    const missing = await new SnapshotStore(receiver).latest(key).catch((error: unknown) => error);
    expect(String(missing)).toContain(`a replacement of a damaged copy of it was interrupted (the damaged copy is at ${aside}): take a snapshot of the component, or import the snapshot again`);

    const again = await importInto(receiver, 'stream', from);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain(`an earlier replacement of the damaged ${from.rel} was interrupted; putting the damaged copy back`);
    expect(again.stderr).toContain(`snapshot ${from.rel} in the store was damaged (`);
    expect((await readAll((await new SnapshotStore(receiver).latest(key))!, 'dump.sql')).equals(dump)).toBe(true);
    expect(await readdir(path.dirname(target))).toEqual([path.basename(target)]);
  });

  it('after its second rename: the next import removes the damaged copy and keeps the new one', async () => {
    const from = await sender(fakeDump(1_000_000, 17));
    const receiver = await useTempDir();
    expect((await importInto(receiver, 'folder', from)).exitCode).toBe(0);
    const target = path.join(receiver, 'snapshots', from.rel);
    const aside = path.join(path.dirname(target), `.damaged-${path.basename(target)}`);
    await cp(target, aside, { recursive: true });
    await flipByte(await firstPack(aside), 100);

    const again = await importInto(receiver, 'folder', from, ['--json']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)[0]).toMatchObject({ newSnapshot: false });
    expect(await readdir(path.dirname(target))).toEqual([path.basename(target)]);
    expect((await snapshots(receiver, ['--query-all', '--check'])).exitCode).toBe(0);
  });

  it('a failure before the damaged copy moves (the pool cannot be written) leaves it where it was', async () => {
    const from = await sender(fakeDump(2_000_000, 18));
    const receiver = await useTempDir();
    expect((await importInto(receiver, 'folder', from)).exitCode).toBe(0);
    const target = path.join(receiver, 'snapshots', from.rel);
    const pack = await firstPack(target);
    // Remove the pack from the snapshot and the pool, and make its fanout folder a file: linking
    // the imported pack into the pool must fail.
    const pooled = path.join(receiver, 'pool', path.basename(pack).slice(0, 2), path.basename(pack));
    await rm(pack);
    await rm(pooled);
    const fanout = path.dirname(pooled);
    await rm(fanout, { recursive: true });
    await writeFile(fanout, 'not a folder');
    const contents = await contentsOf(target);

    const again = await importInto(receiver, 'folder', from);
    expect(again.exitCode).toBe(1);
    expect(again.stderr).not.toContain('replaced it');
    expect(await contentsOf(target)).toEqual(contents);
    expect((await readdir(path.dirname(target))).filter((name) => name.startsWith('.'))).toEqual([]);
  });
});

describe('an error reading the store\'s copy is not damage', () => {
  it('the import fails naming it, and the copy stays as it was (an unprivileged user)', async () => {
    const from = await sender(fakeDump(1_000_000, 19));
    const receiver = await useTempDir();
    expect((await importInto(receiver, 'folder', from)).exitCode).toBe(0);
    await chmod(receiver, 0o755);
    await execa('chown', ['-R', 'nobody', receiver]);
    const target = path.join(receiver, 'snapshots', from.rel);
    const index = path.join(target, 'stream-0.chunks');
    await chmod(index, 0o000);
    const tree = await treeOf(receiver);
    // As root every file is readable: an unprivileged user meets the permission error.
    const result = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), '--import', '-'],
      { env: { DYSNOMIA_STATEDIR: receiver }, input: from.stream, reject: false },
    );
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toMatch(/permission denied/i);
    expect(result.stderr).not.toContain('replaced it');
    await chmod(index, 0o644);
    expect(await treeOf(receiver)).toEqual(tree);
  });
});

/** {@link treeOf} of a state dir with the SHA-256 of each file's content: what a "nothing changed" check compares. */
async function stateOf(stateDir: string): Promise<string[]> {
  const tree = await treeOf(stateDir);
  const out: string[] = [];
  for (const line of tree) {
    const rel = line.split(' ')[0]!;
    out.push(line.endsWith('/') || line.includes(' -> ') ? line : `${line} ${sha256(await readFile(path.join(stateDir, rel)))}`);
  }
  return out;
}

/** A copy of a snapshot folder (under its own name) somewhere else, writable, as cp -a or scp -r makes one. */
async function copyOf(folder: string): Promise<string> {
  const copy = path.join(await useTempDir(), path.basename(folder));
  await cp(folder, copy, { recursive: true });
  for (const name of await readdir(copy)) await chmod(path.join(copy, name), 0o644);
  return copy;
}

describe('--import PATH of a damaged folder whose snapshot the store has intact', () => {
  /** Damage done to the copied folder, and what the message must say of it. */
  const sourceDamages: [string, (copy: string) => Promise<void>, RegExp][] = [
    ['a flipped byte in a pack', async (copy) => flipByte(await firstPack(copy), 100), /its file [0-9a-f]{64}\.pack is damaged \(its content hashes to [0-9a-f]{64}, not to its name\)/],
    [
      'a truncated pack',
      async (copy) => {
        const pack = await firstPack(copy);
        await truncate(pack, Math.floor((await readFile(pack)).length / 2));
      },
      /its file [0-9a-f]{64}\.pack is damaged \(its content hashes to [0-9a-f]{64}, not to its name\)/,
    ],
    ['a missing chunk index', (copy) => rm(path.join(copy, 'stream-0.chunks')), /its file stream-0\.chunks is missing, so it is not a complete snapshot folder/],
    ['a flipped byte in the chunk index', (copy) => flipByte(path.join(copy, 'stream-0.chunks'), 10), /stream dump\.sql: chunk 0 .* does not match its checksum/],
  ];

  it('fails naming the folder and the damage, adds no generation, and leaves the store as it was', async () => {
    const from = await sender(fakeDump(1_000_000, 20));
    const receiver = await useTempDir();
    expect((await importInto(receiver, 'folder', from)).exitCode).toBe(0);
    // A second snapshot makes the first an older generation, which an import would add again.
    await new SnapshotStore(receiver).write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(200_000, 21))));
    const before = await stateOf(receiver);
    for (const [damage, inflict, said] of sourceDamages) {
      const copy = await copyOf(from.folder);
      await inflict(copy);
      const result = await snapshots(receiver, ['--import', copy]);
      expect(result.exitCode, `${damage}: ${result.stderr}`).toBe(1);
      expect(result.stderr, damage).toContain(`cannot import ${copy}: `);
      expect(result.stderr, damage).toMatch(said);
      expect(result.stderr, damage).toContain("the store's copy of the snapshot is intact and stays as it was");
      expect(result.stderr, damage).not.toContain('the store has it already');
      expect(await stateOf(receiver), damage).toEqual(before);
    }
    // An intact copy is still "the store has it already", and adds the generation.
    const intact = await snapshots(receiver, ['--import', await copyOf(from.folder), '--json']);
    expect(intact.exitCode, intact.stderr).toBe(0);
    expect(intact.stderr).toContain(`${from.rel}: the store has it already; generation 3`);
    expect(JSON.parse(intact.stdout)[0]).toMatchObject({ newSnapshot: false, newGeneration: true, packsReceived: 0 });
    expect((await snapshots(receiver, ['--query-all', '--check'])).exitCode).toBe(0);
  });

  it("the same for a Dysnomia folder (dump.sql.xz): a damaged dump fails, an intact one is 'the store has it already'", async () => {
    const xz = Buffer.from((await execa('xz', ['-c'], { input: fakeDump(300_000, 22), encoding: 'buffer' })).stdout);
    const id = sha256(xz);
    const folder = path.join(await useTempDir(), id);
    await mkdir(folder);
    await writeFile(path.join(folder, 'dump.sql.xz'), xz);
    const receiver = await useTempDir();
    const named = ['-C', key.container, '-c', key.component];
    expect((await snapshots(receiver, ['--import', ...named, folder])).exitCode).toBe(0);
    const before = await stateOf(receiver);
    const copy = await copyOf(folder);
    await flipByte(path.join(copy, 'dump.sql.xz'), 200);
    const result = await snapshots(receiver, ['--import', ...named, copy]);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot import ${copy}: dump.sql.xz is damaged`);
    expect(result.stderr).toContain("the store's copy of the snapshot is intact and stays as it was");
    expect(await stateOf(receiver)).toEqual(before);
    const intact = await snapshots(receiver, ['--import', ...named, folder]);
    expect(intact.exitCode, intact.stderr).toBe(0);
    expect(intact.stderr).toContain(`${key.container}/${key.component}/${id}: the store has it already`);
  });

  it('takes a folder without a pack the pool has, as an import into a store without the snapshot would', async () => {
    const from = await sender(fakeDump(1_000_000, 23));
    const receiver = await useTempDir();
    expect((await importInto(receiver, 'folder', from)).exitCode).toBe(0);
    const before = await stateOf(receiver);
    const copy = await copyOf(from.folder);
    await rm(await firstPack(copy));
    const result = await snapshots(receiver, ['--import', copy]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`${from.rel}: the store has it already`);
    expect(await stateOf(receiver)).toEqual(before);
  });
});
