/**
 * What an import says when the store's own disk is full (not "cannot read the stream", not an
 * unexpected error), and when a stream brings one file twice; either way nothing is imported.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it, onTestFinished } from 'vitest';
import { programPath } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';
import { exported as exportedOf, fakeDump, rewriteTar, snapshots } from './helpers.js';

const key = { container: 'mysql', component: 'shop' };

function exported(data: Buffer) {
  return exportedOf(key, data, { type: 'mysql-database', stream: 'dump.sql' });
}

/** The tar entries of an export, with `name` given twice. */
function withDuplicate(stream: Buffer, name: string): Promise<Buffer> {
  return rewriteTar(stream, (entry, data) => (entry === name ? [data, data] : [data]));
}

/** A tmpfs of `mib` MiB at `dir`, unmounted when the test finishes (the tests run as root, as CI does). */
async function smallDisk(dir: string, mib: number): Promise<void> {
  await mkdir(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m,mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
  onTestFinished(() => {
    execFileSync('umount', ['-l', dir]);
  });
}

describe('dysnomia-snapshots --import: errors that are not the source\'s', () => {
  it('a stream that brings manifest.json twice is refused, naming the file', async () => {
    const { stream, rel } = await exported(fakeDump(200_000, 4));
    const target = await useTempDir();
    const result = await snapshots(target, ['--import', '-'], await withDuplicate(stream, `${rel.split('/')[2]}/manifest.json`));
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain('the snapshot brings its file manifest.json twice; nothing was imported');
    expect(result.stderr).not.toContain('EEXIST');
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
  });

  it('a stream cut short anywhere inside a file says it ends in the middle of a file, and imports nothing', async () => {
    const { stream } = await exported(randomBytes(300_000));
    for (const length of [15_000, Math.floor(stream.length / 2), stream.length - 2_000]) {
      const target = await useTempDir();
      const result = await snapshots(target, ['--import', '-'], stream.subarray(0, length));
      expect(result.exitCode, `${length}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toContain('cannot read the snapshot stream: it ends in the middle of a file; it was cut short or damaged on its way');
      expect(result.stderr).toContain('nothing was imported');
      expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
    }
  });

  it('a full disk of the state dir is said to be that, for a folder and for a stream, and nothing is imported', async () => {
    const dir = await useTempDir();
    const folder = path.join(dir, 'from-a-module', '42');
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'state'), randomBytes(4 * 1024 * 1024));
    const { stream } = await exported(randomBytes(4 * 1024 * 1024));
    const target = path.join(dir, 'small');
    await smallDisk(target, 2);
    const attempts: [string, string[], Buffer | undefined][] = [
      ['folder', ['--import', '-C', 'svn', '-c', 'repo', folder], undefined],
      ['stream', ['--import', '-'], stream],
    ];
    for (const [what, args, input] of attempts) {
      const result = await snapshots(target, args, input);
      expect(result.exitCode, `${what}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toContain(`the disk of the state dir ${target} is full`);
      expect(result.stderr).toContain('nothing was imported');
      expect(result.stderr).not.toContain('unexpected');
      expect(result.stderr).not.toContain('cannot read the snapshot stream');
    }
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
    for (const [container, component] of [['svn', 'repo'], [key.container, key.component]]) {
      expect(await readdir(path.join(target, 'snapshots', container!, component!)).catch(() => [])).toEqual([]);
    }
  });

  it('a file size limit (ulimit -f) below a pack is said to be that, not a damaged stream or an unexpected error', async () => {
    const dir = await useTempDir();
    const folder = path.join(dir, 'from-a-module', '42');
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'state'), randomBytes(4 * 1024 * 1024));
    const { stream } = await exported(randomBytes(4 * 1024 * 1024));
    const streamFile = path.join(dir, 'export.tar');
    await writeFile(streamFile, stream);
    const target = path.join(dir, 'target');
    const attempts: [string, string][] = [
      ['folder', `--import -C svn -c repo "${folder}"`],
      ['stream', `--import - < "${streamFile}"`],
    ];
    for (const [what, args] of attempts) {
      const result = await execa('bash', ['-c', `ulimit -f 1024; "$NODE" "$CLI" ${args}`], {
        env: { DYSNOMIA_STATEDIR: target, NODE: process.execPath, CLI: programPath('dysnomia-snapshots') },
        reject: false,
      });
      expect(result.exitCode, `${what}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toContain('raise the file size limit (ulimit -f)');
      expect(result.stderr).toContain('nothing was imported');
      expect(result.stderr).not.toContain('unexpected');
      expect(result.stderr).not.toContain('cannot read the snapshot stream');
    }
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
  });

  it('a generation link it cannot make after the snapshot is in place is said so, not "nothing was imported"; importing again finishes it', async () => {
    const { stream, rel } = await exported(fakeDump(200_000, 6));
    const target = await useTempDir();
    // A file where the component's generations folder goes: the link cannot be made.
    await mkdir(path.join(target, 'generations', key.container), { recursive: true });
    const blocker = path.join(target, 'generations', key.container, key.component);
    await writeFile(blocker, 'not a folder');
    const result = await snapshots(target, ['--import', '-'], stream);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`${rel} is in the store, but its checksum file or generation link could not be written`);
    expect(result.stderr).not.toContain('nothing was imported');
    expect(await readdir(path.join(target, 'snapshots', key.container, key.component))).toEqual([rel.split('/')[2]]);
    await rm(blocker);
    const again = await snapshots(target, ['--import', '-'], stream);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain(`${rel}: the store has it already; generation 1`);
  });

  it('a state dir it cannot write to is said to be that, not a stream it could not read', async () => {
    const { stream } = await exported(fakeDump(200_000, 7));
    const target = await useTempDir();
    await writeFile(path.join(target, 'pool'), 'a file where the pool folder goes');
    const result = await snapshots(target, ['--import', '-'], stream);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot write to the state dir ${target} (ENOTDIR`);
    expect(result.stderr).toContain('nothing was imported and the store is as it was');
    expect(result.stderr).not.toContain('cannot read the snapshot stream');
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
  });
});

