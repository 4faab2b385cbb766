/**
 * Snapshot folders written by an external module (Dysnomia's fileset, wrapper, subversion, ...
 * modules): any folder with neither manifest.json nor a single Dysnomia dump. Imported as they
 * are, checked by Dysnomia's folder checksum, refused by the built-in plugins' restore.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { gitSetup } from '../support/git-repository.js';
import { git } from '../support/git.js';
import { useTempDir } from '../support/temp.js';
import { flipByte, snapshots, treeOf } from './helpers.js';

const key = { container: 'subversion', component: 'repo' };
const rel = (id: string) => `${key.container}/${key.component}/${id}`;

/** What Subversion's module leaves: a folder named by the revision, a dump and a nested folder. */
async function moduleFolder(parent: string, name = '42', content = 'r42'): Promise<string> {
  const folder = path.join(parent, name);
  await mkdir(path.join(folder, 'hooks', 'deep'), { recursive: true });
  await writeFile(path.join(folder, 'dump.svn'), `SVN-fs-dump-format-version: 2\n${content}\n`);
  await writeFile(path.join(folder, 'hooks', 'deep', 'post-commit'), '#!/bin/sh\n');
  await mkdir(path.join(folder, 'empty'));
  return folder;
}

/** Dysnomia's computeOutputHash, as its util runs it. */
async function dysnomiaChecksum(folder: string): Promise<string> {
  const script = 'find . && echo && find . -type f | while IFS= read -r file; do cat "$file"; done';
  const { stdout } = await execa('sh', ['-c', script], { cwd: folder, encoding: 'buffer', stripFinalNewline: false });
  return `sha256:${createHash('sha256').update(stdout).digest('hex')}`;
}

/** Files and their content under a folder, as relative paths (folders end in /). */
async function contentOf(folder: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await execa('find', ['.', '-mindepth', '1'], { cwd: folder })).stdout.split('\n').sort()) {
    const file = path.join(folder, line);
    out[line] = await readFile(file, 'utf8').catch(() => '/');
  }
  return out;
}

const importInto = (stateDir: string, folder: string, ...extra: string[]) =>
  snapshots(stateDir, ['--import', '-C', key.container, '-c', key.component, ...extra, folder]);

describe('snapshot folders written by an external module', () => {
  it('are imported as they are, with a generation and Dysnomia\'s checksum, and a second import of the same folder adds nothing', async () => {
    const stateDir = await useTempDir();
    const folder = await moduleFolder(await useTempDir());
    const first = await importInto(stateDir, folder);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(first.stderr).toContain(`imported ${rel('42')} as generation 1: its files copied`);
    const stored = path.join(stateDir, 'snapshots', rel('42'));
    expect(await contentOf(stored)).toEqual(await contentOf(folder));
    expect(await readlink(path.join(stateDir, 'generations', key.container, key.component, '1'))).toBe(`../../../snapshots/${rel('42')}`);
    expect(await readFile(path.join(stateDir, 'checksums', rel('42')), 'utf8')).toBe(await dysnomiaChecksum(stored));
    const again = await importInto(stateDir, folder);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain(`${rel('42')}: the store has it already; already generation 1`);
    expect((await snapshots(stateDir, ['--query-all'])).stdout).toBe(`${rel('42')}\n`);
    const check = await snapshots(stateDir, ['--query-all', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
  });

  it('refuses a symbolic link or a FIFO inside, naming the entry, and imports nothing', async () => {
    for (const [what, make] of [
      ['a symbolic link', (file: string) => symlink('/etc/passwd', file)],
      ['a FIFO', (file: string) => execa('mkfifo', [file])],
    ] as const) {
      const stateDir = await useTempDir();
      const folder = await moduleFolder(await useTempDir());
      await make(path.join(folder, 'hooks', 'odd'));
      const result = await importInto(stateDir, folder);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(`cannot import ${folder}: its entry hooks/odd is ${what}`);
      expect(result.stderr).toContain('nothing was imported');
      expect(await treeOf(stateDir)).toEqual([]);
    }
  });

  it('refuses a folder whose name the store has for other content, and changes nothing', async () => {
    const stateDir = await useTempDir();
    expect((await importInto(stateDir, await moduleFolder(await useTempDir(), '42', 'one'))).exitCode).toBe(0);
    const tree = await treeOf(stateDir);
    const other = await moduleFolder(await useTempDir(), '42', 'two');
    const result = await importInto(stateDir, other);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`cannot import ${other}: the store has a different snapshot under the name ${rel('42')}: its content differs`);
    expect(result.stderr).toContain('nothing was imported');
    expect(await treeOf(stateDir)).toEqual(tree);
  });

  it('replace a damaged copy in the store with the one its checksum records', async () => {
    const stateDir = await useTempDir();
    const folder = await moduleFolder(await useTempDir());
    expect((await importInto(stateDir, folder)).exitCode).toBe(0);
    await writeFile(path.join(stateDir, 'snapshots', rel('42'), 'dump.svn'), 'damaged');
    const result = await importInto(stateDir, folder);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`snapshot ${rel('42')} in the store was damaged (the folder does not match its checksum`);
    expect(await contentOf(path.join(stateDir, 'snapshots', rel('42')))).toEqual(await contentOf(folder));
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
  });

  it('--check: intact as the module wrote it, damaged when it no longer matches its checksum (naming both)', async () => {
    const stateDir = await useTempDir();
    // Written in the state dir by the module itself: the folder and its generation link.
    const folder = await moduleFolder(path.join(stateDir, 'snapshots', key.container, key.component), '7');
    const generations = path.join(stateDir, 'generations', key.container, key.component);
    await mkdir(generations, { recursive: true });
    await symlink(`../../../snapshots/${rel('7')}`, path.join(generations, '1'));
    const plain = await snapshots(stateDir, ['--query-all', '--check']);
    expect(plain.exitCode, plain.stderr).toBe(0);
    const checksum = await dysnomiaChecksum(folder);
    await mkdir(path.join(stateDir, 'checksums', key.container, key.component), { recursive: true });
    await writeFile(path.join(stateDir, 'checksums', rel('7')), checksum);
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
    await writeFile(path.join(folder, 'hooks', 'deep', 'post-commit'), 'changed');
    const damaged = await snapshots(stateDir, ['--query-all', '--check', '--json']);
    expect(damaged.exitCode).toBe(1);
    const [result] = JSON.parse(damaged.stdout);
    expect(result).toMatchObject({ path: rel('7'), status: 'damaged' });
    expect(result.problems[0]).toBe(`${rel('7')}: the folder does not match its checksum (recorded ${checksum}, actual ${await dysnomiaChecksum(folder)})`);
  });

  it('--export refuses one, saying to copy the folder and --import it', async () => {
    const stateDir = await useTempDir();
    expect((await importInto(stateDir, await moduleFolder(await useTempDir()))).exitCode).toBe(0);
    const result = await snapshots(stateDir, ['--export', rel('42')]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`cannot export ${rel('42')}: it is a folder written by an external module`);
    expect(result.stderr).toContain(`cp -r "$(dysnomia-snapshots --resolve ${rel('42')})"`);
    expect(result.stdout).toBe('');
  });

  it('a restore through the library never hands one to a built-in plugin', async () => {
    const stateDir = await useTempDir();
    expect((await importInto(stateDir, await moduleFolder(await useTempDir()))).exitCode).toBe(0);
    let called = false;
    const error = await new SnapshotStore(stateDir)
      .withLatest(key, async () => {
        called = true;
      })
      .catch((e: unknown) => e as Error);
    expect(called).toBe(false);
    expect((error as Error).message).toContain(`generation 1 of ${key.container}/${key.component} points at ${rel('42')}, which is a folder written by an external module`);
  });
});

describe('a Dysnomia dump folder with other entries beside its dump', () => {
  it('is imported as a module folder, saying what it holds and what to do; --check passes and a restore names both', async () => {
    const stateDir = await useTempDir();
    const folder = path.join(await useTempDir(), 'abc');
    await mkdir(folder);
    const xz = (await execa('xz', ['-c'], { input: 'CREATE TABLE t (a int);\n', encoding: 'buffer' })).stdout;
    await writeFile(path.join(folder, 'dump.sql.xz'), xz);
    await writeFile(path.join(folder, 'dump.sql.xz~'), xz);
    const result = await importInto(stateDir, folder);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(
      `importing ${folder} as a folder written by an external module, which only that module restores: it holds dump.sql.xz and also "dump.sql.xz~", and a Dysnomia snapshot folder holds only its dump; if it is Dysnomia's snapshot of a database, move the other entries out of the folder, and import it again`,
    );
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
    const error = await new SnapshotStore(stateDir).withLatest(key, async () => {}).catch((e: unknown) => e as Error);
    expect((error as Error).message).toContain('it holds dump.sql.xz and also "dump.sql.xz~", and a Dysnomia snapshot folder holds only its dump');
  });
});

describe('git-repository restore of a module folder', () => {
  it('refuses, naming the folder and the module, and leaves the repository as it was', async () => {
    const setup = await gitSetup({ commits: 2 });
    await setup.ok('activate');
    const before = await git(setup.repo, 'show-ref');
    const folder = await moduleFolder(await useTempDir(), 'r1');
    const imported = await snapshots(setup.stateDir, ['--import', '-C', setup.containerName, '-c', 'project', folder]);
    expect(imported.exitCode, imported.stderr).toBe(0);
    const result = await setup.run('restore');
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`points at ${setup.containerName}/project/r1, which is a folder written by an external module`);
    expect(result.stderr).toContain('Nothing was restored');
    expect(await git(setup.repo, 'show-ref')).toEqual(before);
  });

  it('keeps no group or world write bit on the files it copies into the store', async () => {
    const stateDir = await useTempDir();
    const folder = await moduleFolder(await useTempDir());
    await chmod(path.join(folder, 'dump.svn'), 0o666);
    await chmod(path.join(folder, 'hooks'), 0o777);
    expect((await importInto(stateDir, folder)).exitCode).toBe(0);
    const stored = path.join(stateDir, 'snapshots', rel('42'));
    expect((await stat(path.join(stored, 'dump.svn'))).mode & 0o777).toBe(0o644);
    expect((await stat(path.join(stored, 'hooks'))).mode & 0o777).toBe(0o755);
  });

  it('a folder holding only hidden entries is called that, not a snapshot', async () => {
    const stateDir = await useTempDir();
    const folder = path.join(await useTempDir(), '7');
    await mkdir(folder);
    await writeFile(path.join(folder, '.DS_Store'), 'x');
    const result = await importInto(stateDir, folder);
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('entries whose names start with a dot do not count');
  });

  it('never replaces a damaged snapshot of ours by a module folder that has its name', async () => {
    const stateDir = await useTempDir();
    const outcome = await new SnapshotStore(stateDir).write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', Readable.from([Buffer.from('dump\n'.repeat(1000))])));
    const ours = path.join(stateDir, 'snapshots', rel(outcome!.identity));
    const pack = (await readdir(ours)).find((name) => name.endsWith('.pack'))!;
    await flipByte(path.join(ours, pack), 10);
    const before = await treeOf(ours);
    const folder = await moduleFolder(await useTempDir(), outcome!.identity);
    const result = await importInto(stateDir, folder);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain("the store's copy is a damaged snapshot of this store's own format");
    expect(await treeOf(ours)).toEqual(before);
  });
});

