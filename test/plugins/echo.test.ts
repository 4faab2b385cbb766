/**
 * The echo plugin through `dysnomia`: what it prints for every operation, and that it never
 * prints a password-like value and never touches the snapshot store.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONTAINERS_DIR, markers, tree, useStage } from '../support/core.js';

describe('echo', () => {
  it('prints the operation, the component and the container properties, sorted', async () => {
    const stage = await useStage();
    const file = path.join(CONTAINERS_DIR, 'echo-sample');
    const result = await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toBe(
      [
        `echo: activate ${stage.component}`,
        '  component: testcomp',
        `  container: echo-sample (${file})`,
        '  description=a "quoted" value with spaces',
        '  emptyValue=',
        '  mysqlPassword=(hidden)',
        '  mysqlUsername=root',
        '  supportedTypes=(mysql-database postgresql-database git-repository)',
        '  type=echo',
        '',
      ].join('\n'),
    );
  });

  it('hides every password-like value', async () => {
    const stage = await useStage();
    // Values that cannot occur by chance in the output's random temporary paths (which once held "v6").
    const secrets = {
      mysqlPassword: 'SECRET-value-1',
      postgresqlPassword: 'SECRET-value-2',
      PGPASSWORD: 'SECRET-value-3',
      MYSQL_PWD: 'SECRET-value-4',
      apiToken: 'SECRET-value-5',
      clientSecret: 'SECRET-value-6',
      sshKey: 'SECRET-value-7',
      awsCredentials: 'SECRET-value-8',
      passphrase: 'SECRET-value-9',
    };
    const body = Object.entries(secrets)
      .map(([key, value]) => `${key}=${value}`)
      .join('\n');
    const file = await stage.container('prod', `type=echo\n${body}\nplain=shown\n`);
    for (const operation of ['activate', 'snapshot']) {
      const result = await stage.dysnomia(['-o', operation, '-c', stage.component, '-C', file]);
      expect(result.exitCode).toBe(0);
      for (const [key, value] of Object.entries(secrets)) {
        expect(result.stdout).toContain(`  ${key}=(hidden)\n`);
        expect(result.stdout).not.toContain(value);
      }
      expect(result.stdout).toContain('  plain=shown\n');
    }
  });

  it('with --environment lists only the type, not the whole environment', async () => {
    const stage = await useStage();
    const result = await stage.dysnomia(['-o', 'lock', '-c', stage.component, '-E', '-t', 'echo'], {
      env: { SOME_SECRET_ENV: 'do-not-print' },
    });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toBe(`echo: lock ${stage.component}\n  component: testcomp\n  container: echo (from the environment)\n  type=echo\n`);
  });

  it('prints for snapshot and restore too, and stores nothing', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\n');
    for (const operation of ['snapshot', 'restore']) {
      const result = await stage.dysnomia(['-o', operation, '-c', stage.component, '-C', file]);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^echo: ${operation} `));
    }
    expect(await tree(stage.stateDir)).toEqual({});
  });

  it('keeps the markers like any plugin', async () => {
    const stage = await useStage();
    const file = await stage.container('prod', 'type=echo\n');
    await stage.dysnomia(['-o', 'activate', '-c', stage.component, '-C', file]);
    await stage.dysnomia(['-o', 'deactivate', '-c', stage.component, '-C', file]);
    expect(await markers(stage.stateDir)).toEqual(['garbage/prod/testcomp']);
    const collect = await stage.dysnomia(['-o', 'collect-garbage', '-c', stage.component, '-C', file]);
    expect(collect.stdout).toMatch(/^echo: collect-garbage /);
    expect(await markers(stage.stateDir)).toEqual([]);
  });
});
