/**
 * The benchmark databases on the local PostgreSQL and MariaDB/MySQL servers, reached with the
 * vendors' client tools as the local administrator (PostgreSQL: PGHOST/PGPORT/PGUSER, default the
 * socket in /var/run/postgresql as postgres; MariaDB: MYSQL_UNIX_PORT or MYSQL_HOST/MYSQL_TCP_PORT,
 * default /run/mysqld/mysqld.sock as root without a password).
 *
 * The base database holds the shared dataset (`$DYSNOMIA_BENCH_DATA/{pg,mysql}-dataset.sql`),
 * optionally scaled down for quick runs. It is created when missing and kept between runs (the
 * MariaDB dataset takes a while to load); the benchmarks only read it. Churn, restores and loads
 * happen in copies, which the benchmark drops afterwards.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './process.mjs';

/** Constants of the dataset and churn scripts that scale with the dataset's size. */
const SCALED = ['1500000', '800000', '15000', '800', '750'];

/** The dataset or churn script, with its row counts multiplied by `scale`. */
export async function scaledScript(file, scale) {
  const text = await readFile(file, 'utf8');
  if (scale === 1) return text;
  const found = new Set();
  // Not \b: in `seq_1_to_800000` the underscore is a word character.
  const scaled = text.replace(new RegExp(`(?<![0-9])(${SCALED.join('|')})(?![0-9])`, 'g'), (number) => {
    found.add(number);
    return String(Math.max(1, Math.round(Number(number) * scale)));
  });
  if (found.size === 0) throw new Error(`${file}: none of the expected row counts (${SCALED.join(', ')}) found; cannot scale it`);
  return scaled;
}

/** Rows the dataset inserts, at a scale (the check that a base database is complete). */
export function expectedRows(scale) {
  return { customers: Math.max(1, Math.round(800000 * scale)), orders: Math.max(1, Math.round(1500000 * scale)) };
}

const NAME = /^[a-z_][a-z0-9_]{0,62}$/;

function checkName(name) {
  if (!NAME.test(name)) throw new Error(`benchmark database name ${JSON.stringify(name)} is not a plain lower-case identifier`);
  return name;
}

function pgAccess() {
  const host = process.env.PGHOST ?? '/var/run/postgresql';
  const port = process.env.PGPORT ?? '5432';
  const user = process.env.PGUSER ?? 'postgres';
  const properties = { type: 'postgresql-database', postgresqlUsername: user, postgresqlPort: port };
  if (host.startsWith('/')) properties.postgresqlRuntimeDir = host;
  else properties.postgresqlHost = host;
  return { env: { PGHOST: host, PGPORT: port, PGUSER: user }, properties };
}

function mysqlAccess() {
  const properties = { type: 'mysql-database', mysqlUsername: process.env.MYSQL_USER ?? 'root' };
  const args = ['-u', properties.mysqlUsername];
  if (process.env.MYSQL_HOST) {
    properties.mysqlHost = process.env.MYSQL_HOST;
    args.push('-h', process.env.MYSQL_HOST, '-P', process.env.MYSQL_TCP_PORT ?? '3306', '--protocol=tcp');
    if (process.env.MYSQL_TCP_PORT) properties.mysqlPort = process.env.MYSQL_TCP_PORT;
  } else {
    properties.mysqlSocket = process.env.MYSQL_UNIX_PORT ?? '/run/mysqld/mysqld.sock';
    args.push('-S', properties.mysqlSocket);
  }
  return { args, properties };
}

/** PostgreSQL through psql, pg_dump and createdb. */
export function postgres() {
  const access = pgAccess();
  const psql = (database, sql) =>
    run('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', database, '-c', sql], { env: access.env, stdout: 'capture' });
  return {
    id: 'pg',
    label: 'PostgreSQL',
    type: 'postgresql-database',
    scriptsDir: 'postgresql-databases',
    datasetFile: 'pg-dataset.sql',
    dumpLabel: 'pg_dump DB',
    loadLabel: 'psql -q -f dump.sql DB',
    churnFile: 'pg-nightly-churn.sql',
    properties: access.properties,
    env: access.env,
    async version() {
      return (await psql('postgres', 'show server_version')).stdout.trim();
    },
    async list(prefix) {
      const { stdout } = await psql('postgres', `select datname from pg_database where starts_with(datname, '${checkName(prefix)}')`);
      return stdout.split('\n').filter(Boolean);
    },
    async create(database) {
      await psql('postgres', `create database "${checkName(database)}"`);
    },
    async drop(database) {
      await psql('postgres', `drop database if exists "${checkName(database)}" with (force)`);
    },
    /** A copy of `from` (a file copy on the server: seconds, not a reload). */
    async copy(from, to) {
      await psql('postgres', `create database "${checkName(to)}" template "${checkName(from)}"`);
    },
    /**
     * Writes out what earlier runs left in memory (CHECKPOINT), so that a timed run does not pay
     * for it: DROP DATABASE waits for a checkpoint, so a restore after a bare load would also
     * write that load's data out.
     */
    async settle() {
      await psql('postgres', 'checkpoint');
    },
    async count(database, table) {
      return Number((await psql(database, `select count(*) from ${table}`)).stdout.trim());
    },
    /** Runs an SQL script file; stops on the first error. */
    runFile(database, file) {
      return run('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', database, '-f', file], { env: access.env });
    },
    /** The bare load tool on a plain dump file (the restore reference). */
    load(database, file, options = {}) {
      return run('psql', ['-X', '-q', '-d', database, '-f', file], { env: access.env, ...options });
    },
    /** The bare dump tool and its arguments. */
    dumpCommand(database) {
      return ['pg_dump', [database]];
    },
  };
}

/** MariaDB/MySQL through mysql and mysqldump. */
export function mysql() {
  const access = mysqlAccess();
  const client = (sql, database) =>
    run('mysql', [...access.args, '-N', '-B', ...(database ? [database] : []), '-e', sql], { stdout: 'capture' });
  return {
    id: 'mysql',
    label: 'MariaDB',
    type: 'mysql-database',
    scriptsDir: 'mysql-databases',
    datasetFile: 'mysql-dataset.sql',
    dumpLabel: 'mysqldump --single-transaction --quick --skip-dump-date DB',
    loadLabel: 'mysql DB < dump.sql',
    churnFile: 'mysql-nightly-churn.sql',
    properties: access.properties,
    env: {},
    async version() {
      return (await client('select version()')).stdout.trim();
    },
    async list(prefix) {
      const { stdout } = await client(
        `select schema_name from information_schema.schemata where schema_name like '${checkName(prefix).replaceAll('_', '\\_')}%'`,
      );
      return stdout.split('\n').filter(Boolean);
    },
    async create(database) {
      await client(`create database \`${checkName(database)}\``);
    },
    async drop(database) {
      await client(`drop database if exists \`${checkName(database)}\``);
    },
    /** A copy of `from`, loaded from a plain dump of it (`dumpFile`). */
    async copy(from, to, dumpFile) {
      await this.create(to);
      await this.load(to, dumpFile);
    },
    /** Nothing: no statement of our restore waits for InnoDB to write its dirty pages out. */
    async settle() {},
    async count(database, table) {
      return Number((await client(`select count(*) from ${table}`, database)).stdout.trim());
    },
    runFile(database, file) {
      return run('mysql', [...access.args, database], { stdin: file });
    },
    load(database, file, options = {}) {
      return run('mysql', [...access.args, database], { stdin: file, ...options });
    },
    dumpCommand(database) {
      return ['mysqldump', [...access.args, '--single-transaction', '--quick', '--skip-dump-date', database]];
    },
  };
}

/**
 * Makes sure `name` holds the (scaled) dataset: reuses it when its row counts match, else
 * (re)creates it from the dataset script. Returns what it did.
 */
export async function ensureDataset(engine, { name, scale, dataDir, workDir, log }) {
  const expected = expectedRows(scale);
  if ((await engine.list(name)).includes(name)) {
    try {
      const customers = await engine.count(name, 'customers');
      const orders = await engine.count(name, 'orders');
      if (customers === expected.customers && orders === expected.orders) return 'reused';
      log(`${engine.label}: ${name} has ${customers} customers and ${orders} orders, expected ${expected.customers} and ${expected.orders}; reloading it`);
    } catch (error) {
      log(`${engine.label}: ${name} is not a complete benchmark database (${error.message.split('\n')[0]}); reloading it`);
    }
    await engine.drop(name);
  }
  const script = path.join(workDir, `${engine.id}-dataset-${scale}.sql`);
  await writeFile(script, await scaledScript(path.join(dataDir, engine.datasetFile), scale));
  for (let attempt = 1; ; attempt += 1) {
    log(`${engine.label}: loading the dataset (scale ${scale}) into ${name} ...`);
    await engine.create(name);
    try {
      const { seconds } = await engine.runFile(name, script);
      log(`${engine.label}: loaded in ${seconds.toFixed(1)} s`);
      return 'created';
    } catch (error) {
      await engine.drop(name);
      if (attempt >= DATASET_ATTEMPTS || !isGeneratorAccident(error)) throw error;
      log(`${engine.label}: the dataset script drew a value PostgreSQL cannot read (${error.message.split('\n').at(-1)}); loading it again`);
    }
  }
}

const DATASET_ATTEMPTS = 3;

/**
 * The shared pg-dataset.sql makes dates with `(random()*1000||' days')::interval`. When random()
 * draws below 1e-7, the number prints as `3.2e-05` and the cast fails: about one load in twelve
 * (800,000 draws). The data is random anyway, so another load is as good; any other failure is
 * real and stops the benchmark.
 */
function isGeneratorAccident(error) {
  return /invalid input syntax for type interval: "[0-9.]+e-[0-9]+ days"/.test(error.message);
}
