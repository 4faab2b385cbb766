/**
 * The test harness itself (test/support): if it is wrong, every other test is wrong with it.
 */
import { access, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { NO_STATE_DIR, runCli } from '../support/cli.js';
import { git, makeBundle, makeWorkRepo, refs } from '../support/git.js';
import { findMysql, findPostgres } from '../support/servers.js';
import { uniqueName, useTempDir } from '../support/temp.js';

describe('servers', () => {
  it('findMysql gives a working server, and a database of our own can be made and dropped', async () => {
    const server = await findMysql();
    expect(server.source).not.toBe('');
    expect(server.properties.type).toBe('mysql-database');
    const name = uniqueName('harness');
    await server.query(`CREATE DATABASE \`${name}\``);
    try {
      await server.queryIn(name, 'CREATE TABLE t (id INT PRIMARY KEY)');
      await server.queryIn(name, 'INSERT INTO t VALUES (?), (?)', [1, 2]);
      expect(await server.queryIn(name, 'SELECT COUNT(*) AS n FROM t')).toEqual([{ n: 2 }]);
    } finally {
      await server.query(`DROP DATABASE \`${name}\``);
    }
    expect(await server.query('SHOW DATABASES LIKE ?', [name])).toEqual([]);
  });

  it('findPostgres gives a working server, and a database of our own can be made and dropped', async () => {
    const server = await findPostgres();
    expect(server.source).not.toBe('');
    expect(server.properties.type).toBe('postgresql-database');
    const name = uniqueName('harness');
    await server.query(`CREATE DATABASE "${name}"`);
    try {
      await server.queryIn(name, 'CREATE TABLE t (id int primary key)');
      await server.queryIn(name, 'INSERT INTO t VALUES ($1), ($2)', [1, 2]);
      expect(await server.queryIn(name, 'SELECT count(*)::int AS n FROM t')).toEqual([{ n: 2 }]);
    } finally {
      await server.query(`DROP DATABASE "${name}"`);
    }
    expect(await server.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).toEqual([]);
  });

  it('is found once per test file', async () => {
    expect(await findMysql()).toBe(await findMysql());
    expect(await findPostgres()).toBe(await findPostgres());
  });
});

describe('uniqueName', () => {
  it('gives distinct, lower-case SQL-identifier-safe names', () => {
    const names = Array.from({ length: 5000 }, () => uniqueName('db'));
    expect(new Set(names).size).toBe(names.length);
    for (const name of names.slice(0, 50)) {
      expect(name).toMatch(/^db_[0-9]+_[0-9]+_[0-9a-f]{10}$/);
      expect(name.length).toBeLessThanOrEqual(63);
    }
    expect(uniqueName('MixedCase').startsWith('mixedcase_')).toBe(true);
  });

  it('refuses a prefix that would make a name PostgreSQL silently truncates', () => {
    expect(() => uniqueName('x'.repeat(50))).toThrow(/longer than 63 characters/);
  });
});

describe('temporary folders', () => {
  let made: string | undefined;

  it('useTempDir makes a folder (removed after the test)', async () => {
    made = await useTempDir();
    await mkdir(path.join(made, 'sub'));
    await access(path.join(made, 'sub'));
  });

  it('... which is gone in the next test', async () => {
    expect(made).toBeDefined();
    await expect(access(made!)).rejects.toThrow();
  });
});

describe('makeWorkRepo', () => {
  it('with commits: 1000 makes 1001 commits on main, with a clean work tree', async () => {
    const dir = await useTempDir();
    const repo = await makeWorkRepo(path.join(dir, 'repo'), { commits: 1000 });
    expect(await git(repo, 'rev-list', '--count', 'main')).toBe('1001');
    expect(await git(repo, 'status', '--porcelain')).toBe('');
    expect(await git(repo, 'show', 'main:counter.txt')).toBe('change 1000');
    expect(await git(repo, 'log', '-1', '--format=%s', 'main~999')).toBe('commit 1');
    expect(await git(repo, 'log', '-1', '--format=%s', 'main~1000')).toBe('initial');
  });

  it('makes the files, branches and tags asked for', async () => {
    const dir = await useTempDir();
    const repo = await makeWorkRepo(path.join(dir, 'repo'), {
      files: { 'a.txt': 'A\n', 'sub/b.txt': 'B\n' },
      branches: ['dev', 'feature'],
      tags: ['v1'],
    });
    expect(await git(repo, 'show', 'main:sub/b.txt')).toBe('B');
    expect(await git(repo, 'rev-parse', '--abbrev-ref', 'HEAD')).toBe('main');
    expect(await git(repo, 'rev-list', '--count', 'dev')).toBe('2');
    const names = (await refs(repo)).split('\n').map((line) => line.split(' ')[1]);
    expect(names.sort()).toEqual(['refs/heads/dev', 'refs/heads/feature', 'refs/heads/main', 'refs/tags/v1']);
    expect(await git(repo, 'rev-parse', 'v1')).toBe(await git(repo, 'rev-parse', 'main'));
  });

  it('ignores the global git configuration (no signing, no hooks from ~/.gitconfig)', async () => {
    const dir = await useTempDir();
    const repo = await makeWorkRepo(path.join(dir, 'repo'));
    expect(await git(repo, 'config', '--show-origin', '--get-all', 'user.name').catch(() => '')).toBe('');
    expect(await git(repo, 'log', '-1', '--format=%an <%ae>')).toBe('Test <test@example.com>');
  });

  it('makeBundle writes a bundle git accepts, holding every ref', async () => {
    const dir = await useTempDir();
    const repo = await makeWorkRepo(path.join(dir, 'repo'), { commits: 3, branches: ['dev'], tags: ['v1'] });
    const bundle = await makeBundle(repo, path.join(dir, 'out', 'repo.bundle'));
    await execa('git', ['bundle', 'verify', '-q', bundle], { cwd: repo });
    const heads = await git(repo, 'bundle', 'list-heads', bundle);
    for (const ref of ['refs/heads/main', 'refs/heads/dev', 'refs/tags/v1']) expect(heads).toContain(ref);
  });
});

describe('runCli', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
    Object.assign(process.env, saved);
  });

  /** Shows the variables the program sees, through `dysnomia --shell --command`. */
  async function seen(env: Record<string, string | undefined>): Promise<string> {
    const dir = await useTempDir();
    await mkdir(path.join(dir, 'comp'));
    const result = await runCli(
      'dysnomia',
      ['--shell', '-q', '-c', path.join(dir, 'comp'), '-E', '-t', 'echo', '--command', 'echo "$DYSNOMIA_STATEDIR|${DYSNOMIA_CONTAINERS_PATH-unset}|${DEBUG-unset}|${NIX_STORE_DIR-unset}"'],
      { env },
    );
    expect(result.exitCode, result.stderr).toBe(0);
    return result.stdout.trim();
  }

  it('gives a program a state dir it cannot write when the test forgot DYSNOMIA_STATEDIR', async () => {
    expect(await seen({})).toBe(`${NO_STATE_DIR}|unset|unset|unset`);
  });

  it("keeps the developer's DYSNOMIA_*, DEBUG and NIX_STORE_DIR out, but passes what the test gives", async () => {
    process.env.DYSNOMIA_STATEDIR = '/var/state/dysnomia';
    process.env.DYSNOMIA_CONTAINERS_PATH = '/leaked';
    process.env.DEBUG = 'dysnomia';
    process.env.NIX_STORE_DIR = '/leaked-store';
    expect(await seen({})).toBe(`${NO_STATE_DIR}|unset|unset|unset`);
    expect(await seen({ DYSNOMIA_STATEDIR: '/given', DYSNOMIA_CONTAINERS_PATH: '/c', DEBUG: 'x', NIX_STORE_DIR: '/s' })).toBe('/given|/c|x|/s');
  });
});
