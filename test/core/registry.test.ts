import { chmod, copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/core/errors.js';
import { isPassThrough } from '../../src/core/plugin.js';
import { builtInTypes, findModule, loadPlugin } from '../../src/core/registry.js';
import { MODULES_DIR } from '../support/core.js';
import { useTempDir } from '../support/temp.js';

async function install(dir: string, fixture: string, as: string, mode = 0o755): Promise<string> {
  await mkdir(dir, { recursive: true });
  const target = path.join(dir, as);
  await copyFile(path.join(MODULES_DIR, fixture), target);
  await chmod(target, mode);
  return target;
}

describe('loadPlugin', () => {
  it('knows the built-in types', async () => {
    expect(builtInTypes).toEqual(expect.arrayContaining(['echo', 'mysql-database', 'postgresql-database', 'git-repository']));
    const echo = await loadPlugin('echo', {});
    expect(echo.type).toBe('echo');
  });

  it('finds an executable named after the type in DYSNOMIA_MODULES_PATH; the first folder wins', async () => {
    const dir = await useTempDir();
    await install(path.join(dir, 'a'), 'not-executable', 'custom', 0o644);
    const second = await install(path.join(dir, 'b'), 'recorder', 'custom');
    await install(path.join(dir, 'c'), 'failing', 'custom');
    const env = { DYSNOMIA_MODULES_PATH: ['a', 'b', 'c'].map((s) => path.join(dir, s)).join(':') };
    expect(await findModule('custom', env)).toBe(second);
    const plugin = await loadPlugin('custom', env);
    expect(isPassThrough(plugin)).toBe(true);
    expect(plugin.type).toBe('custom');
  });

  it('lets a module in DYSNOMIA_MODULES_PATH override a built-in type, as Dysnomia does', async () => {
    const dir = await useTempDir();
    await install(dir, 'recorder', 'echo');
    expect(await findModule('echo', { DYSNOMIA_MODULES_PATH: dir })).toBe(path.join(dir, 'echo'));
    const plugin = await loadPlugin('echo', { DYSNOMIA_MODULES_PATH: dir });
    const ctx = { component: { name: 'c', path: '/c' }, container: { name: 'x' } } as never;
    expect(isPassThrough(plugin) && (await plugin.shell?.(ctx))?.module).toBe(path.join(dir, 'echo'));
  });

  it('takes a type that is a path as the module itself', async () => {
    const dir = await useTempDir();
    const module = await install(dir, 'recorder', 'my-module');
    expect(await findModule(module, {})).toBe(module);
    expect((await loadPlugin(module, {})).type).toBe('my-module');
  });

  it('explains an unknown type, naming the search path', async () => {
    const error = await loadPlugin('no-such-type', { DYSNOMIA_MODULES_PATH: '/x:/y' }, '/etc/c').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      `/etc/c: type: unknown type "no-such-type": not a built-in plugin (${builtInTypes.join(', ')}) and no executable of that name in DYSNOMIA_MODULES_PATH (/x:/y)`,
    );
    await expect(loadPlugin('no-such-type', {})).rejects.toThrow('DYSNOMIA_MODULES_PATH (unset)');
  });

  it('does not take names of Object.prototype for built-in types', async () => {
    for (const type of ['toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      await expect(loadPlugin(type, {}), type).rejects.toThrow(`unknown type "${type}"`);
    }
  });

  it('says when the module file is there but not executable', async () => {
    const dir = await useTempDir();
    const module = await install(dir, 'not-executable', 'lazy', 0o644);
    await expect(loadPlugin('lazy', { DYSNOMIA_MODULES_PATH: dir })).rejects.toThrow(
      `type: module ${module} is not executable; make it executable (chmod +x ${module})`,
    );
    await expect(loadPlugin(module, {})).rejects.toThrow(`module ${module} is not executable`);
  });

  it('says when a module path does not exist', async () => {
    const dir = await useTempDir();
    await expect(loadPlugin(path.join(dir, 'gone'), {})).rejects.toThrow(`module ${path.join(dir, 'gone')} does not exist`);
    await expect(loadPlugin(dir, {})).rejects.toThrow(`module ${dir} is a folder, not an executable`);
  });

  it('does not search DYSNOMIA_MODULES_PATH for names with a slash or empty names', async () => {
    const dir = await useTempDir();
    await install(path.join(dir, 'sub'), 'recorder', 'mod');
    expect(await findModule('sub/mod', { DYSNOMIA_MODULES_PATH: dir })).toBeUndefined();
    expect(await findModule('', { DYSNOMIA_MODULES_PATH: dir })).toBeUndefined();
  });
});
