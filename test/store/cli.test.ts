import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, cp, lstat, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/core/lock.js';
import { SnapshotStore } from '../../src/snapshot-store/index.js';
import { runCli, stderrSays } from '../support/cli.js';
import { lockHolders } from '../support/core.js';
import { useTempDir } from '../support/temp.js';
import { fakeDump, flipByte, readAll, sha256, snapshots, streamOf, treeOf } from './helpers.js';

const key = { container: 'mysql-production', component: 'testdb' };

async function storeWith(stateDir: string, ...dumps: Buffer[]) {
  const store = new SnapshotStore(stateDir);
  const outcomes = [];
  for (const dump of dumps) {
    outcomes.push(await store.write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', streamOf(dump))));
  }
  return { store, outcomes: outcomes.map((o) => o!) };
}

async function poolPacks(stateDir: string): Promise<string[]> {
  const pool = path.join(stateDir, 'pool');
  const result: string[] = [];
  for (const fanout of await readdir(pool).catch(() => [] as string[])) {
    for (const name of await readdir(path.join(pool, fanout))) result.push(name);
  }
  return result.sort();
}

describe('dysnomia-snapshots queries', () => {
  it('prints latest and all generations as container/component/id, and as JSON', async () => {
    const stateDir = await useTempDir();
    const a = fakeDump(100_000, 1);
    const b = fakeDump(100_000, 2);
    await storeWith(stateDir, a, b);
    const all = await snapshots(stateDir, ['--query-all']);
    expect(all.exitCode).toBe(0);
    expect(all.stdout).toBe(`${key.container}/${key.component}/${sha256(a)}\n${key.container}/${key.component}/${sha256(b)}\n`);
    const latest = await snapshots(stateDir, ['--query-latest', '-C', key.container, '-c', '/nix/store/0123456789abcdfghijklmnpqrsvwxyz-testdb']);
    expect(latest.stdout).toBe(`${key.container}/${key.component}/${sha256(b)}\n`);
    const other = await snapshots(stateDir, ['--query-all', '-C', 'other']);
    expect(other.stdout).toBe('');
    const json = JSON.parse((await snapshots(stateDir, ['--query-latest', '--json'])).stdout);
    expect(json).toEqual([{ ...key, generation: 2, identity: sha256(b), path: `${key.container}/${key.component}/${sha256(b)}` }]);
  });

  it('resolves paths and prints the missing ones', async () => {
    const stateDir = await useTempDir();
    const a = fakeDump(50_000);
    await storeWith(stateDir, a);
    const rel = `${key.container}/${key.component}/${sha256(a)}`;
    const resolved = await snapshots(stateDir, ['--resolve', rel]);
    expect(resolved.stdout).toBe(`${path.join(stateDir, 'snapshots', rel)}\n`);
    const missing = await snapshots(stateDir, ['--print-missing', rel, `${key.container}/${key.component}/abc`]);
    expect(missing.stdout).toBe(`${key.container}/${key.component}/abc\n`);
  });
});

describe('dysnomia-snapshots --check', () => {
  it('passes on intact snapshots and names the snapshot and chunk of a flipped byte in a pack', async () => {
    const stateDir = await useTempDir();
    const a = fakeDump(300_000, 1);
    const { outcomes } = await storeWith(stateDir, a, fakeDump(300_000, 2));
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
    const pack = (await readdir(outcomes[0]!.path)).find((name) => name.endsWith('.pack'))!;
    await flipByte(path.join(outcomes[0]!.path, pack), 2000);
    const result = await snapshots(stateDir, ['--query-all', '--check']);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`check failed: ${key.container}/${key.component}/${sha256(a)}: stream dump.sql: chunk \\d+ \\(pack ${pack.slice(0, 64)}`));
    expect(result.stderr).toContain('1 damaged');
    expect((await snapshots(stateDir, ['--query-latest', '--check'])).exitCode).toBe(0);
  });

  it('finds a flipped byte in the manifest', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(100_000));
    const manifest = path.join(outcomes[0]!.path, 'manifest.json');
    const text = await readFile(manifest, 'utf8');
    await flipByte(manifest, text.indexOf('"created"') + 15);
    const result = await snapshots(stateDir, ['--query-all', '--check']);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/manifest\.json does not match its own checksum/);
    expect(result.stderr).toContain(outcomes[0]!.identity);
  });

  it('finds a checksum file that disagrees with the snapshot', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(100_000));
    await writeFile(path.join(stateDir, 'checksums', key.container, key.component, outcomes[0]!.identity), `sha256:${'0'.repeat(64)}`);
    const result = await snapshots(stateDir, ['--query-all', '--check']);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/its checksum file says sha256:0+/);
  });
});

describe('dysnomia-snapshots --gc', () => {
  it('keeps 3, then 1, then 0 generations, and sweeps pool data no folder links', async () => {
    const stateDir = await useTempDir();
    const dumps = [1, 2, 3, 4, 5].map((seed) => fakeDump(200_000, seed));
    await storeWith(stateDir, ...dumps);
    const before = await poolPacks(stateDir);
    const three = await snapshots(stateDir, ['--gc', '--keep', '3']);
    expect(three.exitCode).toBe(0);
    expect(three.stderr).toMatch(/removed 2 generations, 2 snapshots, 2 pool packs; freed \d/);
    expect((await snapshots(stateDir, ['--query-all'])).stdout.trim().split('\n').map((l) => l.split('/')[2])).toEqual(
      dumps.slice(2).map((d) => sha256(d)),
    );
    expect(await poolPacks(stateDir)).toHaveLength(before.length - 2);
    expect((await snapshots(stateDir, ['--gc'])).exitCode).toBe(0);
    expect((await snapshots(stateDir, ['--query-all'])).stdout).toBe(`${key.container}/${key.component}/${sha256(dumps[4]!)}\n`);
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
    const zero = await snapshots(stateDir, ['--gc', '--keep', '0']);
    expect(zero.stderr).toMatch(/removed 1 generation, 1 snapshot, 1 pool pack/);
    expect((await snapshots(stateDir, ['--query-all'])).stdout).toBe('');
    expect(await poolPacks(stateDir)).toEqual([]);
    expect(await readdir(path.join(stateDir, 'snapshots'))).toEqual([]);
    expect(await readdir(path.join(stateDir, 'checksums'))).toEqual([]);
  });

  it('keeps a snapshot that a kept generation still names, and changes nothing on --dry-run', async () => {
    const stateDir = await useTempDir();
    const a = fakeDump(100_000, 1);
    const b = fakeDump(100_000, 2);
    await storeWith(stateDir, a, b, a);
    const tree = await treeOf(stateDir);
    const dry = await snapshots(stateDir, ['--gc', '--dry-run', '--json']);
    expect(dry.exitCode).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({
      dryRun: true,
      generationsRemoved: [`${key.container}/${key.component}/1`, `${key.container}/${key.component}/2`],
      snapshotsRemoved: [`${key.container}/${key.component}/${sha256(b)}`],
    });
    expect(dry.stderr).toMatch(/would remove 2 generations, 1 snapshot/);
    expect(await treeOf(stateDir)).toEqual(tree);
    const real = await snapshots(stateDir, ['--gc', '--json']);
    const report = JSON.parse(real.stdout);
    expect(report.bytesFreed).toBe(JSON.parse(dry.stdout).bytesFreed);
    expect((await snapshots(stateDir, ['--query-all'])).stdout).toBe(`${key.container}/${key.component}/${sha256(a)}\n`);
    expect((await snapshots(stateDir, ['--query-all', '--check'])).exitCode).toBe(0);
  });

  it('keeps daily, weekly and monthly generations (restic semantics) with a fake clock', async () => {
    const stateDir = await useTempDir();
    // Two snapshots a day, at 01:00 and 13:00 local time, from 2024-01-01 for 70 days.
    const times: Date[] = [];
    for (let day = 0; day < 70; day += 1) {
      for (const hour of [1, 13]) times.push(new Date(2024, 0, 1 + day, hour));
    }
    let clock = times[0]!;
    const store = new SnapshotStore(stateDir, { now: () => clock });
    for (const [i, time] of times.entries()) {
      clock = time;
      await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(Buffer.from(`night ${i}\n`))));
    }
    const result = await snapshots(stateDir, ['--gc', '--keep-daily', '3', '--keep-weekly', '2', '--keep-monthly', '3', '--json']);
    expect(result.exitCode).toBe(0);
    const kept = JSON.parse((await snapshots(stateDir, ['--query-all', '--json'])).stdout) as { generation: number }[];
    const keptTimes = kept.map((entry) => times[entry.generation - 1]!.toISOString());
    const local = (y: number, m: number, d: number) => new Date(y, m, d, 13).toISOString();
    // Newest of the last 3 days; of the last 2 ISO weeks (Sun 10 Mar, Sun 3 Mar);
    // of the last 3 months (10 Mar, 29 Feb, 31 Jan).
    expect(keptTimes.sort()).toEqual(
      [local(2024, 0, 31), local(2024, 1, 29), local(2024, 2, 3), local(2024, 2, 8), local(2024, 2, 9), local(2024, 2, 10)].sort(),
    );
    const combined = await snapshots(stateDir, ['--gc', '--keep', '4', '--keep-monthly', '1', '--json']);
    expect(JSON.parse(combined.stdout).generationsRemoved).toHaveLength(2);
  });
});

describe('dysnomia-snapshots --check beside --gc', () => {
  it('lists and checks under one store lock: a gc queued meanwhile waits, and nothing intact is reported damaged', async () => {
    const stateDir = await useTempDir();
    await storeWith(stateDir, fakeDump(200_000, 1), fakeDump(200_000, 2), fakeDump(200_000, 3));
    const start = (args: string[]) => {
      const child = execa(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), ...args], { env: { DYSNOMIA_STATEDIR: stateDir }, reject: false });
      return { child, waiting: stderrSays(child, 'waiting for the snapshot store') };
    };
    // Someone reads the store; a gc queues behind it, then a check starts.
    const reader = await acquireLock(path.join(stateDir, 'locks', 'store.lock'), 'shared', { what: 'a reader of the test' });
    const gc = start(['--gc', '--keep', '1']);
    await gc.waiting;
    const check = start(['--query-all', '--check']);
    await check.waiting;
    await reader.release();
    const [gcDone, checkDone] = await Promise.all([gc.child, check.child]);
    expect(gcDone.exitCode, gcDone.stderr).toBe(0);
    // The check ran after the gc, on what the gc kept: one snapshot, intact.
    expect(checkDone.exitCode, checkDone.stderr).toBe(0);
    expect(checkDone.stdout.trim().split('\n')).toHaveLength(1);
    expect(checkDone.stderr).toContain('checked 1 snapshot: all intact');
  });
});

describe('dysnomia-snapshots --gc when the store cannot be read or holds strays', () => {
  it('removes nothing and fails when a component\'s generations cannot be read', async () => {
    const stateDir = await useTempDir();
    await storeWith(stateDir, fakeDump(50_000, 1), fakeDump(50_000, 2), fakeDump(50_000, 3));
    await chmod(stateDir, 0o755);
    await execa('chown', ['-R', 'nobody', stateDir]);
    const generations = path.join(stateDir, 'generations', key.container, key.component);
    await chmod(generations, 0o000);
    const tree = await treeOf(stateDir);
    // As root every folder is readable: an unprivileged user meets the permission error.
    const gc = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), '--gc', '--keep', '2'],
      { env: { DYSNOMIA_STATEDIR: stateDir }, reject: false },
    );
    expect(gc.exitCode, gc.stderr).toBe(1);
    expect(gc.stderr).toContain(generations);
    expect(gc.stderr).toMatch(/permission denied/i);
    await chmod(generations, 0o755);
    expect(await treeOf(stateDir)).toEqual(tree);
    expect((await snapshots(stateDir, ['--query-all'])).stdout.trim().split('\n')).toHaveLength(3);
  });

  it('numbers a new generation past a stray file named like one, instead of waiting for it forever', async () => {
    const stateDir = await useTempDir();
    await storeWith(stateDir, fakeDump(50_000, 1));
    const generations = path.join(stateDir, 'generations', key.container, key.component);
    await writeFile(path.join(generations, '2'), 'not a link\n');
    const store = new SnapshotStore(stateDir);
    const outcome = await store.write(key, { type: 'mysql-database' }, (sink) => sink.addStream('dump.sql', streamOf(fakeDump(50_000, 2))));
    expect(outcome?.generation).toBe(3);
    expect((await readdir(generations)).sort()).toEqual(['1', '2', '3']);
    expect(await readFile(path.join(generations, '2'), 'utf8')).toBe('not a link\n');
    const latest = await snapshots(stateDir, ['--query-latest']);
    expect(latest.stdout).toBe(`${key.container}/${key.component}/${sha256(fakeDump(50_000, 2))}\n`);
  });
});

describe('dysnomia-snapshots --import', () => {
  it('keeps the dates of an imported history, so that --gc --keep-daily keeps there what it kept here', async () => {
    const source = await useTempDir();
    const byStream = await useTempDir();
    const byFolder = await useTempDir();
    const days = [new Date(2024, 0, 1, 13), new Date(2024, 0, 3, 13), new Date(2024, 0, 6, 13), new Date(2024, 0, 9, 13)];
    let clock = days[0]!;
    const store = new SnapshotStore(source, { now: () => clock });
    for (const [i, day] of days.entries()) {
      clock = day;
      await store.write(key, { type: 't' }, (sink) => sink.addStream('dump.sql', streamOf(Buffer.from(`night ${i}\n`))));
    }
    const cli = path.resolve('dist/bin/dysnomia-snapshots.js');
    const ids = (await snapshots(source, ['--query-all'])).stdout.trim().split('\n');
    expect(ids).toHaveLength(4);
    for (const id of ids) {
      const moved = await execa('bash', ['-o', 'pipefail', '-c', `node ${cli} --export ${id} | DYSNOMIA_STATEDIR=${byStream} node ${cli} --import -`], {
        env: { DYSNOMIA_STATEDIR: source },
        reject: false,
      });
      expect(moved.exitCode, moved.stderr).toBe(0);
      const copied = await snapshots(byFolder, ['--import', path.join(source, 'snapshots', id)]);
      expect(copied.exitCode, copied.stderr).toBe(0);
    }
    for (const target of [byStream, byFolder]) {
      const generations = path.join(target, 'generations', key.container, key.component);
      const times = await Promise.all(['1', '2', '3', '4'].map(async (n) => (await lstat(path.join(generations, n))).mtime.getTime()));
      expect(times).toEqual(days.map((day) => day.getTime()));
      const gc = await snapshots(target, ['--gc', '--keep-daily', '7', '--dry-run', '--json']);
      expect(gc.exitCode, gc.stderr).toBe(0);
      expect(JSON.parse(gc.stdout).generationsRemoved).toEqual([]);
    }
  });

  it('with several folders: a path that is no folder stops it before anything is imported; a damaged folder does not stop the others', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const { outcomes } = await storeWith(source, fakeDump(300_000, 1), fakeDump(300_000, 2), fakeDump(300_000, 3));
    const [one, two, three] = outcomes.map((outcome) => outcome.path);
    const before = await treeOf(target);
    const typo = await snapshots(target, ['--import', one!, path.join(source, 'no-such-folder'), two!]);
    expect(typo.exitCode).toBe(2);
    expect(typo.stderr).toContain(`cannot import ${path.join(source, 'no-such-folder')}: it is not a folder; nothing was imported`);
    expect(await treeOf(target)).toEqual(before);
    expect((await snapshots(target, ['--query-all'])).stdout).toBe('');

    const copies = await useTempDir();
    await execa('cp', ['-a', two!, copies]);
    const damaged = path.join(copies, path.basename(two!));
    await flipByte(path.join(damaged, (await readdir(damaged)).find((name) => name.endsWith('.pack'))!), 100);
    const result = await snapshots(target, ['--import', '--json', one!, damaged, three!]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`cannot import ${damaged}`);
    expect(result.stderr).toContain('imported 2 of 3 snapshot folders; 1 failed');
    expect((JSON.parse(result.stdout) as { identity: string }[]).map((outcome) => outcome.identity)).toEqual([path.basename(one!), path.basename(three!)]);
    expect((await snapshots(target, ['--query-all', '--check'])).stdout.trim().split('\n')).toHaveLength(2);
  });

  it('imports a cp -a copy into a fresh state dir, verified, and links pool data it has', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const base = fakeDump(6_000_000, 7);
    const changed = Buffer.concat([base.subarray(0, 3_000_000), Buffer.from('a small change\n'), base.subarray(3_000_000)]);
    const { outcomes } = await storeWith(source, base, changed);
    const copies = await useTempDir();
    for (const outcome of outcomes) {
      await execa('cp', ['-a', outcome.path, copies]);
    }
    const first = await snapshots(target, ['--import', '-C', key.container, '-c', key.component, path.join(copies, outcomes[0]!.identity), '--json']);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)[0]).toMatchObject({ identity: sha256(base), generation: 1, newSnapshot: true, packsLinked: 0 });
    // The second snapshot's folder names the first one's packs too: those are linked, not copied.
    const second = await snapshots(target, ['--import', path.join(copies, outcomes[1]!.identity), '--json']);
    expect(second.exitCode, second.stderr).toBe(0);
    const outcome = JSON.parse(second.stdout)[0];
    expect(outcome).toMatchObject({ container: key.container, component: key.component, identity: sha256(changed), generation: 2 });
    expect(outcome.packsLinked).toBeGreaterThan(0);
    expect(outcome.bytesReceived).toBeLessThan(base.length / 10);
    expect((await snapshots(target, ['--query-all', '--check'])).exitCode).toBe(0);
    const store = new SnapshotStore(target);
    expect((await readAll((await store.latest(key))!, 'dump.sql')).equals(changed)).toBe(true);
    for (const name of await readdir(path.join(copies, outcomes[1]!.identity))) {
      if (!name.endsWith('.pack')) continue;
      expect((await stat(path.join(target, 'snapshots', key.container, key.component, sha256(changed), name))).nlink).toBeGreaterThanOrEqual(2);
    }
    const again = await snapshots(target, ['--import', path.join(copies, outcomes[1]!.identity)]);
    expect(again.stderr).toMatch(/the store has it already; already generation 2/);
  });

  it('refuses a folder with a bad manifest or a corrupted chunk, and changes nothing', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const { outcomes } = await storeWith(source, fakeDump(400_000, 3));
    await storeWith(target, fakeDump(100_000, 4));
    const tree = await treeOf(target);
    const copies = await useTempDir();
    const badManifest = path.join(copies, 'bad-manifest', outcomes[0]!.identity);
    const badChunk = path.join(copies, 'bad-chunk', outcomes[0]!.identity);
    await cp(outcomes[0]!.path, badManifest, { recursive: true });
    await cp(outcomes[0]!.path, badChunk, { recursive: true });
    const manifest = path.join(badManifest, 'manifest.json');
    await flipByte(manifest, (await readFile(manifest, 'utf8')).indexOf('"type"') + 10);
    const pack = (await readdir(badChunk)).find((name) => name.endsWith('.pack'))!;
    await flipByte(path.join(badChunk, pack), 500);
    const one = await snapshots(target, ['--import', badManifest]);
    expect(one.exitCode).toBe(1);
    expect(one.stderr).toMatch(/cannot import .*bad-manifest.*manifest\.json does not match its own checksum/);
    const two = await snapshots(target, ['--import', '-C', 'c', '-c', 'd', badChunk]);
    expect(two.exitCode).toBe(1);
    expect(two.stderr).toMatch(new RegExp(`pack ${pack.slice(0, 64)} is damaged`));
    const notSnapshot = await snapshots(target, ['--import', '-C', 'c', '-c', 'd', copies]);
    expect(notSnapshot.exitCode).toBe(2);
    expect(notSnapshot.stderr).toMatch(/is not a snapshot folder/);
    expect(await treeOf(target)).toEqual(tree);
  });
});

describe('dysnomia-snapshots --export and --import -', () => {
  it('says so and exits 1 when its output cannot be written (a reader gone, a full disk), and leaves no lock behind', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(8_000_000, 3));
    const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
    const sh = (command: string) =>
      execa('bash', ['-c', command], { env: { DYSNOMIA_STATEDIR: stateDir, CLI: path.resolve('dist/bin/dysnomia-snapshots.js'), NODE: process.execPath }, reject: false });
    const cases: [string, string][] = [
      // ssh dying in `--export | ssh host dysnomia-snapshots --import -` looks like this.
      [`"$NODE" "$CLI" --export ${rel} | head -c 1000 > /dev/null; exit \${PIPESTATUS[0]}`, 'its output cannot be written (write EPIPE)'],
      [`"$NODE" "$CLI" --export ${rel} > /dev/full`, 'its output cannot be written (ENOSPC'],
      [`"$NODE" "$CLI" --gc --dry-run --json > /dev/full`, 'cannot write to standard output: ENOSPC'],
    ];
    for (const [command, message] of cases) {
      const result = await sh(command);
      expect(result.exitCode, `${command}\n${result.stderr}`).toBe(1);
      expect(result.stderr).toContain(message);
      expect(result.stderr).not.toMatch(/^\s+at /m);
    }
    // The next run finds no lock of a dead export to take over.
    const next = await snapshots(stateDir, ['--query-all', '--check']);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stderr).not.toContain('stale lock');
  });

  for (const [signal, status] of [['SIGTERM', 143], ['SIGINT', 130], ['SIGHUP', 129]] as const) {
    it(`${signal} to an export stalled on its reader says what it left, exits ${status}, and leaves no lock behind`, async () => {
      const stateDir = await useTempDir();
      const { outcomes } = await storeWith(stateDir, fakeDump(8_000_000, 4));
      const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
      // stdout is a pipe nobody reads (node's own spawn: execa would drain it): the export fills
      // it and waits, holding the store lock.
      const child = spawn(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', rel], {
        env: { ...process.env, DYSNOMIA_STATEDIR: stateDir },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (piece: Buffer) => (stderr += piece.toString()));
      const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
      for (let i = 0; i < 200 && (await lockHolders(stateDir)).length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await lockHolders(stateDir)).not.toEqual([]);
      child.kill(signal);
      const [code] = await exited;
      child.stdout.destroy();
      expect(code, stderr).toBe(status);
      expect(stderr).toContain('interrupted: the export stopped: what it had sent is cut short, and an --import of it refuses it');
      expect(await lockHolders(stateDir)).toEqual([]);
    });
  }

  it('--import - of an export cut short before its first file says so (exit 1) and imports nothing', async () => {
    const stateDir = await useTempDir();
    const target = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(2_000_000, 9));
    const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
    const result = await execa(
      'bash',
      ['-c', `DYSNOMIA_STATEDIR="$A" "$NODE" "$CLI" --export ${rel} | head -c 1024 | DYSNOMIA_STATEDIR="$B" "$NODE" "$CLI" --import -; exit \${PIPESTATUS[2]}`],
      { env: { A: stateDir, B: target, CLI: path.resolve('dist/bin/dysnomia-snapshots.js'), NODE: process.execPath }, reject: false },
    );
    expect(result.exitCode, result.stderr).toBe(1);
    expect(result.stderr).toContain(`cannot import the stream of ${rel}: the stream ended before the first of the snapshot's files; was the export cut short`);
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
  });

  it('--import - with stdin a terminal is refused at once (exit 2) instead of waiting for a stream nobody types', async () => {
    const stateDir = await useTempDir();
    // script(1) gives the program a terminal; timeout ends a run that waits on it.
    const result = await execa(
      'script',
      ['-qec', `DYSNOMIA_STATEDIR="$A" timeout 10 "$NODE" "$CLI" --import -; echo "exit=$?"`, '/dev/null'],
      { env: { A: stateDir, CLI: path.resolve('dist/bin/dysnomia-snapshots.js'), NODE: process.execPath }, reject: false },
    );
    expect(result.stdout).toContain('--import - reads a tar stream from stdin, which is a terminal');
    expect(result.stdout).toContain('exit=2');
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('exports from a store this user cannot write (another user\'s state dir, readable through its group), as --check and a restore read it', async () => {
    const stateDir = await useTempDir();
    const target = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(1_000_000, 11));
    const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
    await chmod(stateDir, 0o755);
    // A backup agent's way in: the store's group (snapshot data is never readable by others).
    await execa('chgrp', ['-R', 'nogroup', stateDir]);
    const exported = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', rel],
      { env: { DYSNOMIA_STATEDIR: stateDir }, encoding: 'buffer', reject: false },
    );
    expect(exported.exitCode, Buffer.from(exported.stderr).toString()).toBe(0);
    const imported = await runCli('dysnomia-snapshots', ['--import', '-'], { env: { DYSNOMIA_STATEDIR: target }, input: Buffer.from(exported.stdout) });
    expect(imported.exitCode, imported.stderr).toBe(0);
    expect(imported.stderr).toContain(`imported ${rel} as generation 1`);
  });

  it('says so when the store owner\'s gc removes the snapshot that a group member exports without the store lock', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(40_000_000, 13), fakeDump(1_000_000, 14));
    const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
    await chmod(stateDir, 0o755);
    await execa('chgrp', ['-R', 'nogroup', stateDir]);
    // The group member cannot write the store's lock, so its export holds nothing off: stalled on a
    // pipe nobody reads yet, it is overtaken by the owner's gc, which removes the first generation.
    const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', rel], {
      env: { DYSNOMIA_STATEDIR: stateDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (piece: Buffer) => (stderr += piece.toString()));
    const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const gc = await runCli('dysnomia-snapshots', ['--gc', '--keep', '1'], { env: { DYSNOMIA_STATEDIR: stateDir } });
    expect(gc.stderr).toContain(`removing snapshot ${rel}`);
    child.stdout.resume();
    const [code] = await exited;
    expect(code, stderr).toBe(1);
    expect(stderr).toMatch(/cannot export \S+: its file \S+\.pack was removed while it was being exported; this user cannot write the store's lock/);
    expect(stderr).not.toMatch(/unexpected error|damaged/);
  });

  it('says a snapshot this user may not read cannot be exported for a permission, before it writes anything', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(1_000_000, 12));
    const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
    await chmod(stateDir, 0o755);
    // Not in the store's group: the manifest (0644) is readable, the chunk index (0440) is not.
    const exported = await execa(
      'setpriv',
      ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', rel],
      { env: { DYSNOMIA_STATEDIR: stateDir }, encoding: 'buffer', reject: false },
    );
    const stderr = Buffer.from(exported.stderr).toString();
    expect(exported.exitCode, stderr).toBe(1);
    expect(stderr).toMatch(/cannot read \S+\.chunks: permission denied; snapshot data is readable by its owner and group \(uid 0, gid 0\) only/);
    expect(stderr).not.toMatch(/standard output|unexpected error|damaged/);
    expect(exported.stdout.length).toBe(0);
  });

  it('names the file of a damaged snapshot it cannot export', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(2_000_000, 4));
    const rel = `${key.container}/${key.component}/${outcomes[0]!.identity}`;
    const folder = path.join(stateDir, 'snapshots', rel);
    const pack = (await readdir(folder)).find((name) => name.endsWith('.pack'))!;
    await rm(path.join(folder, pack));
    const result = await snapshots(stateDir, ['--export', rel]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`cannot export ${rel}: its file ${pack} cannot be read (`);
    expect(result.stderr).toContain('see dysnomia-snapshots --check');
    expect(result.stderr).not.toContain('unexpected error');
  });

  it('moves a snapshot through a pipe, and sends only new packs the second time', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const base = fakeDump(40_000_000, 9);
    const changed = Buffer.concat([base.subarray(0, 20_000_000), Buffer.from('one changed row\n'), base.subarray(20_000_100)]);
    const { outcomes } = await storeWith(source, base);
    const rel = (identity: string) => `${key.container}/${key.component}/${identity}`;
    // The pack list and the tar go in a folder of their own, removed with the test (beside $DST they stayed in /tmp).
    const files = await useTempDir();
    const sh = (command: string) =>
      execa('sh', ['-c', command], {
        env: { SRC: source, DST: target, FILES: files, CLI: path.resolve('dist/bin/dysnomia-snapshots.js'), NODE: process.execPath },
        reject: false,
      });
    const first = await sh(`DYSNOMIA_STATEDIR="$SRC" "$NODE" "$CLI" --export ${rel(outcomes[0]!.identity)} | DYSNOMIA_STATEDIR="$DST" "$NODE" "$CLI" --import - --json`);
    expect(first.exitCode, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)[0]).toMatchObject({ identity: sha256(base), newSnapshot: true, packsLinked: 0 });
    const firstBytes = JSON.parse(first.stdout)[0].bytesReceived;
    const { store } = await storeWith(source, changed);
    void store;
    const have = await sh(`DYSNOMIA_STATEDIR="$DST" "$NODE" "$CLI" --list-packs`);
    const second = await sh(
      `DYSNOMIA_STATEDIR="$DST" "$NODE" "$CLI" --list-packs > "$FILES/have" && DYSNOMIA_STATEDIR="$SRC" "$NODE" "$CLI" --export ${rel(sha256(changed))} --have "$FILES/have" | DYSNOMIA_STATEDIR="$DST" "$NODE" "$CLI" --import - --json`,
    );
    expect(second.exitCode, second.stderr).toBe(0);
    const outcome = JSON.parse(second.stdout)[0];
    expect(outcome.packsLinked).toBeGreaterThan(0);
    expect(outcome.bytesReceived).toBeLessThan(firstBytes / 10);
    expect(have.stdout.trim().split('\n').length).toBeGreaterThan(0);
    const viaBase = await sh(
      `DYSNOMIA_STATEDIR="$SRC" "$NODE" "$CLI" --export ${rel(sha256(changed))} --base ${rel(sha256(base))} > "$FILES/export.tar"`,
    );
    expect(viaBase.stderr).toMatch(/left out/);
    const received = new SnapshotStore(target);
    expect((await readAll((await received.latest(key))!, 'dump.sql')).equals(changed)).toBe(true);
    expect((await snapshots(target, ['--query-all', '--check'])).exitCode).toBe(0);
  });

  it('puts its checked copy of a pack in the pool when the pool\'s copy is damaged, instead of using it', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const dump = fakeDump(2_000_000, 4);
    const { outcomes } = await storeWith(source, dump);
    const stream = await execa(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', `${key.container}/${key.component}/${outcomes[0]!.identity}`], {
      env: { DYSNOMIA_STATEDIR: source },
      encoding: 'buffer',
    });
    const tar = Buffer.from(stream.stdout);
    expect((await snapshots(target, ['--import', '-'], tar)).exitCode).toBe(0);
    // Bit rot in the receiver's pool: every pool pack gets a flipped byte (the same inode as the
    // first import's folder links).
    const packs = (await poolPacks(target)).map((name) => name.replace(/\.pack$/, ''));
    expect(packs.length).toBeGreaterThan(0);
    const pooled = (pack: string) => path.join(target, 'pool', pack.slice(0, 2), `${pack}.pack`);
    for (const pack of packs) await flipByte(pooled(pack), 100);
    // The same snapshot again, under another component name: the stream carries every pack.
    const again = await snapshots(target, ['--import', '-', '-C', key.container, '-c', 'copy'], tar);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stderr).toContain(`pack ${packs[0]} was damaged; a good copy of it replaced it in the pool`);
    const copy = new SnapshotStore(target);
    expect((await readAll((await copy.latest({ container: key.container, component: 'copy' }))!, 'dump.sql')).equals(dump)).toBe(true);
    for (const pack of packs) expect(sha256(await readFile(pooled(pack)))).toBe(pack);
    // The first import's folder, which linked the damaged copy, links the good one now.
    const check = await snapshots(target, ['--query-all', '--check']);
    expect(check.exitCode, check.stderr).toBe(0);
    expect(again.stderr).toMatch(/replaced it in the pool and in 1 snapshot folder/);
  });

  it('refuses a stream that leaves out a pack the receiver lacks, and changes nothing', async () => {
    const source = await useTempDir();
    const target = await useTempDir();
    const a = fakeDump(2_000_000, 1);
    const b = Buffer.concat([a, Buffer.from('more\n')]);
    await storeWith(source, a, b);
    const stream = await execa(process.execPath, [path.resolve('dist/bin/dysnomia-snapshots.js'), '--export', `${key.container}/${key.component}/${sha256(b)}`, '--base', `${key.container}/${key.component}/${sha256(a)}`], {
      env: { DYSNOMIA_STATEDIR: source },
      encoding: 'buffer',
    });
    await mkdir(target, { recursive: true });
    const tree = await treeOf(target);
    const result = await snapshots(target, ['--import', '-'], Buffer.from(stream.stdout));
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/the stream leaves out pack [0-9a-f]{64}, which this store does not have/);
    expect(await treeOf(target)).toEqual(tree);
    const garbage = await snapshots(target, ['--import', '-'], 'not a tar stream at all');
    expect(garbage.exitCode).not.toBe(0);
    expect(await treeOf(target)).toEqual(tree);
    // Nothing at all (the sender of `--export | --import -` failed): a failed operation, exit 1.
    const empty = await snapshots(target, ['--import', '-'], '');
    expect(empty.exitCode).toBe(1);
    expect(empty.stderr).toContain('the input is empty: no snapshot stream arrived');
    expect(await treeOf(target)).toEqual(tree);
  });
});

describe('dysnomia-snapshots bad input', () => {
  it('--import of a folder missing a chunk index names the file (exit 1) and imports nothing', async () => {
    const source = await useTempDir();
    const { outcomes } = await storeWith(source, fakeDump(200_000));
    const copy = path.join(await useTempDir(), outcomes[0]!.identity);
    await cp(path.join(source, 'snapshots', key.container, key.component, outcomes[0]!.identity), copy, { recursive: true });
    await rm(path.join(copy, 'stream-0.chunks'));
    const target = await useTempDir();
    const result = await snapshots(target, ['--import', copy, '-C', key.container, '-c', key.component]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`cannot import ${copy}: its file stream-0.chunks is missing, so it is not a complete snapshot folder; nothing was imported`);
    expect(result.stderr).not.toContain('unexpected');
    expect(await readdir(path.join(target, 'generations')).catch(() => [])).toEqual([]);
  });

  it('--check of a state dir that does not exist fails (exit 2), names it, and creates nothing', async () => {
    const parent = await useTempDir();
    const missing = path.join(parent, 'mistyped');
    const result = await snapshots(missing, ['--query-all', '--check']);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`the state dir ${missing} does not exist, so it holds no snapshot to check; is DYSNOMIA_STATEDIR right?`);
    expect(result.stderr).not.toContain('all intact');
    expect(await readdir(parent)).toEqual([]);
  });

  it('rejects --keep -1, an unknown path, a path outside the store, and no operation', async () => {
    const stateDir = await useTempDir();
    await storeWith(stateDir, fakeDump(50_000));
    const tree = await treeOf(stateDir);
    const keep = await snapshots(stateDir, ['--gc', '--keep', '-1']);
    expect(keep.exitCode).toBe(2);
    expect(keep.stderr).toContain('--keep "-1": expected a whole number of generations >= 0');
    const huge = await snapshots(stateDir, ['--gc', '--keep', '99999999999999999999']);
    expect(huge.exitCode).toBe(2);
    expect(huge.stderr).toContain('--keep "99999999999999999999": too large; at most 9007199254740991');
    // The last one would win: every generation gone.
    const twice = await snapshots(stateDir, ['--gc', '--keep', '1', '--keep', '0']);
    expect(twice.exitCode).toBe(2);
    expect(twice.stderr).toContain('--keep is given twice; give it once');
    for (const value of ['0x2', ' 2', '1e3', '2.0']) {
      const loose = await snapshots(stateDir, ['--gc', '--keep', value]);
      expect(loose.exitCode, value).toBe(2);
      expect(loose.stderr).toContain(`--keep ${JSON.stringify(value)}: expected a whole number`);
    }
    const unknown = await snapshots(stateDir, ['--resolve', `${key.container}/${key.component}/nope`]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toMatch(/no such snapshot in .*: mysql-production\/testdb\/nope/);
    const exported = await snapshots(stateDir, ['--export', 'a/b/c']);
    expect(exported.exitCode).toBe(2);
    expect(exported.stderr).toMatch(/there is no snapshot a\/b\/c/);
    for (const outside of ['/etc/passwd', '../../etc/passwd', 'a/../../b']) {
      const result = await snapshots(stateDir, ['--resolve', outside]);
      expect(result.exitCode, outside).toBe(2);
      expect(result.stderr).toContain(JSON.stringify(outside));
    }
    const none = await snapshots(stateDir, []);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).toMatch(/no operation given/);
    const two = await snapshots(stateDir, ['--gc', '--query-all']);
    expect(two.exitCode).toBe(2);
    // A retention policy that keeps nothing at all is only taken when said as --keep 0.
    for (const policy of [['--keep-daily', '0'], ['--keep-weekly', '0', '--keep-monthly', '0']]) {
      const nothing = await snapshots(stateDir, ['--gc', ...policy]);
      expect(nothing.exitCode, policy.join(' ')).toBe(2);
      expect(nothing.stderr).toContain(`${policy.filter((arg) => arg.startsWith('--')).map((arg) => `${arg} 0`).join(' ')} keeps no generation at all`);
      expect(nothing.stderr).toContain('say --keep 0');
    }
    expect(await treeOf(stateDir)).toEqual(tree);
  });

  it('says the state dir is not writable, and changes nothing', async () => {
    const stateDir = await useTempDir();
    const { outcomes } = await storeWith(stateDir, fakeDump(50_000, 1), fakeDump(50_000, 2));
    const copy = await useTempDir();
    await execa('cp', ['-a', outcomes[0]!.path, copy]);
    // Never chmod path.dirname(stateDir): that is /tmp itself, and MariaDB needs it 1777.
    await chmod(stateDir, 0o755);
    const tree = await treeOf(stateDir);
    const asNobody = (args: string[]) =>
      execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), ...args], {
        env: { DYSNOMIA_STATEDIR: stateDir },
        reject: false,
      });
    await chmod(copy, 0o755);
    const gc = await asNobody(['--gc']);
    expect(gc.exitCode).toBe(1);
    expect(gc.stderr).toMatch(/lock.*store\.lock.*check that the state dir exists and is writable/);
    const imported = await asNobody(['--import', '-C', 'x', '-c', 'y', path.join(copy, outcomes[0]!.identity)]);
    expect(imported.exitCode).toBe(1);
    expect(imported.stderr).toMatch(/writable/);
    const underFile = path.join(stateDir, 'checksums', key.container, key.component, outcomes[0]!.identity, 'state');
    const notDir = await runCli('dysnomia-snapshots', ['--import', '-C', 'x', '-c', 'y', path.join(copy, outcomes[0]!.identity)], {
      env: { DYSNOMIA_STATEDIR: underFile },
    });
    expect(notDir.exitCode).toBe(1);
    expect(notDir.stderr).toMatch(/not a directory|ENOTDIR/);
    expect(await treeOf(stateDir)).toEqual(tree);
  });

  it('names the folder that refuses a user who may not read the state dir (made under umask 077), not an unexpected error', async () => {
    const stateDir = await useTempDir();
    await storeWith(stateDir, fakeDump(50_000, 1));
    await chmod(stateDir, 0o700);
    const asNobody = (args: string[]) =>
      execa('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, path.resolve('dist/bin/dysnomia-snapshots.js'), ...args], {
        env: { DYSNOMIA_STATEDIR: stateDir },
        reject: false,
      });
    const tree = await treeOf(stateDir);
    const closed = await asNobody(['--query-all']);
    expect(closed.exitCode).toBe(1);
    expect(closed.stderr).toContain(
      `cannot list the folder ${path.join(stateDir, 'generations')}: permission denied (${stateDir} belongs to uid 0, gid 0, mode 0700), and this runs as uid 65534; run as a user who may, or change the permissions`,
    );
    expect(closed.stderr).not.toMatch(/unexpected error|EACCES/);
    // The state dir itself open, the folder in it closed: that folder is named as the one refusing.
    await chmod(stateDir, 0o711);
    await chmod(path.join(stateDir, 'generations'), 0o700);
    const inner = await asNobody(['--query-all']);
    expect(inner.exitCode).toBe(1);
    expect(inner.stderr).toContain(`cannot list the folder ${path.join(stateDir, 'generations')}: permission denied (it belongs to uid 0, gid 0, mode 0700)`);
    await chmod(stateDir, 0o700);
    expect(await treeOf(stateDir)).toEqual(tree);
  });
});
