/**
 * Where each plugin says a component's data lives: collect-garbage compares these to refuse
 * removing data that an activated component of another container uses (docs/cli.md).
 */
import { describe, expect, it } from 'vitest';
import git from '../../src/plugins/git/index.js';
import mysql from '../../src/plugins/mysql/index.js';
import postgres from '../../src/plugins/postgres/index.js';

const component = (name: string) => ({ name, path: `/nix/store/00000000000000000000000000000000-${name}` });

describe('plugin locations', () => {
  it('are equal for two containers that reach the same data, and differ otherwise', () => {
    const my = (properties: Record<string, string>, name = 'shop') => mysql.location!(mysql.parseOptions(properties), component(name));
    expect(my({ mysqlSocket: '/run/mysqld/mysqld.sock', mysqlUsername: 'a' })).toBe(my({ mysqlSocket: '/run/mysqld/mysqld.sock', mysqlUsername: 'b' }));
    expect(my({ mysqlHost: 'db1', mysqlPort: '3306' })).not.toBe(my({ mysqlHost: 'db2', mysqlPort: '3306' }));
    // A server with lower_case_table_names folds names: taken as the same, to be safe.
    expect(my({ mysqlHost: 'db1' }, 'Shop')).toBe(my({ mysqlHost: 'db1' }, 'shop'));

    const pg = (properties: Record<string, string>, name = 'shop') => postgres.location!(postgres.parseOptions(properties), component(name));
    expect(pg({ postgresqlUsername: 'a' })).toBe(pg({ postgresqlUsername: 'b' }));
    expect(pg({ postgresqlPort: '5433' })).not.toBe(pg({}));
    expect(pg({}, 'Shop')).not.toBe(pg({}, 'shop'));

    const repo = (base: string) => git.location!(git.parseOptions({ gitBaseDir: base }), component('site'));
    expect(repo('/srv/git')).toBe(repo('/srv/git/'));
    expect(repo('/srv/git')).not.toBe(repo('/srv/other'));
  });
});
