/** The initial SQL scripts of a component: `<component>/<folder>/*.sql`, in name order. */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, OperationError } from '../../core/errors.js';

/**
 * The scripts, sorted by name ([] when the folder does not exist). A component, or a scripts
 * folder, that is a file is a ConfigError naming it (exit 2): a packaging mistake, not a failure.
 */
export async function initialScripts(componentPath: string, folder: string, plugin: string): Promise<string[]> {
  const dir = path.join(componentPath, folder);
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return [];
    if (code === 'ENOTDIR') {
      const componentIsFile = !(await stat(componentPath).then((info) => info.isDirectory(), () => false));
      throw new ConfigError(
        componentIsFile
          ? `the component is a file, not a folder; a ${plugin} component is a folder that may hold ${folder}/*.sql`
          : `is a file; it should be a folder of *.sql scripts`,
        { file: componentIsFile ? componentPath : dir, plugin, cause: error },
      );
    }
    throw new OperationError(`cannot read ${dir}: ${(error as Error).message}`, { plugin, cause: error });
  }
  return entries
    .filter((entry) => entry.name.endsWith('.sql') && !entry.isDirectory())
    .map((entry) => entry.name)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => path.join(dir, name));
}
