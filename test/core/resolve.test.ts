import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, UsageError } from '../../src/core/errors.js';
import {
  assertSafeName,
  componentsPath,
  containerFromEnvironment,
  containerFromProperties,
  containersPath,
  findContainerFile,
  isPathArgument,
  loadContainerFile,
  nameFromPath,
  resolveComponent,
} from '../../src/core/resolve.js';
import { resolveContainer, resolveTarget } from '../../src/core/target.js';
import { useTempDir } from '../support/temp.js';

const HASH = '0123456789abcdfghijklmnpqrsvwxyz'; // 32 characters of Nix's base32 alphabet

describe('nameFromPath', () => {
  it('is the basename, trailing slashes ignored', () => {
    expect(nameFromPath('/srv/components/testdb', {})).toBe('testdb');
    expect(nameFromPath('/srv/components/testdb/', {})).toBe('testdb');
    expect(nameFromPath('./testdb', {})).toBe('testdb');
  });

  it('strips the hash of a path in /nix/store', () => {
    expect(nameFromPath(`/nix/store/${HASH}-testdb`, {})).toBe('testdb');
    expect(nameFromPath(`/nix/store/${HASH}-test-db-1.0`, {})).toBe('test-db-1.0');
  });

  it('uses NIX_STORE_DIR as the store, and the default when it is empty', () => {
    expect(nameFromPath(`/tmp/store/${HASH}-testdb`, { NIX_STORE_DIR: '/tmp/store' })).toBe('testdb');
    expect(nameFromPath(`/tmp/store/${HASH}-testdb`, { NIX_STORE_DIR: '/tmp/store/' })).toBe('testdb');
    expect(nameFromPath(`/nix/store/${HASH}-testdb`, { NIX_STORE_DIR: '/tmp/store' })).toBe(`${HASH}-testdb`);
    expect(nameFromPath(`/nix/store/${HASH}-testdb`, { NIX_STORE_DIR: '' })).toBe('testdb');
    expect(nameFromPath(`/srv/${HASH}-testdb`, { NIX_STORE_DIR: '' })).toBe(`${HASH}-testdb`);
  });

  it('keeps names that only look like store paths', () => {
    expect(nameFromPath(`/srv/${HASH}-testdb`, {})).toBe(`${HASH}-testdb`);
    expect(nameFromPath('/nix/store/short-testdb', {})).toBe('short-testdb');
    expect(nameFromPath(`/nix/store/${HASH}-pkg/containers/mysql`, {})).toBe('mysql');
  });
});

describe('search paths', () => {
  it('default to Dysnomia folders when unset or empty', () => {
    expect(containersPath({})).toEqual(['/etc/dysnomia/containers']);
    expect(containersPath({ DYSNOMIA_CONTAINERS_PATH: '' })).toEqual(['/etc/dysnomia/containers']);
    expect(componentsPath({})).toEqual(['/etc/dysnomia/components']);
  });

  it('split on colons and skip empty parts', () => {
    expect(containersPath({ DYSNOMIA_CONTAINERS_PATH: '/a::/b:' })).toEqual(['/a', '/b']);
    expect(componentsPath({ DYSNOMIA_COMPONENTS_PATH: '/c:/d' })).toEqual(['/c', '/d']);
  });

  it('treat /..., ./... and ../... as paths, anything else as a name', () => {
    expect(['/x', './x', '../x'].map(isPathArgument)).toEqual([true, true, true]);
    expect(['x', 'x/y', '.x', '~/x'].map(isPathArgument)).toEqual([false, false, false, false]);
  });
});

describe('assertSafeName', () => {
  it('accepts names usable as one folder name', () => {
    for (const name of ['testdb', 'test-db_1.0', 'a+b@c=d', 'with space']) expect(assertSafeName(name, 'component')).toBe(name);
  });

  it('rejects names that would escape or break the state dir, naming where they came from', () => {
    for (const name of ['', '.', '..', 'a/b', ' lead', 'semi;colon', 'x'.repeat(201), 'new\nline']) {
      expect(() => assertSafeName(name, 'component', '/src/x')).toThrow(ConfigError);
    }
    expect(() => assertSafeName('..', 'container', '/etc/x/..')).toThrow(
      /^"\.\." \(from \/etc\/x\/\.\.\) is not a usable container name/,
    );
  });
});

describe('findContainerFile and loadContainerFile', () => {
  it('uses a path as given (absolute or relative to the working folder)', async () => {
    expect(await findContainerFile('/nowhere/mysql', {})).toBe('/nowhere/mysql');
    expect(await findContainerFile('./mysql', {})).toBe(path.resolve('mysql'));
  });

  it('searches a name in DYSNOMIA_CONTAINERS_PATH; the first folder holding it wins', async () => {
    const dir = await useTempDir();
    for (const sub of ['one', 'two', 'three']) await mkdir(path.join(dir, sub));
    await writeFile(path.join(dir, 'two', 'db'), 'type=echo\n');
    await writeFile(path.join(dir, 'three', 'db'), 'type=echo\n');
    await mkdir(path.join(dir, 'one', 'db')); // a folder of that name is not a container file
    const env = { DYSNOMIA_CONTAINERS_PATH: ['one', 'two', 'three'].map((s) => path.join(dir, s)).join(':') };
    expect(await findContainerFile('db', env)).toBe(path.join(dir, 'two', 'db'));
  });

  it('names the searched folders when a name is not found', async () => {
    await expect(findContainerFile('nope', {})).rejects.toThrow(
      'no container file named "nope" in DYSNOMIA_CONTAINERS_PATH (/etc/dysnomia/containers)',
    );
  });

  it('takes the type from the file, --type only when the file has none', async () => {
    const dir = await useTempDir();
    await writeFile(path.join(dir, 'typed'), 'type=echo\n');
    await writeFile(path.join(dir, 'untyped'), 'a=1\n');
    expect((await loadContainerFile(path.join(dir, 'typed'), {}, 'other')).type).toBe('echo');
    const untyped = await loadContainerFile(path.join(dir, 'untyped'), {}, 'other');
    expect(untyped).toMatchObject({ type: 'other', name: 'untyped', fromEnvironment: false, properties: { a: '1', type: 'other' } });
    await expect(loadContainerFile(path.join(dir, 'untyped'), {})).rejects.toThrow(
      `${path.join(dir, 'untyped')}: type: no type given`,
    );
  });

  it('names the container after the file, with a Nix store hash stripped', async () => {
    const store = await useTempDir();
    const file = path.join(store, `${HASH}-mysql-production`);
    await writeFile(file, 'type=echo\n');
    expect((await loadContainerFile(file, { NIX_STORE_DIR: store })).name).toBe('mysql-production');
    expect((await loadContainerFile(file, {})).name).toBe(`${HASH}-mysql-production`);
  });
});

describe('containers from the environment or from properties', () => {
  it('--environment: the properties are the environment, the name is the type', () => {
    const container = containerFromEnvironment('mysql-database', undefined, { mysqlUsername: 'root', PATH: '/bin' });
    expect(container).toEqual({
      name: 'mysql-database',
      type: 'mysql-database',
      properties: { mysqlUsername: 'root', PATH: '/bin', type: 'mysql-database' },
      fromEnvironment: true,
    });
  });

  it('--environment with --container: the name comes from the argument', () => {
    expect(containerFromEnvironment('echo', `/nix/store/${HASH}-prod`, {}).name).toBe('prod');
  });

  it('--environment without --type is a usage error', () => {
    expect(() => containerFromEnvironment(undefined, undefined, {})).toThrow(UsageError);
    expect(() => containerFromEnvironment('', undefined, {})).toThrow('--environment needs --type TYPE');
  });

  it('properties from a library caller need a type', () => {
    expect(containerFromProperties({ type: 'echo', a: '1' })).toMatchObject({ name: 'echo', type: 'echo' });
    expect(containerFromProperties({ type: 'echo' }, 'prod').name).toBe('prod');
    expect(() => containerFromProperties({ a: '1' })).toThrow('type: no type given in the container properties');
  });
});

describe('resolveComponent', () => {
  it('takes a path, which must exist', async () => {
    const dir = await useTempDir();
    await mkdir(path.join(dir, 'testdb'));
    expect(await resolveComponent(path.join(dir, 'testdb'), 'c', {})).toEqual({
      name: 'testdb',
      path: path.join(dir, 'testdb'),
    });
    await expect(resolveComponent(path.join(dir, 'missing'), 'c', {})).rejects.toThrow(
      `component path does not exist: ${path.join(dir, 'missing')}`,
    );
  });

  it('searches a name as <dir>/<container>/<name>; the first folder holding it wins', async () => {
    const dir = await useTempDir();
    await mkdir(path.join(dir, 'b', 'prod', 'testdb'), { recursive: true });
    await mkdir(path.join(dir, 'c', 'prod', 'testdb'), { recursive: true });
    await mkdir(path.join(dir, 'a', 'other', 'testdb'), { recursive: true });
    const env = { DYSNOMIA_COMPONENTS_PATH: ['a', 'b', 'c'].map((s) => path.join(dir, s)).join(':') };
    expect((await resolveComponent('testdb', 'prod', env)).path).toBe(path.join(dir, 'b', 'prod', 'testdb'));
    await expect(resolveComponent('testdb', 'nowhere', env)).rejects.toThrow(
      `no component named "testdb" for container "nowhere" in DYSNOMIA_COMPONENTS_PATH (${path.join(dir, 'a', 'nowhere')}:`,
    );
    await expect(resolveComponent('testdb', 'prod', {})).rejects.toThrow('(/etc/dysnomia/components/prod)');
  });

  it('follows symlinks like readlink -f, so a link into the store names the store path', async () => {
    const store = await useTempDir();
    const real = path.join(store, `${HASH}-testdb`);
    await mkdir(real);
    const link = path.join(store, 'profile-link');
    await symlink(real, link);
    expect(await resolveComponent(link, 'c', { NIX_STORE_DIR: store })).toEqual({ name: 'testdb', path: real });
  });

  it('rejects an empty argument', async () => {
    await expect(resolveComponent('', 'c', {})).rejects.toThrow(UsageError);
  });
});

describe('resolveTarget', () => {
  it('needs a component and a container', async () => {
    await expect(resolveTarget({ container: '/x', env: {} })).rejects.toThrow('no component given');
    await expect(resolveContainer({ env: {} })).rejects.toThrow('no container given');
  });

  it('resolves both, the component searched under the container name', async () => {
    const dir = await useTempDir();
    await mkdir(path.join(dir, 'components', 'prod', 'testdb'), { recursive: true });
    await mkdir(path.join(dir, 'containers'));
    await writeFile(path.join(dir, 'containers', 'prod'), 'type=echo\n');
    const target = await resolveTarget({
      container: 'prod',
      component: 'testdb',
      env: {
        DYSNOMIA_CONTAINERS_PATH: path.join(dir, 'containers'),
        DYSNOMIA_COMPONENTS_PATH: path.join(dir, 'components'),
      },
    });
    expect(target.container.name).toBe('prod');
    expect(target.component).toEqual({ name: 'testdb', path: path.join(dir, 'components', 'prod', 'testdb') });
  });
});
