/**
 * collect-garbage of a SQL component whose database name an activated component of another
 * container has, at another location: the plugin asks the servers whether they are one (a lock
 * taken through one connection, seen through the other). One server reached two ways (its socket
 * and TCP): refused. A server that does not answer: refused, saying why. A second server (a
 * throwaway MariaDB, a throwaway PostgreSQL cluster): collected. Real servers throughout.
 */
import { lookup } from 'node:dns/promises';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { runCli } from '../support/cli.js';
import { createPeerCluster, startThrowawayMariadb } from '../support/sql-cluster.js';
import { mysqlSetup, postgresSetup, type SqlSetup, writeContainer } from '../support/sql-setup.js';
import { useTempDir } from '../support/temp.js';

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
    /** A second server: a throwaway MariaDB on a socket of its own. */
    secondServer: async () => startThrowawayMariadb(await useTempDir('dysnomia-mariadb-')),
    unreachable: ({ mysqlSocket: _socket, ...rest }: Record<string, string>) => ({ ...rest, mysqlHost: '127.0.0.1', mysqlPort: '1', timeout: '1' }),
  },
  {
    name: 'postgresql-database',
    setup: () => postgresSetup(),
    otherWay: async ({ postgresqlRuntimeDir, ...rest }: Record<string, string>) =>
      postgresqlRuntimeDir !== undefined ? { ...rest, postgresqlHost: '127.0.0.1' } : { ...rest, postgresqlHost: await otherName(rest.postgresqlHost!) },
    /** A second server: a throwaway cluster (peer authentication on its socket). */
    secondServer: async () => {
      const cluster = await createPeerCluster();
      return { properties: cluster.server.properties, stop: cluster.drop };
    },
    unreachable: ({ postgresqlRuntimeDir: _dir, ...rest }: Record<string, string>) => ({ ...rest, postgresqlHost: '127.0.0.1', postgresqlPort: '1', timeout: '1' }),
  },
];

/** Runs an operation on the setup's component through another container file. */
function inContainer(setup: SqlSetup, file: string, operation: string) {
  return runCli('dysnomia', ['--operation', operation, '--component', setup.component, '--container', file], {
    env: { DYSNOMIA_STATEDIR: setup.stateDir },
  });
}

/**
 * Activates and deactivates the setup's component (garbage), and writes a container file `name`
 * beside its own whose component of the same name is marked as activated (without reaching its
 * server: the marker is what collect-garbage reads).
 */
async function garbageBeside(
  started: Promise<SqlSetup>,
  name: string,
  properties: (setup: SqlSetup) => Promise<Record<string, string>>,
): Promise<SqlSetup> {
  const setup = await started;
  await setup.ok('activate');
  await setup.ok('deactivate');
  await writeContainer(path.join(setup.dir, name), await properties(setup));
  await mkdir(path.join(setup.stateDir, 'activated', name), { recursive: true });
  await writeFile(path.join(setup.stateDir, 'activated', name, setup.name), '');
  return setup;
}

/**
 * collect-garbage refuses, saying `says`, and drops nothing; once the component is deactivated in
 * the container file `other`, it is garbage for both, and collected.
 */
async function refusedUntilDeactivated(setup: SqlSetup, other: string, says: string[]): Promise<void> {
  const refused = await setup.run('collect-garbage');
  expect(refused.exitCode, refused.stderr).toBe(1);
  for (const text of says) expect(refused.stderr).toContain(text);
  expect(refused.stderr).toContain('Nothing was removed');
  expect(await setup.databases()).toEqual([setup.name]);
  expect((await inContainer(setup, other, 'deactivate')).exitCode).toBe(0);
  const collected = await setup.run('collect-garbage');
  expect(collected.exitCode, collected.stderr).toBe(0);
  expect(await setup.databases()).toEqual([]);
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

    await refusedUntilDeactivated(setup, moved, [
      `not collecting ${path.basename(setup.containerFile)}/${setup.name}: moved/${setup.name} is activated and keeps its data in the same place, reached another way`,
    ]);
  });

  it('refuses while another container with that database name reaches a server that does not answer, and says why', { timeout: 60_000 }, async () => {
    const setup = await garbageBeside(engine.setup(), 'elsewhere', async (s) => engine.unreachable(s.properties));
    const elsewhere = path.join(setup.dir, 'elsewhere');

    // Deactivating it there is the user's answer when that server is gone for good.
    await refusedUntilDeactivated(setup, elsewhere, [`elsewhere/${setup.name} is activated with a database of the same name at`, 'cannot be told']);
  });

  it('collects when another container with that database name reaches another server', { timeout: 120_000 }, async () => {
    const second = await engine.secondServer();
    onTestFinished(() => second.stop());
    const setup = await garbageBeside(engine.setup(), 'other-server', async () => second.properties);

    const collected = await setup.run('collect-garbage');
    expect(collected.exitCode, collected.stderr).toBe(0);
    expect(await setup.databases()).toEqual([]);
  });
});
