/**
 * `--print-missing` and `--resolve`, which Disnix runs around a transfer: a folder that holds no
 * complete snapshot is missing, and every path `--query-all` prints resolves, whatever name an
 * external module gave its folder.
 */
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/store.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, snapshots, streamOf, treeOf } from './helpers.js';

const key = { container: 'mysql-production', component: 'testdb' };

/** A folder written by an external module, with its generation link, as the module makes them. */
async function moduleSnapshot(stateDir: string, container: string, component: string, identity: string, generation: number): Promise<string> {
  const folder = path.join(stateDir, 'snapshots', container, component, identity);
  await mkdir(folder, { recursive: true });
  await writeFile(path.join(folder, 'state'), `state of ${identity}\n`);
  const generations = path.join(stateDir, 'generations', container, component);
  await mkdir(generations, { recursive: true });
  await symlink(path.join('..', '..', '..', 'snapshots', container, component, identity), path.join(generations, String(generation)));
  return folder;
}

describe('--print-missing', () => {
  it('prints a folder that holds no complete snapshot (no manifest.json, or empty) as missing', async () => {
    const stateDir = await useTempDir();
    const outcome = await new SnapshotStore(stateDir).write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(100_000, 1))));
    const rel = `${key.container}/${key.component}/${outcome!.identity}`;
    const component = path.join(stateDir, 'snapshots', key.container, key.component);
    // What a gc of an older version killed halfway leaves: the chunk index without its manifest.
    const remains = `${'a'.repeat(64)}`;
    await mkdir(path.join(component, remains));
    await writeFile(path.join(component, remains, 'stream-0.chunks'), Buffer.alloc(48));
    const empty = `${'b'.repeat(64)}`;
    await mkdir(path.join(component, empty));
    const tree = await treeOf(stateDir);
    const paths = [rel, `${key.container}/${key.component}/${remains}`, `${key.container}/${key.component}/${empty}`, `${key.container}/${key.component}/${'c'.repeat(64)}`];
    const missing = await snapshots(stateDir, ['--print-missing', ...paths]);
    expect(missing.exitCode, missing.stderr).toBe(0);
    expect(missing.stdout).toBe(`${paths.slice(1).join('\n')}\n`);
    // --resolve, which gives the folder to copy, refuses them too.
    const resolved = await snapshots(stateDir, ['--resolve', paths[1]!]);
    expect(resolved.exitCode, resolved.stderr).toBe(2);
    expect(resolved.stderr).toContain(`no such snapshot in ${stateDir}: ${paths[1]}`);
    expect(await treeOf(stateDir)).toEqual(tree);
  });
});

describe('--resolve and --print-missing of what --query-all prints', () => {
  it('take the names external modules give their folders ("ü1", "rev 42"), and still refuse paths that leave the store', async () => {
    const stateDir = await useTempDir();
    const folders = [await moduleSnapshot(stateDir, 'fs', 'comp', 'ü1', 1), await moduleSnapshot(stateDir, 'fs', 'comp', 'rev 42', 2)];
    const listed = (await snapshots(stateDir, ['--query-all'])).stdout.trim().split('\n');
    expect(listed).toEqual(['fs/comp/ü1', 'fs/comp/rev 42']);
    const resolved = await snapshots(stateDir, ['--resolve', ...listed]);
    expect(resolved.exitCode, resolved.stderr).toBe(0);
    expect(resolved.stdout).toBe(`${folders.join('\n')}\n`);
    const missing = await snapshots(stateDir, ['--print-missing', ...listed, 'fs/comp/ü2']);
    expect(missing.exitCode, missing.stderr).toBe(0);
    expect(missing.stdout).toBe('fs/comp/ü2\n');
    for (const outside of ['/etc/passwd', 'fs/comp/..', 'fs/../comp', '../../etc/passwd', 'fs/comp/a/b', 'fs/comp/.', 'fs//x', 'fs/comp/.tmp-1']) {
      for (const operation of ['--resolve', '--print-missing']) {
        const result = await snapshots(stateDir, [operation, outside]);
        expect(result.exitCode, `${operation} ${outside}: ${result.stderr}`).toBe(2);
        expect(result.stderr).toContain(JSON.stringify(outside));
        expect(result.stdout).toBe('');
      }
    }
  });
});
