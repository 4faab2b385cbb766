/**
 * A state dir shared by two hosts (NFS): a pid in a temporary name means something only on the
 * host that wrote it. A run must not remove another host's temporary pack or lock holder file
 * because no process of that number runs here; its own dead writers' files it still removes.
 */
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { HOST_TAG, processStartTime, withLock } from '../../src/core/lock.js';
import { importSnapshotFolder } from '../../src/snapshot-store/transfer.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { useTempDir } from '../support/temp.js';
import { deadPid, fakeDump, streamOf } from './helpers.js';

const OTHER_TAG = HOST_TAG === '0badc0de' ? '0badcafe' : '0badc0de';

describe('temporary files of another host', () => {
  it('a snapshot leaves another host\'s temporary pack alone and removes its own host\'s dead ones', async () => {
    const stateDir = await useTempDir();
    const key = { container: 'c', component: 'db' };
    const pid = await deadPid();
    const pool = path.join(stateDir, 'pool');
    await mkdir(pool, { recursive: true });
    const theirs = `.tmp-${pid}@${OTHER_TAG}-0123456789ab.pack`;
    const ours = `.tmp-${pid}@${HOST_TAG}-0123456789ab.pack`;
    const untagged = `.tmp-${pid}-0123456789ab.pack`;
    for (const name of [theirs, ours, untagged]) await writeFile(path.join(pool, name), 'half a pack');
    const store = new SnapshotStore(stateDir);
    const outcome = await store.write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(100_000))));
    expect(outcome?.newSnapshot).toBe(true);
    const left = (await readdir(pool)).filter((name) => name.startsWith('.tmp-'));
    expect(left).toEqual([theirs]);
  });

  it('an import removes what killed imports of the component left (this host\'s dead writers only), as a snapshot does', async () => {
    const key = { container: 'c', component: 'db' };
    const source = await useTempDir();
    const written = await new SnapshotStore(source).write(key, { type: 'test' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(100_000))));
    const folder = path.join(source, 'snapshots', key.container, key.component, written!.identity);
    const stateDir = await useTempDir();
    const pid = await deadPid();
    const snapshotsDir = path.join(stateDir, 'snapshots', key.container, key.component);
    const pool = path.join(stateDir, 'pool');
    await mkdir(snapshotsDir, { recursive: true });
    await mkdir(pool, { recursive: true });
    const dead = `.tmp-${pid}.12345@${HOST_TAG}-0123456789ab`;
    const live = `.tmp-${process.pid}.${processStartTime(process.pid)}@${HOST_TAG}-0123456789ab`;
    const theirs = `.tmp-${pid}@${OTHER_TAG}-0123456789ab`;
    for (const name of [dead, live, theirs]) await mkdir(path.join(snapshotsDir, name));
    await writeFile(path.join(pool, `${dead}.pack`), 'half a pack');
    const outcome = await importSnapshotFolder(stateDir, folder, { container: key.container, component: key.component });
    expect(outcome.newSnapshot).toBe(true);
    expect((await readdir(snapshotsDir)).filter((name) => name.startsWith('.tmp-')).sort()).toEqual([live, theirs].sort());
    expect((await readdir(pool)).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
  });

  it('taking a lock leaves another host\'s holder file being published alone', async () => {
    const dir = await useTempDir();
    const lock = path.join(dir, 'store.lock');
    await mkdir(lock);
    const pid = await deadPid();
    const theirs = `.tmp-shared-${pid}-0-${OTHER_TAG}-0123456789ab.json`;
    const ours = `.tmp-shared-${pid}-0-${HOST_TAG}-0123456789ab.json`;
    for (const name of [theirs, ours]) await writeFile(path.join(lock, name), '');
    expect(await withLock(lock, 'exclusive', { what: 'x', timeoutMs: 2000 }, async () => 'done')).toBe('done');
    expect(await readdir(lock)).toEqual([theirs]);
  });
});
