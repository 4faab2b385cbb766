/**
 * migrate() with real git repositories between two containers and two state dirs on this
 * machine: by the library call, through a real `sh -c` transport running the built programs, and
 * by a plain shell pipeline of the CLIs. A target that refuses the import leaves the source
 * activated and unchanged, and the error names the target.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { acquireLock } from '../../src/core/lock.js';
import * as dysnomia from '../../src/index.js';
import { componentLockFile, storeLockFile } from '../../src/snapshot-store/layout.js';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { programWords } from '../support/migrate.js';
import { useTempDir } from '../support/temp.js';
import { flipByte, recordingLogger } from '../store/helpers.js';

async function twoSides() {
  const dir = await useTempDir('dysnomia-migrate-');
  const work = await makeWorkRepo(path.join(dir, 'work'), { commits: 20, branches: ['dev'], tags: ['v1'] });
  const component = path.join(dir, 'components', 'project');
  await makeBundle(work, path.join(component, 'git-repositories', 'initial.bundle'));
  const a = { container: { properties: { type: 'git-repository', gitBaseDir: path.join(dir, 'a-repos') }, name: 'git-a' }, stateDir: path.join(dir, 'a-state') };
  const b = { container: { properties: { type: 'git-repository', gitBaseDir: path.join(dir, 'b-repos') }, name: 'git-b' }, stateDir: path.join(dir, 'b-state') };
  await dysnomia.activate({ ...a, component });
  const aRepo = path.join(dir, 'a-repos', 'project');
  const bRepo = path.join(dir, 'b-repos', 'project');
  /** Pushes a new commit with `content` to the source's live repository. */
  const change = async (content: string) => {
    await writeFile(path.join(work, 'change.txt'), content);
    await git(work, 'add', '-A');
    await git(work, 'commit', '-q', '-m', `change ${content.length}`);
    await git(work, 'push', '-q', aRepo, 'main');
  };
  return { dir, work, component, a, b, aRepo, bRepo, change };
}

/** Resolves once `condition` holds (checked every 20 ms, for at most 20 s). */
async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > 20_000) throw new Error('the awaited condition never held');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const activated = (stateDir: string, container: string) => existsSync(path.join(stateDir, 'activated', container, 'project'));

describe('migrate (git-repository)', () => {
  it('refuses a target container whose gitBaseDir holds the source repository itself (another path to it too), and changes nothing', async () => {
    const s = await twoSides();
    await s.change('pushed after the last snapshot\n');
    const before = await refs(s.aRepo);
    await symlink(path.join(s.dir, 'a-repos'), path.join(s.dir, 'a-alias'));
    for (const gitBaseDir of [path.join(s.dir, 'a-repos'), path.join(s.dir, 'a-alias')]) {
      const to = { container: { properties: { type: 'git-repository', gitBaseDir }, name: 'git-c' }, stateDir: path.join(s.dir, 'c-state') };
      const error = await dysnomia.migrate({ component: s.component, from: s.a, to }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(dysnomia.MigrationError);
      expect((error as dysnomia.MigrationError).step).toBe('prepare');
      expect((error as dysnomia.MigrationError).exitCode).toBe(2);
      expect((error as Error).message).toContain("reaches the source's own data");
      expect(existsSync(to.stateDir)).toBe(false);
    }
    expect(await refs(s.aRepo)).toBe(before);
    expect(existsSync(path.join(s.a.stateDir, 'generations'))).toBe(false);
  });

  it('moves the state by the library call; a second migration sends only the new packs', async () => {
    const s = await twoSides();
    await s.change('first change\n'.repeat(1000));
    const events: dysnomia.ProgressEvent[] = [];
    const first = await dysnomia.migrate({ component: s.component, from: s.a, to: s.b, onProgress: (e) => events.push(e) });
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
    expect(first.identity).toMatch(/^[0-9a-f]{40,64}$/);
    expect(first.snapshot.snapshot?.generation).toBe(1);
    expect(first.activated?.operation).toBe('activate');
    expect(first.restore).toMatchObject({ operation: 'restore', status: 'done', container: 'git-b', snapshot: { identity: first.identity } });
    expect(first.import).toMatchObject({ container: 'git-b', component: 'project', identity: first.identity, newSnapshot: true, generation: 1 });
    expect(first.transfer.packsSent).toBeGreaterThan(0);
    expect(first.transfer.packsOmitted).toBe(0);
    expect(events.some((e) => e.operation === 'migrate' && e.stage === 'transfer' && e.bytes > 0)).toBe(true);
    expect(events.some((e) => e.operation === 'snapshot')).toBe(true);
    expect(activated(s.a.stateDir, 'git-a')).toBe(true);
    expect(activated(s.b.stateDir, 'git-b')).toBe(true);

    await s.change('second change\n');
    const second = await dysnomia.migrate({ component: s.component, from: s.a, to: s.b });
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
    expect(second.identity).not.toBe(first.identity);
    expect(second.activated).toBeUndefined();
    expect(second.transfer.packsOmitted).toBeGreaterThan(0);
    expect(second.transfer.bytesSent).toBeLessThan(first.transfer.bytesSent);
    expect(await readdir(path.join(s.b.stateDir, 'generations', 'git-b', 'project'))).toEqual(['1', '2']);
  });

  it('sends every pack again when the target\'s copy of one it has is damaged, and the target restores', async () => {
    const s = await twoSides();
    await s.change('first change\n'.repeat(1000));
    await dysnomia.migrate({ component: s.component, from: s.a, to: s.b });
    // Damage every pack in the target's pool: each is one the next transfer would leave out.
    const pool = path.join(s.b.stateDir, 'pool');
    const packs: string[] = [];
    for (const dir of await readdir(pool)) {
      for (const name of await readdir(path.join(pool, dir)).catch(() => [] as string[])) {
        if (name.endsWith('.pack')) packs.push(path.join(pool, dir, name));
      }
    }
    expect(packs.length).toBeGreaterThan(0);
    for (const pack of packs) await flipByte(pack, 0);
    await s.change('second change\n');
    const log = recordingLogger();
    const second = await dysnomia.migrate({ component: s.component, from: s.a, to: s.b, log });
    expect(log.lines.some((line) => line.includes('has a damaged copy of a pack the transfer left out; sending git-a/project again with every pack'))).toBe(true);
    expect(second.transfer.packsOmitted).toBe(0);
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
  });

  it('moves the state through a real sh -c transport running the built programs', async () => {
    const s = await twoSides();
    const transport = () =>
      dysnomia.commandTransport(
        dysnomia.dysnomiaCommands({
          container: path.join(s.dir, 'git-b'),
          component: s.component,
          env: { DYSNOMIA_STATEDIR: s.b.stateDir },
          programs: { dysnomia: programWords('dysnomia'), dysnomiaSnapshots: programWords('dysnomia-snapshots') },
        }),
      );
    await writeFile(path.join(s.dir, 'git-b'), `type=git-repository\ngitBaseDir=${path.join(s.dir, 'b-repos')}\n`);
    const first = await dysnomia.migrate({ component: s.component, from: s.a, to: transport() });
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
    expect(first.transfer.packsOmitted).toBe(0);
    // The target's `restore --json` says which snapshot it restored: the migrated one.
    expect(first.restore?.snapshot?.identity).toBe(first.identity);
    expect(activated(s.b.stateDir, 'git-b')).toBe(true);

    await s.change('over the pipe\n');
    const second = await dysnomia.migrate({ component: s.component, from: s.a, to: transport() });
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
    expect(second.transfer.packsOmitted).toBeGreaterThan(0);
    expect(second.transfer.bytesSent).toBeLessThan(first.transfer.bytesSent);
  });

  it('over a via that hands the words to a remote shell (as ssh does), a container path with a space arrives whole', async () => {
    const s = await twoSides();
    // Like ssh: drops the host, joins the words with spaces, and a shell splits them again.
    const fakeSsh = path.join(s.dir, 'fake-ssh');
    await writeFile(fakeSsh, '#!/bin/sh\nshift\nexec sh -c "$*"\n', { mode: 0o755 });
    const spaced = path.join(s.dir, 'git b');
    await writeFile(spaced, `type=git-repository\ngitBaseDir=${path.join(s.dir, 'b-repos')}\n`);
    const commands = dysnomia.dysnomiaCommands({
      via: `${fakeSsh} db2`,
      container: spaced,
      component: s.component,
      env: { DYSNOMIA_STATEDIR: s.b.stateDir },
      programs: { dysnomia: programWords('dysnomia'), dysnomiaSnapshots: programWords('dysnomia-snapshots') },
    });
    const result = await dysnomia.migrate({ component: s.component, from: s.a, to: dysnomia.commandTransport(commands) });
    expect(result.restore?.snapshot?.identity).toBe(result.identity);
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
    expect(activated(s.b.stateDir, 'git b')).toBe(true);
  });

  it('moves the state by a shell pipeline of the CLIs (Disnix style)', async () => {
    const s = await twoSides();
    const containerA = path.join(s.dir, 'git-a');
    const containerB = path.join(s.dir, 'git-b');
    await writeFile(containerA, `type=git-repository\ngitBaseDir=${path.join(s.dir, 'a-repos')}\n`);
    await writeFile(containerB, `type=git-repository\ngitBaseDir=${path.join(s.dir, 'b-repos')}\n`);
    const q = (words: string[]) => words.map(dysnomia.shellQuote).join(' ');
    const dys = q(programWords('dysnomia'));
    const snaps = q(programWords('dysnomia-snapshots'));
    const script = [
      'set -e',
      `export DYSNOMIA_STATEDIR=${dysnomia.shellQuote(s.a.stateDir)}`,
      `${dys} --operation snapshot --container ${q([containerA])} --component ${q([s.component])}`,
      `rel=$(${snaps} --query-latest -C git-a -c project)`,
      `DYSNOMIA_STATEDIR=${q([s.b.stateDir])} ${snaps} --list-packs > have`,
      `${snaps} --export "$rel" --have have | DYSNOMIA_STATEDIR=${q([s.b.stateDir])} ${snaps} --import -C git-b -c project -`,
      `DYSNOMIA_STATEDIR=${q([s.b.stateDir])} ${dys} --operation activate --container ${q([containerB])} --component ${q([s.component])}`,
      `DYSNOMIA_STATEDIR=${q([s.b.stateDir])} ${dys} --operation restore --container ${q([containerB])} --component ${q([s.component])}`,
    ].join('\n');
    await s.change('piped by hand\n');
    const result = await execa('sh', ['-c', script], { cwd: s.dir, reject: false });
    expect(result.exitCode, result.stderr).toBe(0);
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
  });

  it('a target that refuses the import leaves the source activated and unchanged; the error names the target', async () => {
    const s = await twoSides();
    await s.change('kept on the source\n');
    const before = await refs(s.aRepo);
    const generationsBefore = await readdir(path.join(s.a.stateDir, 'activated', 'git-a'));

    const refusing = dysnomia.commandTransport({
      description: 'db2 over ssh',
      receive: 'cat > /dev/null; echo "no space left on device" >&2; exit 1',
      restore: 'echo restore must not run >&2; exit 1',
    });
    const error = await dysnomia.migrate({ component: s.component, from: s.a, to: refusing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.MigrationError);
    const migration = error as dysnomia.MigrationError;
    expect(migration.side).toBe('target');
    expect(migration.step).toBe('import');
    expect(migration.exitCode).toBe(1);
    expect(migration.message).toContain('the import of git-a/project on db2 over ssh (the target refused it) failed');
    expect(migration.message).toContain('no space left on device');
    expect(migration.message).toContain('the source is unchanged and still activated');
    expect(await refs(s.aRepo)).toBe(before);
    expect(await readdir(path.join(s.a.stateDir, 'activated', 'git-a'))).toEqual(generationsBefore);

    // A local target whose state dir cannot be written (under a regular file): refused the same way.
    const blocker = path.join(s.dir, 'blocker');
    await writeFile(blocker, 'a file, not a folder\n');
    const local = await dysnomia
      .migrate({ component: s.component, from: s.a, to: { ...s.b, stateDir: path.join(blocker, 'state') } })
      .catch((e: unknown) => e);
    expect(local).toBeInstanceOf(dysnomia.MigrationError);
    expect((local as dysnomia.MigrationError).side).toBe('target');
    expect((local as Error).message).toMatch(/on the target|the target refused it/);
    expect(await refs(s.aRepo)).toBe(before);
    expect(activated(s.a.stateDir, 'git-a')).toBe(true);
    expect(existsSync(s.bRepo)).toBe(false);

    // The source was unlocked: its component can be snapshotted right away.
    const after = await dysnomia.snapshot({ ...s.a, component: s.component, lockTimeoutMs: 2000 });
    expect(after.snapshot?.identity).toBeDefined();
  });

  it('names a command transport without a description as the receiving command, not as if the command were the target', async () => {
    const s = await twoSides();
    const listing = dysnomia.commandTransport({
      listPacks: 'echo the list is gone >&2; exit 3',
      receive: 'cat >/dev/null',
      restore: 'echo restore must not run >&2; exit 1',
    });
    const error = await dysnomia.migrate({ component: s.component, from: s.a, to: listing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.MigrationError);
    expect((error as dysnomia.MigrationError).step).toBe('list-packs');
    expect((error as Error).message).toContain('asking the target of the receiving command `cat >/dev/null` which packs it has failed');
    expect((error as Error).message).not.toContain('asking `cat >/dev/null`');

    const refusing = dysnomia.commandTransport({ receive: 'cat >/dev/null; exit 1', restore: 'echo restore must not run >&2; exit 1' });
    const refused = await dysnomia.migrate({ component: s.component, from: s.a, to: refusing }).catch((e: unknown) => e);
    expect((refused as dysnomia.MigrationError).step).toBe('import');
    expect((refused as Error).message).toContain('the import of git-a/project on the target of the receiving command `cat >/dev/null; exit 1` (the target refused it)');
  });

  it('fails, instead of hanging, when the receiving command exits 0 without reading the whole snapshot', async () => {
    const s = await twoSides();
    // Large enough that the export cannot fit in the pipe's buffer.
    await s.change(randomBytes(2 * 1024 * 1024).toString('base64'));
    for (const receive of ['true', 'head -c 100 > /dev/null']) {
      const error = await dysnomia
        .migrate({ component: s.component, from: s.a, to: dysnomia.commandTransport({ description: 'a broken receiver', receive, restore: 'echo restore must not run >&2; exit 1' }) })
        .catch((e: unknown) => e);
      expect(error, receive).toBeInstanceOf(dysnomia.MigrationError);
      expect((error as dysnomia.MigrationError).side).toBe('target');
      expect((error as Error).message).toContain('the import of git-a/project on a broken receiver failed: it stopped reading the snapshot before the end');
      expect((error as Error).message).not.toContain('restore must not run');
    }
    // The source store's lock was released: a gc gets it at once.
    const gc = await dysnomia.collectSnapshotGarbage({ stateDir: s.a.stateDir, lockTimeoutMs: 2000 });
    expect(gc).toBeDefined();
  });

  it('fails when the target restores nothing (the snapshot filed under another name than it restores from)', async () => {
    const s = await twoSides();
    await writeFile(path.join(s.dir, 'git-b'), `type=git-repository\ngitBaseDir=${path.join(s.dir, 'b-repos')}\n`);
    const other = path.join(s.dir, 'components', 'other');
    await makeBundle(s.work, path.join(other, 'git-repositories', 'initial.bundle'));
    const commands = (component: string) =>
      dysnomia.dysnomiaCommands({
        container: path.join(s.dir, 'git-b'),
        component,
        env: { DYSNOMIA_STATEDIR: s.b.stateDir },
        programs: { dysnomia: programWords('dysnomia'), dysnomiaSnapshots: programWords('dysnomia-snapshots') },
      });
    // The import files it as `project`, the restore reads `other` (as a symlinked component path
    // on the target can make happen): before, migrate reported success.
    const mismatched = dysnomia.commandTransport({ ...commands(s.component), restore: commands(other).restore });
    const error = await dysnomia.migrate({ component: s.component, from: s.a, to: mismatched }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.MigrationError);
    expect((error as dysnomia.MigrationError).step).toBe('restore');
    expect((error as Error).message).toContain('restored nothing (no snapshot of git-b/other');
  });

  it('a restore that fails on the target says the target holds the snapshot, and a second run finishes it', async () => {
    const s = await twoSides();
    await writeFile(path.join(s.dir, 'git-b'), `type=git-repository\ngitBaseDir=${path.join(s.dir, 'b-repos')}\n`);
    const commands = dysnomia.dysnomiaCommands({
      container: path.join(s.dir, 'git-b'),
      component: s.component,
      env: { DYSNOMIA_STATEDIR: s.b.stateDir },
      programs: { dysnomia: programWords('dysnomia'), dysnomiaSnapshots: programWords('dysnomia-snapshots') },
    });
    const failing = dysnomia.commandTransport({ ...commands, restore: 'echo the target is busy >&2; exit 1' });
    const error = await dysnomia.migrate({ component: s.component, from: s.a, to: failing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(dysnomia.MigrationError);
    expect((error as dysnomia.MigrationError).step).toBe('restore');
    expect((error as Error).message).toContain('the target holds the imported snapshot (its latest generation)');
    expect((error as Error).message).toContain('run the migration again to finish it');
    const again = await dysnomia.migrate({ component: s.component, from: s.a, to: dysnomia.commandTransport(commands) });
    expect(again.transfer.packsSent).toBe(0);
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
  });

  it('unlocks the source when the migration is cancelled', async () => {
    const s = await twoSides();
    const warnings: string[] = [];
    const log = { info: () => {}, debug: () => {}, warn: (message: string) => warnings.push(message), child: () => log };
    const controller = new AbortController();
    const error = await dysnomia
      .migrate({
        component: s.component,
        from: s.a,
        to: s.b,
        signal: controller.signal,
        log,
        onProgress: (event) => {
          if (event.operation === 'migrate') controller.abort();
        },
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(controller.signal.aborted).toBe(true);
    expect(warnings.filter((w) => w.includes('unlocking'))).toEqual([]);
    expect(activated(s.a.stateDir, 'git-a')).toBe(true);
  });

  it('refuses a target that is the source, and a target container that does not load, naming the side', async () => {
    const s = await twoSides();
    const same = await dysnomia.migrate({ component: s.component, from: s.a, to: s.a }).catch((e: unknown) => e);
    expect(same).toBeInstanceOf(dysnomia.MigrationError);
    expect((same as dysnomia.MigrationError).side).toBe('target');
    expect((same as dysnomia.MigrationError).exitCode).toBe(2);
    expect((same as Error).message).toContain('the source and the target are the same');

    const bad = await dysnomia
      .migrate({ component: s.component, from: s.a, to: { container: path.join(s.dir, 'missing-container'), stateDir: s.b.stateDir } })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(dysnomia.MigrationError);
    expect((bad as dysnomia.MigrationError).side).toBe('target');
    expect((bad as dysnomia.MigrationError).cause).toBeInstanceOf(dysnomia.ConfigError);
    expect((bad as Error).message).toContain('container file does not exist');
    // Nothing was snapshotted on the source.
    expect(existsSync(path.join(s.a.stateDir, 'generations'))).toBe(false);
  });

  it('within one state dir, the export starts only once the import holds the target\'s component lock', { timeout: 60_000 }, async () => {
    // Otherwise the export holds the store's lock while the import waits for the component lock
    // of a run (a cron) that waits for the store's lock behind a queued gc: all three for good.
    const s = await twoSides();
    await writeFile(path.join(s.work, 'blob.bin'), randomBytes(4 * 1024 * 1024));
    await s.change('with a blob larger than any pipe buffer\n');
    const stateDir = s.a.stateDir;
    const target = { ...s.b, stateDir };
    const cron = await acquireLock(componentLockFile(stateDir, { container: 'git-b', component: 'project' }), 'exclusive', { what: 'a cron run of the test' });
    const log = recordingLogger();
    const migrating = dysnomia.migrate({ component: s.component, from: s.a, to: target, log });
    migrating.catch(() => {});
    try {
      await until(() => log.lines.some((line) => line.includes('waiting for component git-b/project (import)')));
      const gc = acquireLock(storeLockFile(stateDir), 'exclusive', { what: 'a gc of the test', timeoutMs: 20_000 }).then((lock) => lock.release());
      // The gc has the store, or waits for it (then new shared takers queue behind it).
      const lockDir = storeLockFile(stateDir);
      let gcDone = false;
      void gc.then(() => (gcDone = true), () => (gcDone = true));
      await until(async () => gcDone || (await readdir(lockDir)).some((name) => name.startsWith('wait-')));
      // The cron run now needs the store: it gets it once the gc is through, as nobody else holds it.
      const store = await acquireLock(lockDir, 'shared', { what: 'the cron run of the test', timeoutMs: 10_000 });
      await store.release();
      await gc;
    } finally {
      await cron.release();
    }
    const report = await migrating;
    expect(report.import).toMatchObject({ container: 'git-b', component: 'project', newSnapshot: true });
    expect(await refs(s.bRepo)).toBe(await refs(s.aRepo));
  });
});
