import { access, constants, stat } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from './errors.js';
import type { AnyPlugin } from './plugin.js';
import { isPathArgument } from './resolve.js';

type PluginModule = { default: AnyPlugin };

/**
 * Built-in plugins, imported only when used: a git-only run never loads pg or mysql2.
 */
const BUILT_IN: Record<string, () => Promise<PluginModule>> = {
  echo: () => import('../plugins/echo/index.js'),
  'mysql-database': () => import('../plugins/mysql/index.js'),
  'postgresql-database': () => import('../plugins/postgres/index.js'),
  'git-repository': () => import('../plugins/git/index.js'),
};

/** The names of the built-in plugin types. */
export const builtInTypes = Object.freeze(Object.keys(BUILT_IN));

async function isExecutableFile(file: string): Promise<boolean> {
  try {
    if (!(await stat(file)).isFile()) return false;
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

async function isRegularFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

function modulesPath(env: NodeJS.ProcessEnv): string[] {
  return (env.DYSNOMIA_MODULES_PATH ?? '').split(':').filter((dir) => dir !== '');
}

/** Where an external module with this type name lives, searched in DYSNOMIA_MODULES_PATH. */
export async function findModule(
  type: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  if (isPathArgument(type)) {
    const file = path.resolve(type);
    return (await isExecutableFile(file)) ? file : undefined;
  }
  if (type === '' || type.includes('/')) return undefined;
  for (const dir of modulesPath(env)) {
    const candidate = path.join(dir, type);
    if (await isExecutableFile(candidate)) return path.resolve(candidate);
  }
  return undefined;
}

/** A file named like the module that cannot be run, to explain why the type was not found. */
async function findNonExecutable(type: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (isPathArgument(type)) {
    const file = path.resolve(type);
    return (await isRegularFile(file)) ? file : undefined;
  }
  if (type === '' || type.includes('/')) return undefined;
  for (const dir of modulesPath(env)) {
    const candidate = path.resolve(dir, type);
    if (await isRegularFile(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Finds the plugin for a container type. As in Dysnomia, an executable in DYSNOMIA_MODULES_PATH
 * comes first (so a site can override a module), then the built-in plugins; a type that is a path
 * (`/...` or `./...`) names an executable directly.
 */
export async function loadPlugin(
  type: string,
  env: NodeJS.ProcessEnv = process.env,
  file?: string,
): Promise<AnyPlugin> {
  const modulePath = await findModule(type, env);
  if (modulePath !== undefined) {
    const { externalPlugin } = await import('../plugins/external/index.js');
    return externalPlugin(modulePath);
  }
  const load = Object.hasOwn(BUILT_IN, type) ? BUILT_IN[type] : undefined;
  if (load !== undefined) return (await load()).default;
  const notExecutable = await findNonExecutable(type, env);
  if (notExecutable !== undefined) {
    throw new ConfigError(
      `module ${notExecutable} is not executable; make it executable (chmod +x ${notExecutable}) or fix the type`,
      { file, key: 'type' },
    );
  }
  if (isPathArgument(type)) {
    const isFolder = await stat(type).then((info) => info.isDirectory(), () => false);
    throw new ConfigError(`module ${path.resolve(type)} ${isFolder ? 'is a folder, not an executable' : 'does not exist'}`, { file, key: 'type' });
  }
  throw new ConfigError(
    `unknown type ${JSON.stringify(type)}: not a built-in plugin (${builtInTypes.join(', ')}) and no executable of that name in DYSNOMIA_MODULES_PATH (${env.DYSNOMIA_MODULES_PATH || 'unset'})`,
    { file, key: 'type' },
  );
}
