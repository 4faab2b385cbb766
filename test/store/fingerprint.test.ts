/**
 * The store's side of a plugin's fingerprint (snapshot-store/fingerprint.ts): when it skips the
 * dump, and when it records a fingerprint. The plugin is a function here; postgres-fingerprint
 * tests the real one against a server.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HOST_TAG, processStartTime } from '../../src/core/lock.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { useTempDir } from '../support/temp.js';
import { deadPid, fakeDump, recordingLogger, sha256, streamOf } from './helpers.js';

const key = { container: 'pg', component: 'db' };

/** A store, a dump, and a snapshot that reads the fingerprints in `marks` in turn and counts its dumps. */
async function setup() {
  const stateDir = await useTempDir();
  const log = recordingLogger();
  const store = new SnapshotStore(stateDir, { log });
  const dump = fakeDump(300_000, 7);
  let dumps = 0;
  const take = (...marks: Array<string | undefined | Error>) =>
    store.write(
      key,
      {
        type: 'test',
        fingerprint: async () => {
          const mark = marks.shift();
          if (mark instanceof Error) throw mark;
          return mark;
        },
      },
      async (sink) => {
        dumps += 1;
        await sink.addStream('dump.sql', streamOf(dump));
      },
    );
  return { stateDir, log, take, identity: sha256(dump), dumps: () => dumps, record: path.join(stateDir, 'fingerprints', 'pg', 'db') };
}

describe('SnapshotStore.write with a fingerprint', () => {
  it('skips the dump when the fingerprint is the recorded one, and dumps when it is another', async () => {
    const s = await setup();
    expect(await s.take('a', 'a')).toMatchObject({ identity: s.identity, generation: 1, newGeneration: true });
    expect(JSON.parse(await readFile(s.record, 'utf8'))).toEqual({ fingerprint: 'a', identity: s.identity });
    const spared = await s.take('a');
    expect(spared).toMatchObject({ identity: s.identity, generation: 1, newGeneration: false, bytesRead: 0, byFingerprint: true });
    expect(s.dumps()).toBe(1);
    expect(await s.take('b', 'b')).toMatchObject({ identity: s.identity, newGeneration: false, bytesRead: 300_000 });
    expect(s.dumps()).toBe(2);
    expect(await s.take('b')).toMatchObject({ byFingerprint: true });
    expect(s.dumps()).toBe(2);
  });

  it('reads the fingerprint once before the dump starts and once after it has ended', async () => {
    const stateDir = await useTempDir();
    const store = new SnapshotStore(stateDir, { log: recordingLogger() });
    let dumping: 'not yet' | 'started' | 'ended' = 'not yet';
    const seen: string[] = [];
    const write = () =>
      store.write(
        key,
        {
          type: 'test',
          fingerprint: async () => {
            const at = dumping;
            // A slow server: the reading ends well after it began.
            await new Promise((resolve) => setTimeout(resolve, 50));
            seen.push(`${at}/${dumping}`);
            return 'a';
          },
        },
        async (sink) => {
          dumping = 'started';
          await sink.addStream('dump.sql', streamOf(fakeDump(100_000, 3)));
          dumping = 'ended';
        },
      );
    await write();
    expect(seen).toEqual(['not yet/not yet', 'ended/ended']);
    expect(await write()).toMatchObject({ byFingerprint: true });
  });

  it('records nothing when the fingerprint changed during the dump, or cannot be read after it', async () => {
    const s = await setup();
    await s.take('a', 'a2');
    await expect(readFile(s.record)).rejects.toMatchObject({ code: 'ENOENT' });
    await s.take('a', new Error('the server went away'));
    await expect(readFile(s.record)).rejects.toMatchObject({ code: 'ENOENT' });
    expect((await s.take('a', 'a'))!.byFingerprint).toBeUndefined();
    expect(s.dumps()).toBe(3);
    // A later change during a dump leaves the earlier record as it was: still true.
    await s.take('b', 'b2');
    expect(JSON.parse(await readFile(s.record, 'utf8'))).toEqual({ fingerprint: 'a', identity: s.identity });
  });

  it('dumps when there is no fingerprint, and a snapshot that cannot record one still succeeds', async () => {
    const s = await setup();
    await s.take(undefined);
    expect(s.dumps()).toBe(1);
    await mkdir(path.dirname(path.dirname(s.record)), { recursive: true });
    await writeFile(path.dirname(s.record), 'a file where the folder goes');
    expect(await s.take('a', 'a')).toMatchObject({ identity: s.identity, generation: 1 });
    expect(s.log.lines.join('\n')).toMatch(/cannot record the fingerprint of pg\/db\/[0-9a-f]{64} .*the next snapshot dumps the component/);
  });

  it('removes what a run killed while it wrote a record left, and nothing a live one is writing', async () => {
    const s = await setup();
    await mkdir(path.dirname(s.record), { recursive: true });
    const dead = `.tmp-${await deadPid()}@${HOST_TAG}-0123456789ab`;
    const live = `.tmp-${process.pid}.${processStartTime(process.pid)}@${HOST_TAG}-0123456789ab`;
    for (const name of [dead, live]) await writeFile(path.join(path.dirname(s.record), name), '{');
    await s.take('a', 'a');
    expect((await readdir(path.dirname(s.record))).sort()).toEqual([live, 'db'].sort());
  });

  it('ignores a record that is not a JSON object with a fingerprint and an identity', async () => {
    const s = await setup();
    await s.take('a', 'a');
    const texts = ['null', '"a"', '{', '{}', JSON.stringify({ fingerprint: 'a' }), JSON.stringify({ fingerprint: 1, identity: s.identity })];
    for (const text of texts) {
      await writeFile(s.record, text);
      expect((await s.take('a', 'a'))!.byFingerprint, text).toBeUndefined();
    }
    expect(s.log.lines.filter((line) => line.includes('is not a fingerprint record'))).toHaveLength(texts.length);
    expect(await s.take('a')).toMatchObject({ byFingerprint: true });
  });

  it('ignores a record whose identity is not a snapshot name', async () => {
    const s = await setup();
    await s.take('a', 'a');
    await writeFile(s.record, JSON.stringify({ fingerprint: 'a', identity: '../../../etc' }));
    expect((await s.take('a', 'a'))!.byFingerprint).toBeUndefined();
    expect(s.log.lines.join('\n')).toContain('"../../../etc" is not a usable snapshot identity');
    expect(JSON.parse(await readFile(s.record, 'utf8'))).toEqual({ fingerprint: 'a', identity: s.identity });
  });
});
