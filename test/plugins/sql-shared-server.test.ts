/**
 * collect-garbage of a SQL component whose database an activated component of another container
 * uses, when that container reaches the same server another way (its socket and TCP): the two
 * locations differ as text, so the servers are asked who they are (real MariaDB and PostgreSQL).
 */
import { lookup } from 'node:dns/promises';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { mysqlSetup, postgresSetup, type SqlSetup, writeContainer } from '../support/sql-setup.js';

/** The TCP address of a host other than its own name (127.0.0.1 for localhost, and back). */
async function otherName(host: string): Promise<string> {
  if (host === '127.0.0.1') return 'localhost';
  const { address } = await lookup(host, { family: 4 });
  return address === host ? 'localhost' : address;
}

const engines = [
  {
    name: 'mysql-database',
    setup: () => mysqlSetup(),
    /** The same server, reached the other way: TCP instead of the socket, or another host name. */
    otherWay: async ({ mysqlSocket, ...rest }: Record<string, string>) =>
      mysqlSocket !== undefined
        ? { ...rest, mysqlHost: '127.0.0.1', mysqlPort: rest.mysqlPort ?? '3306' }
        : { ...rest, mysqlHost: await otherName(rest.mysqlHost!) },
    unreachable: ({ mysqlSocket: _socket, ...rest }: Record<string, string>) => ({ ...rest, mysqlHost: '127.0.0.1', mysqlPort: '1', timeout: '1' }),
  },
  {
    name: 'postgresql-database',
    setup: () => postgresSetup(),
    otherWay: async ({ postgresqlRuntimeDir, ...rest }: Record<string, string>) =>
      postgresqlRuntimeDir !== undefined ? { ...rest, postgresqlHost: '127.0.0.1' } : { ...rest, postgresqlHost: await otherName(rest.postgresqlHost!) },
    unreachable: ({ postgresqlRuntimeDir: _dir, ...rest }: Record<string, string>) => ({ ...rest, postgresqlHost: '127.0.0.1', postgresqlPort: '1', timeout: '1' }),
  },
];

/** Runs an operation on the setup's component through another container file. */
function inContainer(setup: SqlSetup, file: string, operation: string) {
  return runCli('dysnomia', ['--operation', operation, '--component', setup.component, '--container', file], {
    env: { DYSNOMIA_STATEDIR: setup.stateDir },
  });
}

describe.each(engines)('$name: collect-garbage with one server reached two ways', (engine) => {
  it('refuses to drop a database that a container reaching the same server another way still uses', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    await setup.ok('activate');
    // The component moves to another container of the same server, reached the other way.
    const moved = path.join(setup.dir, 'moved');
    await writeContainer(moved, await engine.otherWay(setup.properties));
    await setup.ok('deactivate');
    const activated = await inContainer(setup, moved, 'activate');
    expect(activated.exitCode, activated.stderr).toBe(0);

    const refused = await setup.run('collect-garbage');
    expect(refused.exitCode, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(
      `not collecting ${path.basename(setup.containerFile)}/${setup.name}: moved/${setup.name} is activated and keeps its data in the same place, reached another way`,
    );
    expect(refused.stderr).toContain('Nothing was removed');
    expect(await setup.databases()).toEqual([setup.name]);

    // Once the other is deactivated, the database is garbage for both, and it is collected.
    expect((await inContainer(setup, moved, 'deactivate')).exitCode).toBe(0);
    const collected = await setup.run('collect-garbage');
    expect(collected.exitCode, collected.stderr).toBe(0);
    expect(await setup.databases()).toEqual([]);
  });

  it('a container whose server does not answer does not stand in the way; a warning says so', { timeout: 60_000 }, async () => {
    const setup = await engine.setup();
    await setup.ok('activate');
    await setup.ok('deactivate');
    const elsewhere = path.join(setup.dir, 'elsewhere');
    await writeContainer(elsewhere, engine.unreachable(setup.properties));
    // Marked as activated there (its activation could not reach that server now).
    await mkdir(path.join(setup.stateDir, 'activated', 'elsewhere'), { recursive: true });
    await writeFile(path.join(setup.stateDir, 'activated', 'elsewhere', setup.name), '');

    const collected = await setup.run('collect-garbage');
    expect(collected.exitCode, collected.stderr).toBe(0);
    expect(collected.stderr).toContain('cannot ask the server of container elsewhere which server it is');
    expect(await setup.databases()).toEqual([]);
  });
});
