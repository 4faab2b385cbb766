import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  clearGarbage,
  defaultStateDir,
  isActivated,
  isGarbage,
  markActive,
  markGarbage,
  stateLayout,
} from '../../src/core/state-dir.js';
import { markers, tree } from '../support/core.js';
import { useTempDir } from '../support/temp.js';

const key = { container: 'prod', component: 'testdb' };

describe('defaultStateDir', () => {
  it('is DYSNOMIA_STATEDIR when set, made absolute', () => {
    expect(defaultStateDir({ DYSNOMIA_STATEDIR: '/srv/state' })).toBe('/srv/state');
    expect(defaultStateDir({ DYSNOMIA_STATEDIR: 'rel' })).toBe(path.resolve('rel'));
  });

  it('is /var/state/dysnomia for root and ~/.dysnomia otherwise when unset or empty', () => {
    const expected = process.getuid?.() === 0 ? '/var/state/dysnomia' : path.join(os.homedir(), '.dysnomia');
    expect(defaultStateDir({ HOME: os.homedir() })).toBe(expected);
    expect(defaultStateDir({ HOME: os.homedir(), DYSNOMIA_STATEDIR: '' })).toBe(expected);
  });
});

describe('stateLayout', () => {
  it("keeps Dysnomia's folders", () => {
    expect(stateLayout.activated('/s', key)).toBe('/s/activated/prod/testdb');
    expect(stateLayout.garbage('/s', key)).toBe('/s/garbage/prod/testdb');
    expect(stateLayout.snapshots('/s', key)).toBe('/s/snapshots/prod/testdb');
    expect(stateLayout.generations('/s', key)).toBe('/s/generations/prod/testdb');
    expect(stateLayout.checksums('/s', key)).toBe('/s/checksums/prod/testdb');
  });
});

describe('markers', () => {
  it('activate marks active; deactivate moves the mark to garbage; a second deactivate changes nothing', async () => {
    const state = await useTempDir();
    await markActive(state, key);
    expect(await markers(state)).toEqual(['activated/prod/testdb']);
    expect([await isActivated(state, key), await isGarbage(state, key)]).toEqual([true, false]);

    expect(await markGarbage(state, key)).toBe(true);
    expect(await markers(state)).toEqual(['garbage/prod/testdb']);
    const before = await tree(state);
    expect(await markGarbage(state, key)).toBe(false);
    expect(await tree(state)).toEqual(before);
  });

  it('activate clears a garbage mark', async () => {
    const state = await useTempDir();
    await markActive(state, key);
    await markGarbage(state, key);
    await markActive(state, key);
    expect(await markers(state)).toEqual(['activated/prod/testdb']);
  });

  it('activating twice keeps one mark', async () => {
    const state = await useTempDir();
    await markActive(state, key);
    await markActive(state, key);
    expect(await markers(state)).toEqual(['activated/prod/testdb']);
  });

  it('deactivating a component that was never activated marks nothing', async () => {
    const state = await useTempDir();
    expect(await markGarbage(state, key)).toBe(false);
    expect(await tree(state)).toEqual({});
  });

  it('clearGarbage removes only the garbage mark, and is fine when there is none', async () => {
    const state = await useTempDir();
    await markActive(state, { container: 'prod', component: 'other' });
    await markActive(state, key);
    await markGarbage(state, key);
    await clearGarbage(state, key);
    await clearGarbage(state, key);
    expect(await markers(state)).toEqual(['activated/prod/other']);
  });

  it('keeps containers and components apart', async () => {
    const state = await useTempDir();
    await markActive(state, { container: 'a', component: 'x' });
    await markActive(state, { container: 'b', component: 'x' });
    await markGarbage(state, { container: 'a', component: 'x' });
    expect(await markers(state)).toEqual(['activated/b/x', 'garbage/a/x']);
  });

  it('a state dir that cannot be written is an error, not a silent no-op', async () => {
    const dir = await useTempDir();
    await writeFile(path.join(dir, 'file'), '');
    await expect(markActive(path.join(dir, 'file', 'state'), key)).rejects.toThrow(/ENOTDIR/);
  });
});
