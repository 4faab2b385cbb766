/**
 * Where each plugin says a component's data lives: collect-garbage compares these to refuse
 * removing data that an activated component of another container uses (docs/cli.md).
 */
import { mkdir, symlink } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import git from '../../src/plugins/git/index.js';
import mysql from '../../src/plugins/mysql/index.js';
import postgres from '../../src/plugins/postgres/index.js';
import { useTempDir } from '../support/temp.js';

const component = (name: string) => ({ name, path: `/nix/store/00000000000000000000000000000000-${name}` });

describe('plugin locations', () => {
  it('are equal for two containers that reach the same data, and differ otherwise', () => {
    const my = (properties: Record<string, string>, name = 'shop') => mysql.location!(mysql.parseOptions(properties), component(name));
    expect(my({ mysqlSocket: '/run/mysqld/mysqld.sock', mysqlUsername: 'a' })).toBe(my({ mysqlSocket: '/run/mysqld/mysqld.sock', mysqlUsername: 'b' }));
    expect(my({ mysqlHost: 'db1', mysqlPort: '3306' })).not.toBe(my({ mysqlHost: 'db2', mysqlPort: '3306' }));
    expect(my({ mysqlHost: 'db1' }, 'Shop')).not.toBe(my({ mysqlHost: 'db1' }, 'shop'));

    const pg = (properties: Record<string, string>, name = 'shop') => postgres.location!(postgres.parseOptions(properties), component(name));
    expect(pg({ postgresqlUsername: 'a' })).toBe(pg({ postgresqlUsername: 'b' }));
    expect(pg({ postgresqlPort: '5433' })).not.toBe(pg({}));
    expect(pg({}, 'Shop')).not.toBe(pg({}, 'shop'));

    const repo = (base: string) => git.location!(git.parseOptions({ gitBaseDir: base }), component('site'));
    expect(repo('/srv/git')).toBe(repo('/srv/git/'));
    expect(repo('/srv/git')).not.toBe(repo('/srv/other'));
  });

  it('see through symlinks for git: two gitBaseDirs that reach one folder are one place', async () => {
    const dir = await useTempDir();
    await mkdir(path.join(dir, 'real', 'site'), { recursive: true });
    await symlink(path.join(dir, 'real'), path.join(dir, 'link'));
    const repo = (base: string) => git.location!(git.parseOptions({ gitBaseDir: base }), component('site'));
    expect(repo(path.join(dir, 'link'))).toBe(repo(path.join(dir, 'real')));
    // A repository not made yet: its gitBaseDir is resolved.
    const absent = (base: string) => git.location!(git.parseOptions({ gitBaseDir: base }), component('later'));
    expect(absent(path.join(dir, 'link'))).toBe(absent(path.join(dir, 'real')));
  });
});
