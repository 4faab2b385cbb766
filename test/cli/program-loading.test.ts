/**
 * The programs are bundled (scripts/bundle.mjs), and each plugin stays in chunks of its own: a
 * git-only run must not load pg or mysql2 (ARCHITECTURE, "The plugin contract"), nor a PostgreSQL
 * run mysql2. A bundler that moved a driver into a chunk every run imports would break that
 * silently, so this watches which files a run really loads.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { programPath } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';

const TRACER = fileURLToPath(new URL('./fixtures/trace-loads.mjs', import.meta.url));
const DRIVERS = { pg: 'node_modules/pg/', mysql2: 'node_modules/mysql2/', 'simple-git': 'node_modules/simple-git/' };

/** Runs `dysnomia args` and returns the drivers among the files it loaded. */
async function driversLoaded(args: string[], env: Record<string, string> = {}): Promise<{ drivers: string[]; stderr: string }> {
  const dir = await useTempDir();
  const trace = path.join(dir, 'loads.txt');
  await writeFile(trace, '');
  await mkdir(path.join(dir, 'component'));
  const result = await execa(process.execPath, ['--import', TRACER, programPath('dysnomia'), ...args], {
    env: { DYSNOMIA_STATEDIR: path.join(dir, 'state'), TRACE_LOADS_FILE: trace, ...env },
    cwd: dir,
    reject: false,
  });
  const files = [...new Set((await readFile(trace, 'utf8')).split('\n').filter((url) => url.startsWith('file:')))];
  const found = new Set<string>();
  for (const url of files) {
    const file = fileURLToPath(url);
    // A driver is either loaded from node_modules, or bundled into a chunk, which names the
    // files it was made of in comments (`// node_modules/pg/lib/client.js`).
    const text = await readFile(file, 'utf8');
    for (const [name, marker] of Object.entries(DRIVERS)) {
      if (file.includes(`/${marker}`) || text.includes(`// ${marker}`)) found.add(name);
    }
  }
  return { drivers: [...found].sort(), stderr: result.stderr };
}

describe('what a run of the bundled dysnomia loads', () => {
  it('a git-repository run loads simple-git, and neither pg nor mysql2', async () => {
    const base = await useTempDir();
    const run = await driversLoaded(['--type', 'git-repository', '--operation', 'activate', '--component', './component', '--environment'], {
      gitBaseDir: base,
    });
    expect(run.stderr).toContain('activated');
    expect(run.drivers).toEqual(['simple-git']);
  });

  it('a postgresql-database run loads pg, and not mysql2 (so the check above can see a driver)', async () => {
    // A bad property ends the run once the plugin is loaded: no server is needed.
    const run = await driversLoaded(['--type', 'postgresql-database', '--operation', 'activate', '--component', './component', '--environment'], {
      postgresqlPort: 'not-a-port',
    });
    expect(run.stderr).toContain('postgresqlPort');
    expect(run.drivers).toEqual(['pg']);
  });
});
