/**
 * A throwaway PostgreSQL cluster configured like a stock Debian/Ubuntu server: the local socket
 * uses peer authentication (role `postgres` only for the OS user `postgres`), TCP uses
 * scram-sha-256 passwords. The main cluster's configuration is never touched.
 *
 * Needs root and Debian's postgresql-common (pg_createcluster, pg_ctlcluster, pg_dropcluster),
 * which `.ci/run` installs with the server. Created by the test file that uses it (beforeAll)
 * and dropped with all its data afterwards (afterAll), so nothing is left behind.
 */
import { readdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { execa } from 'execa';
import pg from 'pg';
import type { PostgresServer } from './servers.js';
import { uniqueName } from './temp.js';

/** A started peer-authentication cluster. */
export interface PeerCluster {
  version: string;
  name: string;
  port: number;
  /** Password of the `postgres` role over TCP. */
  password: string;
  /** The server as the tests reach it (TCP with the password); its properties use the socket. */
  server: PostgresServer;
  drop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0));
    });
  });
}

async function newestVersion(): Promise<string> {
  const versions = (await readdir('/usr/lib/postgresql')).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (versions[0] === undefined) throw new Error('no PostgreSQL server under /usr/lib/postgresql; install postgresql');
  return versions[0];
}

/** Creates and starts the cluster. Fails (never skips) with a message when it cannot. */
export async function createPeerCluster(): Promise<PeerCluster> {
  if (process.getuid?.() !== 0) {
    throw new Error('the peer-authentication tests create a PostgreSQL cluster with pg_createcluster and run as OS user postgres: run them as root (as .ci/run does)');
  }
  const version = await newestVersion();
  const name = uniqueName('peer').replaceAll('_', '-');
  const port = await freePort();
  const password = uniqueName('pw');
  await execa('pg_createcluster', [version, name, '--port', String(port), '--', '--auth-local=peer', '--auth-host=scram-sha-256']);
  const drop = async () => {
    await execa('pg_dropcluster', ['--stop', version, name], { reject: false });
  };
  try {
    await execa('pg_ctlcluster', ['--skip-systemctl-redirect', version, name, 'start']);
    await execa('runuser', ['-u', 'postgres', '--', 'psql', '--port', String(port), '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--file=-'], {
      input: `ALTER ROLE postgres PASSWORD '${password}';\n`,
      cwd: '/',
    });
  } catch (error) {
    await drop();
    throw error;
  }
  const config = (database: string): pg.ClientConfig => ({ host: '127.0.0.1', port, user: 'postgres', password, database });
  const run = async (database: string, sql: string, values?: unknown[]) => {
    const client = new pg.Client(config(database));
    await client.connect();
    try {
      return (await client.query(sql, values)).rows as Record<string, unknown>[];
    } finally {
      await client.end();
    }
  };
  return {
    version,
    name,
    port,
    password,
    drop,
    server: {
      source: `peer cluster ${version}/${name}`,
      user: 'postgres',
      password,
      socketDir: '/var/run/postgresql',
      port,
      properties: { type: 'postgresql-database', postgresqlUsername: 'postgres', postgresqlPort: String(port) },
      query: (sql, values) => run('postgres', sql, values),
      queryIn: run,
    },
  };
}

/** A started throwaway MariaDB server on a socket of its own (no TCP). */
export interface ThrowawayMariadb {
  /** Container properties of the mysql-database plugin reaching it. */
  properties: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Creates and starts a second MariaDB server in a temporary folder (mariadb-install-db, mariadbd
 * from the installed server), reachable only through its own socket, root without a password.
 * Fails (never skips) when it cannot. Takes one to a few seconds.
 */
export async function startThrowawayMariadb(dir: string): Promise<ThrowawayMariadb> {
  const data = `${dir}/data`;
  const socket = `${dir}/mysqld.sock`;
  await execa('mariadb-install-db', ['--no-defaults', `--datadir=${data}`, '--user=root', '--auth-root-authentication-method=normal', '--skip-test-db']);
  const server = execa('/usr/sbin/mariadbd', ['--no-defaults', `--datadir=${data}`, `--socket=${socket}`, '--skip-networking', '--user=root', `--pid-file=${dir}/mysqld.pid`], {
    reject: false,
  });
  let exited = false;
  void server.then(() => (exited = true));
  const stop = async () => {
    server.kill('SIGTERM');
    const killer = setTimeout(() => server.kill('SIGKILL'), 10_000);
    await server;
    clearTimeout(killer);
  };
  const started = Date.now();
  for (;;) {
    const ping = await execa('mariadb-admin', ['--no-defaults', '-uroot', `--socket=${socket}`, 'ping'], { reject: false });
    if (ping.exitCode === 0) break;
    if (exited || Date.now() - started > 20_000) {
      await stop();
      throw new Error(`the throwaway MariaDB server in ${dir} did not start: ${(await server).stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { properties: { type: 'mysql-database', mysqlUsername: 'root', mysqlSocket: socket }, stop };
}
