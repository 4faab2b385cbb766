/**
 * Names at their longest (200 characters each, as assertSafeName allows): a component's lock
 * joins both into one file name, past what a file system takes (255 bytes), so it gets a shorter
 * name ending in a hash. The other state-dir paths keep each name as its own path segment.
 */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { acquireLock, lockFolder } from '../../src/core/lock.js';
import { componentLockFile } from '../../src/snapshot-store/layout.js';
import { runCli } from '../support/cli.js';
import { lockHolders } from '../support/core.js';
import { gitSetup } from '../support/git-repository.js';
import { useTempDir } from '../support/temp.js';

/** 200 characters, with some that encodeURIComponent writes as three bytes each. */
const LONG_CONTAINER = `${'c'.repeat(90)}+${'d'.repeat(50)}@${'e'.repeat(57)}=`;
const LONG_COMPONENT = `${'k'.repeat(100)} ${'l'.repeat(99)}`;

describe('lockFolder', () => {
  it('keeps a name that fits, and gives an overlong one a name of at most 255 bytes, its start kept, ending in a hash', () => {
    expect(lockFolder('/s/locks/component-git-project.lock')).toBe('/s/locks/component-git-project.lock');
    expect(lockFolder('rel/store.lock')).toBe(path.resolve('rel/store.lock'));
    const fits = `/s/locks/${'x'.repeat(250)}.lock`;
    expect(lockFolder(fits)).toBe(fits);

    const long = lockFolder(`/s/locks/component-${'a'.repeat(200)}-${'b'.repeat(200)}.lock`);
    expect(path.dirname(long)).toBe('/s/locks');
    expect(Buffer.byteLength(path.basename(long))).toBeLessThanOrEqual(255);
    expect(path.basename(long)).toMatch(/^component-a+-[0-9a-f]{64}\.lock$/);
    // Two long names with the same start are two locks; the same name is always the same lock.
    const other = lockFolder(`/s/locks/component-${'a'.repeat(200)}-${'b'.repeat(199)}c.lock`);
    expect(other).not.toBe(long);
    expect(lockFolder(`/s/locks/component-${'a'.repeat(200)}-${'b'.repeat(200)}.lock`)).toBe(long);
    // Multi-byte characters are not cut in half.
    const wide = path.basename(lockFolder(`/s/${'ü'.repeat(200)}.lock`));
    expect(Buffer.byteLength(wide)).toBeLessThanOrEqual(255);
    expect(wide).toMatch(/^ü+-[0-9a-f]{64}\.lock$/);
  });
});

describe('a container and a component with 200-character names', () => {
  it('activate, snapshot and import them; the dispatcher and the import take one lock', async () => {
    const setup = await gitSetup({ name: LONG_COMPONENT });
    const containerFile = path.join(setup.dir, LONG_CONTAINER);
    await writeFile(containerFile, `type=git-repository\ngitBaseDir=${setup.baseDir}\n`);
    const env = { DYSNOMIA_STATEDIR: setup.stateDir };
    const dysnomia = (operation: string, extra: string[] = []) =>
      runCli('dysnomia', ['--operation', operation, '--container', containerFile, '--component', setup.component, ...extra], { env });

    for (const operation of ['activate', 'snapshot']) {
      const result = await dysnomia(operation);
      expect(result.exitCode, `${operation}: ${result.stderr}`).toBe(0);
    }
    expect(await readdir(path.join(setup.stateDir, 'generations', LONG_CONTAINER, LONG_COMPONENT))).toEqual(['1']);
    const locks = await readdir(path.join(setup.stateDir, 'locks'));
    const long = locks.filter((name) => name.startsWith('component-'));
    expect(long).toHaveLength(1);
    expect(Buffer.byteLength(long[0]!)).toBeLessThanOrEqual(255);
    expect(long[0]).toMatch(/^component-c{90}%2Bd+-[0-9a-f]{64}\.lock$/);
    expect(await lockHolders(setup.stateDir)).toEqual([]);

    // The import takes the component lock as the dispatcher does: the same folder.
    const key = { container: LONG_CONTAINER, component: LONG_COMPONENT };
    const held = await acquireLock(componentLockFile(setup.stateDir, key), 'exclusive', { what: 'the test' });
    try {
      const waiting = await dysnomia('snapshot', ['--lock-timeout', '0.3']);
      expect(waiting.exitCode).not.toBe(0);
      expect(waiting.stderr).toContain(`gave up after 0.3 s waiting for component ${LONG_CONTAINER}/${LONG_COMPONENT} (snapshot): another process (the test) holds it`);
      expect(waiting.stderr).toContain(`lock ${path.join(setup.stateDir, 'locks', long[0]!)}`);
    } finally {
      await held.release();
    }

    const latest = await runCli('dysnomia-snapshots', ['--query-latest'], { env });
    expect(latest.exitCode, latest.stderr).toBe(0);
    const snapshot = path.join(setup.stateDir, 'snapshots', latest.stdout.trim());
    const target = await useTempDir('dysnomia-long-');
    const imported = await runCli('dysnomia-snapshots', ['--import', '-C', LONG_CONTAINER, '-c', LONG_COMPONENT, snapshot], {
      env: { DYSNOMIA_STATEDIR: target },
    });
    expect(imported.exitCode, imported.stderr).toBe(0);
    expect(await readdir(path.join(target, 'generations', LONG_CONTAINER, LONG_COMPONENT))).toEqual(['1']);
    expect(await lockHolders(target)).toEqual([]);
  });
});
