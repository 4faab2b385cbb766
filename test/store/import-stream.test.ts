/**
 * What `--import -` makes of a stream that is not what `--export` sent: a header that disagrees
 * with the manifest it carries, a header of the wrong shape, a stream cut short or damaged on its
 * way into a store that has the snapshot already. Each is refused (exit 1) and the store stays as
 * it was.
 */
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { SnapshotStore } from '../../src/snapshot-store/store.js';
import { programPath } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';
import { exported as exportedOf, fakeDump, rewriteTar, snapshots, streamOf, treeOf } from './helpers.js';

const key = { container: 'gitc', component: 'repo1' };

/** A store holding one snapshot of `key`, and the stream `--export` makes of it. */
function exported(data: Buffer, extra: string[] = []) {
  return exportedOf(key, data, { type: 'git-repository', stream: 'dump', extra });
}

/** The stream with its dysnomia-export.json replaced by `edit` of it (every other entry as it was). */
function withHeader(stream: Buffer, edit: (header: Record<string, unknown>) => Record<string, unknown>): Promise<Buffer> {
  return rewriteTar(stream, (name, data) =>
    name === 'dysnomia-export.json' ? [Buffer.from(JSON.stringify(edit(JSON.parse(data.toString('utf8')) as Record<string, unknown>)))] : [data],
  );
}

/** A header edited as a sender would write it: with the checksum of its new fields. */
function resigned(header: Record<string, unknown>): Record<string, unknown> {
  const fields = [header.container, header.component, header.identity, header.omittedPacks];
  return { ...header, sha256: createHash('sha256').update(JSON.stringify(fields)).digest('hex') };
}

/** A header as versions before its checksum wrote it. */
function unsigned(header: Record<string, unknown>): Record<string, unknown> {
  const { sha256: _sha256, ...rest } = header;
  return rest;
}

/** The byte offset of `text` in the stream's header entry (the first 1024 bytes). */
function headerOffset(stream: Buffer, text: string): number {
  const at = stream.subarray(0, 1024).indexOf(text);
  expect(at).toBeGreaterThan(512);
  return at;
}

describe('--import - of a stream whose header disagrees with its manifest', () => {
  it('refuses a flipped byte in the component the header names (exit 1: its checksum fails), and imports nothing', async () => {
    const { stream } = await exported(fakeDump(300_000, 1));
    const damaged = Buffer.from(stream);
    damaged[headerOffset(stream, '"repo1"') + 1]! ^= 1; // repo1 -> sepo1
    const target = await useTempDir();
    const result = await snapshots(target, ['--import', '-'], damaged);
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain("the stream's dysnomia-export.json is damaged: its fields do not match its own checksum (sha256)");
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
    expect(await readdir(path.join(target, 'snapshots')).catch(() => [])).toEqual([]);
  });

  it('files a snapshot under the names its sender files it under, which its manifest need not have (imported there with -C/-c)', async () => {
    const { stream, identity } = await exported(fakeDump(300_000, 2));
    const middle = await useTempDir();
    const moved = await snapshots(middle, ['--import', '-', '-C', 'moved', '-c', 'repo2'], stream);
    expect(moved.exitCode, moved.stderr).toBe(0);
    const again = await execa(process.execPath, [programPath('dysnomia-snapshots'), '--export', `moved/repo2/${identity}`], {
      env: { DYSNOMIA_STATEDIR: middle },
      encoding: 'buffer',
      reject: false,
    });
    expect(again.exitCode).toBe(0);
    const target = await useTempDir();
    const result = await snapshots(target, ['--import', '-'], Buffer.from(again.stdout));
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).not.toContain('warning');
    expect((await snapshots(target, ['--query-all'])).stdout).toBe(`moved/repo2/${identity}\n`);
    // A header edited without its checksum is damaged.
    const stale = await snapshots(await useTempDir(), ['--import', '-'], await withHeader(stream, (header) => ({ ...header, container: 'other' })));
    expect(stale.exitCode).toBe(1);
    expect(stale.stderr).toContain('do not match its own checksum');
  });

  it('takes an older sender\'s header (no checksum) whose names differ from the manifest, with a warning naming both', async () => {
    const { stream, identity } = await exported(fakeDump(300_000, 6));
    const target = await useTempDir();
    const result = await snapshots(target, ['--import', '-'], await withHeader(stream, (header) => unsigned({ ...header, component: 'sepo1' })));
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('names the component "sepo1", and the snapshot was taken as component "repo1"');
    expect((await snapshots(target, ['--query-all'])).stdout).toBe(`gitc/sepo1/${identity}\n`);
  });

  it('refuses a header naming another identity than the files it carries', async () => {
    const { stream, identity } = await exported(fakeDump(300_000, 3));
    const other = `${identity.slice(0, -1)}${identity.endsWith('0') ? '1' : '0'}`;
    const target = await useTempDir();
    const result = await snapshots(target, ['--import', '-'], await withHeader(stream, (header) => resigned({ ...header, identity: other })));
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`its dysnomia-export.json names the identity ${other}, but its files are under ${identity}/`);
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
  });

  it('says a header of the wrong shape is damaged (exit 1), not a Node internal or a usage error', async () => {
    const { stream } = await exported(fakeDump(300_000, 4));
    const target = await useTempDir();
    const cases: [Record<string, unknown>, string][] = [
      [{ identity: 123 }, 'its identity is 123, not a string'],
      [{ container: null }, 'its container is null, not a string'],
      [{ component: ['a'] }, 'its component is ["a"], not a string'],
      [{ container: '..' }, 'it names the container "..", which is not a usable container name'],
      [{ identity: '../x' }, 'it names the identity "../x", which is not a usable snapshot identity'],
    ];
    for (const [change, said] of cases) {
      const result = await snapshots(target, ['--import', '-'], await withHeader(stream, (header) => ({ ...header, ...change })));
      expect(result.exitCode, `${JSON.stringify(change)}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toContain(`the stream's dysnomia-export.json is damaged: ${said}`);
      expect(result.stderr).not.toContain('argument must be of type');
    }
    expect(await readdir(target)).not.toContain('snapshots');
  });

  it('refuses a header that leaves out a pack the snapshot does not use, instead of linking it into the folder', async () => {
    const dump = fakeDump(300_000, 5);
    const { stream, identity } = await exported(dump);
    // A pack the receiver's pool has, which this snapshot does not use.
    const target = await useTempDir();
    const unrelated = await new SnapshotStore(target).write({ container: 'other', component: 'x' }, { type: 'git-repository' }, (sink) => sink.addStream('dump', streamOf(fakeDump(200_000, 99))));
    const packs = (await readdir(unrelated!.path)).filter((name) => name.endsWith('.pack')).map((name) => name.replace(/\.pack$/, ''));
    expect(packs).toHaveLength(1);
    const tree = await treeOf(target);
    const result = await snapshots(target, ['--import', '-'], await withHeader(stream, (header) => resigned({ ...header, omittedPacks: packs })));
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot import the stream of ${key.container}/${key.component}/${identity}: its dysnomia-export.json says it leaves out pack ${packs[0]}, which the snapshot's manifest does not name`);
    expect(await treeOf(target)).toEqual(tree);
  });
});

/** Where each entry of a tar stream ends (its data padded to 512 bytes), read from the headers. */
function entryEnds(stream: Buffer): { name: string; end: number }[] {
  const ends: { name: string; end: number }[] = [];
  for (let at = 0; at + 512 <= stream.length && stream[at] !== 0; ) {
    const field = (from: number, to: number) => stream.subarray(at + from, at + to).toString('utf8').replace(/\0.*$/s, '');
    // ustar: a name longer than 100 bytes has its folders in the prefix field.
    const name = field(345, 500) === '' ? field(0, 100) : `${field(345, 500)}/${field(0, 100)}`;
    const size = Number.parseInt(field(124, 136).trim(), 8);
    at += 512 + Math.ceil(size / 512) * 512;
    ends.push({ name, end: at });
  }
  return ends;
}

describe('--import - of a stream cut short or damaged on its way', () => {
  it('into a store that has the snapshot intact: exit 1 saying so, no generation added, the store as it was', async () => {
    const { stateDir, stream, rel } = await exported(fakeDump(300_000, 6));
    // A second snapshot makes the first one an older generation, which an import would add again.
    await new SnapshotStore(stateDir).write(key, { type: 'git-repository' }, (sink) => sink.addStream('dump', streamOf(fakeDump(100_000, 7))));
    const ends = entryEnds(stream);
    const packEnd = ends.find((entry) => entry.name.endsWith('.pack'))!.end;
    const flipped = Buffer.from(stream);
    flipped[packEnd - 2_000]! ^= 1;
    const tree = await treeOf(stateDir);
    const cases: [string, Buffer, string][] = [
      ['the header only (head -c 1024)', stream.subarray(0, 1024), "the stream ended before the first of the snapshot's files"],
      ['cut after the manifest', stream.subarray(0, ends[1]!.end), 'without the end of the tar archive, so it seems cut short'],
      ['cut after the last file, before the end of the archive', stream.subarray(0, packEnd), 'without the end of the tar archive, so it seems cut short'],
      ['cut inside the pack', stream.subarray(0, packEnd - 5_000), 'it ends in the middle of a file'],
      ['a flipped byte in the pack', flipped, 'is damaged (its content hashes to'],
    ];
    for (const [what, input, said] of cases) {
      const result = await snapshots(stateDir, ['--import', '-'], input);
      expect(result.exitCode, `${what}: ${result.stderr}`).toBe(1);
      expect(result.stderr, what).toContain(said);
      expect(result.stderr, what).not.toContain('the store has it already');
      expect(await treeOf(stateDir), what).toEqual(tree);
    }
    // The whole stream is still "the store has it already", and adds the generation.
    const whole = await snapshots(stateDir, ['--import', '-'], stream);
    expect(whole.exitCode, whole.stderr).toBe(0);
    expect(whole.stderr).toContain(`${rel}: the store has it already; generation 3`);
    const check = await snapshots(stateDir, ['--query-all', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
  });

  it('by a member of the store\'s group, who may read its packs but not link them (fs.protected_hardlinks): the store has it already', async () => {
    const { stateDir, stream, rel } = await exported(fakeDump(300_000, 9));
    // The group recipe of docs/snapshot-store.md, with root's group: folders and metadata the
    // group may write; the snapshot data stays 0440, owned by root.
    await execa('chmod', ['755', stateDir]);
    await execa('find', [stateDir, '-type', 'd', '-exec', 'chmod', 'g+rwxs', '{}', '+']);
    await execa('find', [stateDir, '-type', 'f', '!', '-name', '*.pack', '!', '-name', '*.chunks', '-exec', 'chmod', 'g+rw', '{}', '+']);
    const result = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--groups=0', process.execPath, programPath('dysnomia-snapshots'), '--import', '-'],
      { env: { DYSNOMIA_STATEDIR: stateDir }, input: stream, reject: false },
    );
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain(`${rel}: the store has it already`);
  });

  it('cut exactly after a file, into an empty store: says the stream seems cut short, not only that a pack is missing', async () => {
    const { stream, rel } = await exported(fakeDump(300_000, 8));
    const ends = entryEnds(stream);
    for (const cut of ends.slice(1)) {
      const target = await useTempDir();
      const result = await snapshots(target, ['--import', '-'], stream.subarray(0, cut.end));
      expect(result.exitCode, `${cut.name}: ${result.stderr}`).toBe(1);
      expect(result.stderr).toContain(`cannot import the stream of ${rel}: the stream ends after its file ${cut.name} without the end of the tar archive, so it seems cut short`);
      expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
    }
  });
});

describe('a state dir that does not exist', () => {
  it('is not created by an export of a snapshot it cannot have, nor by an import of no stream', async () => {
    const parent = await useTempDir();
    const missing = path.join(parent, 'state');
    const exported = await snapshots(missing, ['--export', 'a/b/c']);
    expect(exported.exitCode, exported.stderr).toBe(2);
    expect(exported.stderr).toContain(`there is no snapshot a/b/c in ${missing}`);
    const based = await snapshots(missing, ['--export', 'a/b/c', '--base', 'a/b/d']);
    expect(based.exitCode, based.stderr).toBe(2);
    const empty = await snapshots(missing, ['--import', '-C', 'x', '-c', 'y', '-'], '');
    expect(empty.exitCode, empty.stderr).toBe(1);
    expect(empty.stderr).toContain('the input is empty');
    const garbage = await snapshots(missing, ['--import', '-C', 'x', '-c', 'y', '-'], 'not a tar stream at all');
    expect(garbage.exitCode, garbage.stderr).not.toBe(0);
    expect(await readdir(parent)).toEqual([]);
  });

  it('is created by an import of a valid stream, with -C/-c as without', async () => {
    const { stream, identity } = await exported(fakeDump(200_000, 9));
    for (const args of [['--import', '-'], ['--import', '-C', 'x', '-c', 'y', '-']]) {
      const target = path.join(await useTempDir(), 'state');
      const result = await snapshots(target, args, stream);
      expect(result.exitCode, result.stderr).toBe(0);
      expect((await snapshots(target, ['--query-all'])).stdout).toBe(`${args.length > 2 ? 'x/y' : 'gitc/repo1'}/${identity}\n`);
    }
  });
});
