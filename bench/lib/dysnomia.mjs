/** Our programs as a user runs them: `node dist/bin/<program>.js ...` with a state dir of our own. */
import { lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './process.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Absolute path of a built program. */
export function programPath(program) {
  return path.join(ROOT, 'dist', 'bin', `${program}.js`);
}

/** A component folder named `name` and a container file for `properties`, under `dir`. */
export async function makeTarget(dir, { name, scriptsDir, properties, containerName }) {
  const component = path.join(dir, 'components', name);
  await mkdir(path.join(component, scriptsDir), { recursive: true });
  const container = path.join(dir, containerName);
  const quote = (value) => `'${String(value).replaceAll("'", "'\\''")}'`;
  await writeFile(container, Object.entries(properties).map(([key, value]) => `${key}=${quote(value)}\n`).join(''));
  return { component, container, containerName, name };
}

/**
 * Runs `dysnomia --operation <operation>` on a target with `--json`, and resolves to the timing
 * and the parsed result (bytesRead, bytesStored, snapshot, ...).
 */
export async function dysnomia(operation, target, { stateDir, rss = false } = {}) {
  const outcome = await run(
    process.execPath,
    [programPath('dysnomia'), '--operation', operation, '--component', target.component, '--container', target.container, '--json', '--quiet'],
    { env: { DYSNOMIA_STATEDIR: stateDir }, stdout: 'capture', rss },
  );
  return { ...outcome, result: JSON.parse(outcome.stdout) };
}

/** Runs `dysnomia-snapshots ...args` and resolves to the timing and stdout. */
export function dysnomiaSnapshots(args, { stateDir, rss = false } = {}) {
  return run(process.execPath, [programPath('dysnomia-snapshots'), ...args], { env: { DYSNOMIA_STATEDIR: stateDir }, stdout: 'capture', rss });
}

/**
 * Bytes the state dir occupies: the sizes of its regular files, each inode counted once (a pool
 * file and its hard links in snapshot folders are one piece of data).
 */
export async function storeSize(stateDir) {
  const seen = new Set();
  let bytes = 0;
  const walk = async (dir) => {
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (error.code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(file);
      else if (entry.isFile()) {
        const info = await lstat(file);
        const key = `${info.dev}:${info.ino}`;
        if (!seen.has(key)) {
          seen.add(key);
          bytes += info.size;
        }
      }
    }
  };
  await walk(stateDir);
  return bytes;
}
