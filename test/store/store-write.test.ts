import { randomBytes } from 'node:crypto';
import { readdir, readlink, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AbortedError, IntegrityError, OperationError } from '../../src/core/errors.js';
import { exportSnapshot, importSnapshotFolder, importSnapshotStream, SnapshotStore, StoredSnapshot } from '../../src/snapshot-store/index.js';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { explainWriteError } from '../../src/snapshot-store/store.js';
import { readFailure } from '../../src/snapshot-store/reader.js';
import { chunkingFor } from '../../src/snapshot-store/chunker.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, readAll, recordingLogger, sha256, streamOf } from './helpers.js';

const key = { container: 'mysql-production', component: 'testdb' };

describe('SnapshotStore.write and latest', () => {
  it('stores a stream, names it by its sha256 and reads it back verified', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const dump = fakeDump(9_000_000); // larger than one batch: goes through the worker
    const outcome = await store.write(key, { type: 'test' }, async (sink) => {
      await sink.addStream('dump.sql', streamOf(dump));
    });
    expect(outcome).toMatchObject({ identity: sha256(dump), generation: 1, newGeneration: true, newSnapshot: true });
    expect(outcome!.bytesRead).toBe(dump.length);
    expect(outcome!.bytesStored).toBeGreaterThan(0);
    expect(outcome!.bytesStored).toBeLessThan(dump.length);
    const link = await readlink(path.join(stateDir, 'generations', key.container, key.component, '1'));
    expect(link).toBe(`../../../snapshots/${key.container}/${key.component}/${sha256(dump)}`);
    const checksum = await readFile(path.join(stateDir, 'checksums', key.container, key.component, sha256(dump)), 'utf8');
    expect(checksum).toBe(`sha256:${sha256(dump)}`);
    const source = await store.latest(key);
    expect(source?.streams).toEqual(['dump.sql']);
    expect(source?.size('dump.sql')).toBe(dump.length);
    expect((await readAll(source!, 'dump.sql')).equals(dump)).toBe(true);
    await source!.verify();
  });

  it('returns undefined and keeps nothing when fill writes no stream', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    expect(await store.write(key, { type: 'test' }, async () => {})).toBeUndefined();
    expect(await store.latest(key)).toBeUndefined();
    expect(await readdir(path.join(stateDir, 'snapshots', key.container, key.component))).toEqual([]);
  });

  it('applies the generation rules: same as latest, new, and back to an older one', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const a = fakeDump(200_000, 1);
    const b = fakeDump(200_000, 2);
    const put = (data: Buffer) => store.write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(data)));
    expect(await put(a)).toMatchObject({ generation: 1, newGeneration: true, newSnapshot: true });
    expect(await put(a)).toMatchObject({ generation: 1, newGeneration: false, newSnapshot: false });
    expect(await put(b)).toMatchObject({ generation: 2, newGeneration: true, newSnapshot: true });
    expect(await put(a)).toMatchObject({ generation: 3, newGeneration: true, newSnapshot: false, identity: sha256(a) });
    const source = await store.latest(key);
    expect(source?.identity).toBe(sha256(a));
    expect((await readdir(path.join(stateDir, 'snapshots', key.container, key.component))).sort()).toEqual(
      [sha256(a), sha256(b)].sort(),
    );
  });

  it('skips fill when a snapshot with the natural identity exists', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    let calls = 0;
    const fill = async (sink: Parameters<Parameters<SnapshotStore['write']>[2]>[0]) => {
      calls += 1;
      await sink.addStream('repo.bundle', streamOf(fakeDump(10_000)));
    };
    expect(await store.write(key, { type: 'git', naturalIdentity: 'abc123' }, fill)).toMatchObject({ identity: 'abc123', generation: 1 });
    expect(await store.write(key, { type: 'git', naturalIdentity: 'abc123' }, fill)).toMatchObject({
      identity: 'abc123',
      newGeneration: false,
      newSnapshot: false,
      bytesRead: 0,
    });
    expect(calls).toBe(1);
  });

  // What a gc killed half-way through an rm -r could leave: no generation, and a folder that
  // lacks its manifest, a chunk index or a pack.
  const damages: [string, (folder: string) => Promise<void>][] = [
    ['no manifest', (folder) => rm(path.join(folder, 'manifest.json'))],
    ['a pack missing', async (folder) => rm(path.join(folder, (await readdir(folder)).find((name) => name.endsWith('.pack'))!))],
    ['a chunk index missing', async (folder) => rm(path.join(folder, (await readdir(folder)).find((name) => name.endsWith('.chunks'))!))],
  ];

  for (const [damage, inflict] of damages) {
    it(`replaces a folder of the same identity that is not a complete snapshot (${damage}), never links to it`, async () => {
      const stateDir = await useTempDir();
      const log = recordingLogger();
      const store = new SnapshotStore(stateDir, { log });
      const data = fakeDump(200_000, 4);
      const write = (natural?: string) =>
        store.write(key, { type: 'test', naturalIdentity: natural }, (sink) => sink.addStream('dump.sql', streamOf(data)));
      for (const natural of ['refs-1', undefined]) {
        const first = await write(natural);
        await rm(path.join(stateDir, 'generations'), { recursive: true });
        await inflict(first!.path);
        const again = await write(natural);
        expect(again!.identity).toBe(first!.identity);
        expect(again!.generation).toBe(1);
        expect(again!.newSnapshot).toBe(true);
        const latest = await store.latest(key);
        expect((await readAll(latest!, 'dump.sql')).equals(data)).toBe(true);
        await (latest as StoredSnapshot).verify();
        expect(log.lines.some((line) => line.includes('not a complete snapshot'))).toBe(true);
        await rm(stateDir, { recursive: true });
        log.lines.length = 0;
      }
    });
  }

  it('imports replace a folder of the same identity that is not a complete snapshot, from a folder and from a stream', async () => {
    const sender = await useTempDir();
    const sent = await new SnapshotStore(sender).write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(200_000, 5))));
    const rel = `${key.container}/${key.component}/${sent!.identity}`;
    for (const how of ['folder', 'stream'] as const) {
      const receiver = await useTempDir();
      const log = recordingLogger();
      // An earlier import of the same snapshot, cut short by an older gc: the pack is gone.
      await importSnapshotFolder(receiver, sent!.path);
      const folder = path.join(receiver, 'snapshots', rel);
      await rm(path.join(folder, (await readdir(folder)).find((name) => name.endsWith('.pack'))!));
      if (how === 'folder') {
        await importSnapshotFolder(receiver, sent!.path, { log });
      } else {
        const chunks: Buffer[] = [];
        const out = new PassThrough();
        out.on('data', (chunk: Buffer) => chunks.push(chunk));
        await exportSnapshot(sender, rel, out);
        await importSnapshotStream(receiver, Readable.from([Buffer.concat(chunks)]), { log });
      }
      expect(log.lines.some((line) => line.includes('not a complete snapshot')), how).toBe(true);
      const latest = (await new SnapshotStore(receiver).latest(key)) as StoredSnapshot;
      expect(latest.identity).toBe(sent!.identity);
      await latest.verify();
    }
  });

  it('uses the identity fill returns, and hashes several streams by their sha256sum listing', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const natural = await store.write(key, { type: 'git' }, async (sink) => {
      await sink.addStream('a', streamOf(Buffer.from('one')));
      return { identity: 'refs-1' };
    });
    expect(natural?.identity).toBe('refs-1');
    const other = { container: 'c', component: 'two-streams' };
    const multi = await store.write(other, { type: 'test' }, async (sink) => {
      await sink.addStream('schema.sql', streamOf(Buffer.from('create table t;\n')));
      await sink.addStream('data.sql', streamOf(Buffer.from('insert into t;\n')));
    });
    const listing = `${sha256('create table t;\n')}  schema.sql\n${sha256('insert into t;\n')}  data.sql\n`;
    expect(multi?.identity).toBe(sha256(listing));
    const source = await store.latest(other);
    expect(source?.streams).toEqual(['schema.sql', 'data.sql']);
    expect((await readAll(source!, 'data.sql')).toString()).toBe('insert into t;\n');
  });

  it('deduplicates across streams: a small stream whose content repeats in a large one is stored once', async () => {
    const stateDir = await useTempDir();
    // 8 MiB batches: the small stream stays under a quarter batch, so an inline processor takes
    // it, and the worker that takes the large one must inherit the chunks it stored.
    const store = new SnapshotStore(stateDir, { tuning: { batchSize: 8 * 1024 * 1024 } });
    // Incompressible, so stored bytes count chunks: 1 MB shared by both streams, 8 MB only in the second.
    const shared = randomBytes(1_000_000);
    const rest = randomBytes(8_000_000);
    const large = Buffer.concat([shared, rest, shared]);
    const outcome = await store.write(key, { type: 'test' }, async (sink) => {
      await sink.addStream('small', streamOf(shared));
      await sink.addStream('large', streamOf(large));
    });
    const source = await store.latest(key);
    expect((await readAll(source!, 'small')).equals(shared)).toBe(true);
    expect((await readAll(source!, 'large')).equals(large)).toBe(true);
    // The shared megabyte is stored once, though it is in three places in two streams.
    expect(outcome!.bytesStored).toBeGreaterThan(9_000_000);
    expect(outcome!.bytesStored).toBeLessThan(9_500_000);
  });

  it('stores many batches of several streams through the worker, and reads each back exactly', async () => {
    const stateDir = await useTempDir();
    // Small batches: hundreds of them cycle through the worker's shared buffers.
    const store = new SnapshotStore(stateDir, { tuning: { batchSize: 64 * 1024, chunking: chunkingFor(4096) } });
    const first = fakeDump(3_000_000, 3);
    const second = Buffer.concat([fakeDump(1_000_000, 4), first.subarray(0, 1_500_000)]);
    const zeros = Buffer.alloc(2_000_000);
    const streams: [string, Buffer][] = [
      ['first', first],
      ['empty', Buffer.alloc(0)],
      ['second', second],
      ['zeros', zeros],
      ['tiny', Buffer.from('x')],
    ];
    const outcome = await store.write(key, { type: 'test' }, async (sink) => {
      for (const [name, data] of streams) await sink.addStream(name, streamOf(data, 7001));
    });
    const listing = streams.map(([name, data]) => `${sha256(data)}  ${name}\n`).join('');
    expect(outcome!.identity).toBe(sha256(listing));
    const source = await store.latest(key);
    expect(source?.streams).toEqual(streams.map(([name]) => name));
    for (const [name, data] of streams) expect((await readAll(source!, name)).equals(data), name).toBe(true);
    await source!.verify();
    // Half of `second` repeats `first`: stored once.
    expect(outcome!.bytesStored).toBeLessThan(first.length);
  });

  it('copies each piece before it asks for the next: a source may then reuse its memory (as sql/tool-output.ts does)', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir, { tuning: { batchSize: 64 * 1024, chunking: chunkingFor(4096) } });
    /** Hands out every piece in one buffer, and overwrites it when the next piece is asked for. */
    async function* reusing(data: Buffer, size: number): AsyncGenerator<Buffer> {
      const memory = Buffer.alloc(size);
      for (let at = 0; at < data.length; at += size) {
        const length = data.copy(memory, 0, at, at + size);
        yield memory.subarray(0, length);
        memory.fill(0xee);
      }
    }
    const large = fakeDump(3_000_000, 5); // many batches through the worker
    const small = Buffer.from('a small stream, stored inline\n'.repeat(20));
    const write = () =>
      store.write(key, { type: 'test' }, async (sink) => {
        await sink.addStream('small', reusing(small, 7));
        await sink.addStream('large', reusing(large, 65_536));
      });
    const first = await write();
    // The second time, the previous cuts are replayed (replay.ts): the same data, the same identity.
    const second = await write();
    expect(second!.identity).toBe(first!.identity);
    expect(second!.newGeneration).toBe(false);
    const source = await store.latest(key);
    expect((await readAll(source!, 'small')).equals(small)).toBe(true);
    expect((await readAll(source!, 'large')).equals(large)).toBe(true);
    await source!.verify();
  });

  it('reads streams of many packs back exactly, two at once, though each reader reuses one buffer for its pack reads', async () => {
    const stateDir = await useTempDir();
    // 3 MB packs: runs of up to 4 MiB end at pack boundaries too, so reads come in several sizes.
    const store = new SnapshotStore(stateDir, { tuning: { packSize: 3_000_000 } });
    // Incompressible, so that the packs hold about as much as the streams: several pack reads each.
    const one = randomBytes(20_000_000);
    const two = randomBytes(12_000_000);
    await store.write(key, { type: 'test' }, async (sink) => {
      await sink.addStream('one', streamOf(one));
      await sink.addStream('two', streamOf(two));
    });
    const source = await store.latest(key);
    const [readOne, readTwo] = await Promise.all([readAll(source!, 'one'), readAll(source!, 'two')]);
    expect(readOne.equals(one)).toBe(true);
    expect(readTwo.equals(two)).toBe(true);
    // What a reader handed on is its own: later reads do not change it.
    const pieces: Buffer[] = [];
    for await (const piece of source!.open('one')) pieces.push(piece as Buffer);
    expect(pieces.length).toBeGreaterThan(1);
    expect(Buffer.concat(pieces).equals(one)).toBe(true);
  });

  it('rejects a stream name that is not a plain file name and keeps nothing', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    await expect(
      store.write(key, { type: 'test' }, (sink) => sink.addStream('../escape', streamOf(Buffer.from('x')))),
    ).rejects.toThrow(/plain file name/);
    expect(await store.latest(key)).toBeUndefined();
    expect(await readdir(path.join(stateDir, 'snapshots', key.container, key.component))).toEqual([]);
  });

  it('makes a read of a corrupted chunk fail with an IntegrityError naming snapshot and chunk', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const dump = fakeDump(500_000);
    const outcome = await store.write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(dump)));
    const folder = outcome!.path;
    const pack = (await readdir(folder)).find((name) => name.endsWith('.pack'))!;
    const { chmod, open } = await import('node:fs/promises');
    await chmod(path.join(folder, pack), 0o644);
    const handle = await open(path.join(folder, pack), 'r+');
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 100);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 100);
    await handle.close();
    const source = await store.latest(key);
    const error = await readAll(source!, 'dump.sql').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IntegrityError);
    expect(String((error as Error).message)).toMatch(new RegExp(`${key.container}/${key.component}/${outcome!.identity}: stream dump.sql: chunk 0`));
  });
});

describe('SnapshotStore.write cancellation and failure', () => {
  it('leaves no snapshot, no generation and no temporary folder when aborted mid-stream', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    const controller = new AbortController();
    const dump = fakeDump(12_000_000);
    async function* slow() {
      for (let at = 0; at < dump.length; at += 1 << 20) {
        if (at >= 6 << 20) controller.abort();
        yield dump.subarray(at, at + (1 << 20));
      }
    }
    const error = await store
      .write(key, { type: 'test', signal: controller.signal }, (sink) => sink.addStream('dump.sql', slow()))
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AbortedError);
    expect(await store.latest(key)).toBeUndefined();
    expect(await readdir(path.join(stateDir, 'snapshots', key.container, key.component))).toEqual([]);
    const pool = await readdir(path.join(stateDir, 'pool')).catch(() => [] as string[]);
    expect(pool.filter((name) => name.startsWith('.tmp-'))).toEqual([]);
  });

  it('keeps nothing when the plugin fails after writing part of a stream', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir);
    await store.write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(100_000, 1))));
    const failing = store.write(key, { type: 'test' }, async (sink) => {
      await sink.addStream('dump.sql', streamOf(fakeDump(100_000, 2)));
      throw new Error('pg_dump exited with code 1');
    });
    await expect(failing).rejects.toThrow('pg_dump exited with code 1');
    expect((await readdir(path.join(stateDir, 'generations', key.container, key.component)))).toEqual(['1']);
    expect(await readdir(path.join(stateDir, 'snapshots', key.container, key.component))).toHaveLength(1);
  });
});

describe('explainWriteError', () => {
  const errno = (code: string, message: string, path?: string) => Object.assign(new Error(message), { code, syscall: 'write', ...(path ? { path } : {}) });

  it('says a full disk is full, that no generation was added, and how to make room', () => {
    const explained = explainWriteError(errno('ENOSPC', 'ENOSPC: no space left on device, write'), '/var/state/dysnomia');
    expect(explained).toBeInstanceOf(OperationError);
    expect((explained as Error).message).toBe(
      'the snapshot was not taken: the disk of the state dir /var/state/dysnomia is full (ENOSPC: no space left on device, write). ' +
        'No generation was added and the earlier ones are intact; free space (dysnomia-snapshots --gc removes old generations) and try again',
    );
  });

  it('says a file size limit (ulimit -f) below a pack\'s size is that, not a bare EFBIG', () => {
    const explained = explainWriteError(errno('EFBIG', 'EFBIG: file too large, write'), '/var/state/dysnomia');
    expect(explained).toBeInstanceOf(OperationError);
    expect((explained as Error).message).toContain('the snapshot was not taken: a file of the state dir /var/state/dysnomia grew past the largest file');
    expect((explained as Error).message).toContain('raise the file size limit (ulimit -f)');
    expect((explained as Error).message).toContain('No generation was added');
  });

  it('names the state dir for its own files only: a broken pipe or a bug passes unchanged', () => {
    const denied = errno('EACCES', "EACCES: permission denied, open '/s/pool/x'", '/s/pool/x');
    expect((explainWriteError(denied, '/s') as Error).message).toBe(`the snapshot was not taken: cannot write to the state dir /s: ${denied.message}`);
    const pipe = errno('EPIPE', 'write EPIPE');
    expect(explainWriteError(pipe, '/s')).toBe(pipe);
    const bug = new TypeError('x is undefined');
    expect(explainWriteError(bug, '/s')).toBe(bug);
  });
});

describe('the privacy of snapshot data', () => {
  /** Every file under `dir` whose name ends in `.pack` or `.chunks`, with its permission bits. */
  async function dataFileModes(dir: string): Promise<Map<string, number>> {
    const modes = new Map<string, number>();
    for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !/\.(pack|chunks)$/.test(entry.name)) continue;
      const file = path.join(entry.parentPath, entry.name);
      modes.set(path.relative(dir, file), (await stat(file)).mode & 0o777);
    }
    return modes;
  }

  it('keeps packs and chunk indices from other users (owner and group only), written, imported or exported', async () => {
    const sender = await useTempDir();
    const outcome = await new SnapshotStore(sender).write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(300_000))));
    const written = await dataFileModes(sender);
    expect([...written.keys()].filter((file) => file.endsWith('.pack')).length).toBeGreaterThan(1); // the pool's and the folder's link
    expect([...written.keys()].some((file) => file.endsWith('.chunks'))).toBe(true);
    const expected = 0o440 & ~process.umask(); // never readable by other users
    expect(expected & 0o007).toBe(0);
    expect([...written].filter(([, mode]) => mode !== expected)).toEqual([]);

    const rel = `${key.container}/${key.component}/${outcome!.identity}`;
    const tarred = new Map<string, number>();
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      tarred.set(header.name, header.mode ?? -1);
      stream.resume();
      stream.on('end', next);
    });
    const out = new PassThrough();
    const parsed = pipeline(out, extract);
    await exportSnapshot(sender, rel, out);
    await parsed;
    expect([...tarred].filter(([name, mode]) => /\.(pack|chunks)$/.test(name) && mode !== 0o440)).toEqual([]);

    const receiver = await useTempDir();
    await importSnapshotFolder(receiver, path.join(sender, 'snapshots', rel));
    const imported = await dataFileModes(receiver);
    expect(imported.size).toBe(written.size);
    expect([...imported].filter(([, mode]) => mode !== expected)).toEqual([]);
  });
});

describe('readFailure', () => {
  const failure = (code: string) => readFailure(Object.assign(new Error(`${code}: x`), { code }), '/s/f.pack', 'the snapshot is damaged');
  it('calls a missing file or a disk error damage, and nothing else', () => {
    for (const code of ['ENOENT', 'ENOTDIR', 'EIO']) expect(failure(code), code).toBeInstanceOf(IntegrityError);
    // ext4's and XFS's EFSCORRUPTED (EUCLEAN) and EFSBADCRC (EBADMSG): the file system found the
    // file corrupt. libuv has no name for them: Node gives their number, and a code of UNKNOWN or
    // "Unknown system error -117" (fs/promises).
    for (const errno of [-117, -74]) {
      const code = `Unknown system error ${errno}`;
      const error = Object.assign(new Error(`${code}, read`), { code, errno, syscall: 'read' });
      expect(readFailure(error, '/s/f.pack', 'the snapshot is damaged'), code).toBeInstanceOf(IntegrityError);
    }
    for (const code of ['EMFILE', 'ENFILE', 'ENOMEM', 'EACCES']) {
      expect(failure(code), code).not.toBeInstanceOf(IntegrityError);
      expect(failure(code), code).toBeInstanceOf(OperationError);
      expect(failure(code).message, code).toContain('cannot read /s/f.pack');
    }
  });
});
