/**
 * Helpers for the migrate tests: two "machines" (state dir + container) on this one, a second
 * MariaDB server with its own data folder, and the built programs as commands for a shell.
 */
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { execa } from 'execa';
import mysql from 'mysql2/promise';
import { programPath, type Program } from './cli.js';
import { makeTempDir } from './temp.js';

/** `node dist/bin/<program>.js` as a command line prefix (words). */
export function programWords(program: Program): string[] {
  return [process.execPath, programPath(program)];
}

/** A MariaDB server of its own (data folder, socket, no TCP), for a migration target. */
export interface ScratchMariadb {
  socket: string;
  /** Container properties of the mysql-database plugin reaching it. */
  properties: Record<string, string>;
  query(sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  queryIn(database: string, sql: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  stop(): Promise<void>;
}

/**
 * Initialises and starts a second mariadbd (as user mysql) in a temporary folder. Fails, with
 * the server's log, when it cannot. `stop` ends that process (by its pid) and removes the folder.
 */
export async function startScratchMariadb(): Promise<ScratchMariadb> {
  const dir = await makeTempDir('dysnomia-mariadb-');
  const data = path.join(dir, 'data');
  const socket = path.join(dir, 'mysqld.sock');
  const pidFile = path.join(dir, 'mysqld.pid');
  const errorLog = path.join(dir, 'error.log');
  await mkdir(data);
  await chown(dir, ...(await mysqlIds()));
  await chown(data, ...(await mysqlIds()));
  await execa('chmod', ['755', dir]);
  await execa('mariadb-install-db', [
    '--no-defaults',
    `--datadir=${data}`,
    '--user=mysql',
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
  ]);
  const server = execa(
    'mariadbd',
    [
      '--no-defaults',
      `--datadir=${data}`,
      `--socket=${socket}`,
      '--skip-networking',
      '--user=mysql',
      `--pid-file=${pidFile}`,
      `--log-error=${errorLog}`,
      '--innodb-buffer-pool-size=16M',
    ],
    { reject: false, stdio: 'ignore' },
  );
  const connect = (database?: string) => mysql.createConnection({ user: 'root', socketPath: socket, database, multipleStatements: true });
  const started = performance.now();
  for (;;) {
    if (existsSync(socket)) {
      const ok = await connect().then(
        async (c) => {
          await c.end();
          return true;
        },
        () => false,
      );
      if (ok) break;
    }
    if (server.exitCode !== null || performance.now() - started > 30_000) {
      server.kill();
      const log = await readFile(errorLog, 'utf8').catch(() => '(no log)');
      await rm(dir, { recursive: true, force: true });
      throw new Error(`the scratch MariaDB server did not start:\n${log}`);
    }
    await delay(100);
  }
  const run = async (database: string | undefined, sql: string, values?: unknown[]) => {
    const connection = await connect(database);
    try {
      const [rows] = await connection.query(sql, values);
      return rows as Record<string, unknown>[];
    } finally {
      await connection.end();
    }
  };
  return {
    socket,
    properties: { type: 'mysql-database', mysqlUsername: 'root', mysqlSocket: socket },
    query: (sql, values) => run(undefined, sql, values),
    queryIn: run,
    async stop() {
      server.kill('SIGTERM');
      await server;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function mysqlIds(): Promise<[number, number]> {
  const uid = Number((await execa('id', ['-u', 'mysql'])).stdout);
  const gid = Number((await execa('id', ['-g', 'mysql'])).stdout);
  return [uid, gid];
}
