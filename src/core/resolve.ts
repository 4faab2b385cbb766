import { readFileSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { type ContainerProperties, propertyString, readContainerFile } from './container-file.js';
import { ConfigError, UsageError } from './errors.js';

/** A container: where a component lives (a database server, a directory of repositories). */
export interface ContainerSpec {
  /** The name used in state-dir paths: the file's basename (Nix hash stripped) or the type. */
  name: string;
  /** The plugin type, from the `type` property or `--type`. */
  type: string;
  /** All properties, `type` included. */
  properties: ContainerProperties;
  /** The container file, when the properties came from one. */
  file?: string;
  /** True when the properties came from the process environment (`--environment`). */
  fromEnvironment: boolean;
  /**
   * With `--environment`: the variables whose bytes are not UTF-8. Node has read them with U+FFFD
   * in place of those bytes, so their values here are not the ones that were set.
   */
  undecodable?: string[];
}

/** A component: a directory holding the initial logical state of a mutable component. */
export interface ComponentSpec {
  /** The component's name: its basename with a Nix store hash stripped. */
  name: string;
  /** Absolute path to the component directory. */
  path: string;
}

const DEFAULT_CONTAINERS_PATH = '/etc/dysnomia/containers';
const DEFAULT_COMPONENTS_PATH = '/etc/dysnomia/components';

/** Names that must never become a state-dir path segment. */
/**
 * Not starting with a dot: the state dir's listings (and Dysnomia's `ls`) skip hidden names, so a
 * component called `.shop` would be activated and then never found by `dysnomia-containers`: no
 * nightly snapshot, no deactivation on --deploy.
 */
const SAFE_NAME = /^[A-Za-z0-9_+@-][A-Za-z0-9._+@= -]*$/;

function searchPath(value: string | undefined, fallback: string): string[] {
  const dirs = (value === undefined || value === '' ? fallback : value).split(':');
  return dirs.filter((dir) => dir !== '');
}

/** The containers search path (`DYSNOMIA_CONTAINERS_PATH`, colon-separated). */
export function containersPath(env: NodeJS.ProcessEnv = process.env): string[] {
  return searchPath(env.DYSNOMIA_CONTAINERS_PATH, DEFAULT_CONTAINERS_PATH);
}

/** The components search path (`DYSNOMIA_COMPONENTS_PATH`, colon-separated). */
export function componentsPath(env: NodeJS.ProcessEnv = process.env): string[] {
  return searchPath(env.DYSNOMIA_COMPONENTS_PATH, DEFAULT_COMPONENTS_PATH);
}

/** True when Dysnomia treats the argument as a path rather than a name to search for. */
export function isPathArgument(argument: string): boolean {
  return argument.startsWith('/') || argument.startsWith('./') || argument.startsWith('../');
}

/**
 * The name of a component or container from its path: the basename, with the 32-character hash
 * and dash stripped when the path lies in the Nix store (`/nix/store/<hash>-testdb` is `testdb`).
 */
export function nameFromPath(argument: string, env: NodeJS.ProcessEnv = process.env): string {
  // As in Dysnomia's ${NIX_STORE_DIR:-/nix/store}: an empty value means the default.
  const storeDir = (env.NIX_STORE_DIR || '/nix/store').replace(/\/+$/, '') + '/';
  const base = path.basename(argument.replace(/\/+$/, ''));
  if (argument.startsWith(storeDir) && /^[0-9a-z]{32}-./.test(base)) return base.slice(33);
  return base;
}

/** Checks that a name is usable as one state-dir path segment. */
export function assertSafeName(name: string, what: string, source?: string): string {
  if (name === '.' || name === '..' || !SAFE_NAME.test(name) || name.length > 200) {
    const from = source === undefined ? '' : ` (from ${source})`;
    throw new ConfigError(
      `${JSON.stringify(name)}${from} is not a usable ${what} name: it becomes a folder name in the state dir, so use letters, digits and . _ - + @ = space, not starting with a dot (hidden names are skipped when the state dir is listed), at most 200 characters`,
    );
  }
  return name;
}

async function isFile(file: string): Promise<boolean> {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch {
    return false;
  }
}

/** Finds a container file from a path or a name searched in DYSNOMIA_CONTAINERS_PATH. */
export async function findContainerFile(
  argument: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  if (isPathArgument(argument)) return path.resolve(argument);
  const dirs = containersPath(env);
  for (const dir of dirs) {
    const candidate = path.join(dir, argument);
    if (await isFile(candidate)) return path.resolve(candidate);
  }
  throw new ConfigError(
    `no container file named ${JSON.stringify(argument)} in DYSNOMIA_CONTAINERS_PATH (${dirs.join(':')}); give a path (./${argument}) or add its folder to DYSNOMIA_CONTAINERS_PATH`,
  );
}

/** Reads a container from a file and checks that it names a type (or `fallbackType` is given). */
export async function loadContainerFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
  fallbackType?: string,
): Promise<ContainerSpec> {
  const properties = await readContainerFile(file);
  // As in Dysnomia, --type applies only when the file names no type.
  const type = propertyString(properties.type) || fallbackType;
  if (type === undefined || type === '') {
    throw new ConfigError('no type given; add a line such as type=mysql-database', {
      file,
      key: 'type',
    });
  }
  properties.type = type;
  return {
    name: assertSafeName(nameFromPath(file, env), 'container', file),
    type,
    properties,
    file,
    fromEnvironment: false,
  };
}

/**
 * A container whose properties are the process environment (`--environment`). Its name is the
 * type, or the `--container` argument's name when one is given, as in Dysnomia.
 */
export function containerFromEnvironment(
  type: string | undefined,
  containerArgument: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ContainerSpec {
  if (type === undefined || type === '') {
    throw new UsageError('--environment needs --type TYPE (the plugin to use)');
  }
  const properties: ContainerProperties = {};
  for (const [key, value] of Object.entries(env)) {
    if (value !== undefined) properties[key] = value;
  }
  properties.type = type;
  const name =
    containerArgument === undefined || containerArgument === ''
      ? typeName(type)
      : nameFromPath(containerArgument, env);
  const undecodable = env === process.env ? undecodableEnvironment() : [];
  return {
    name: assertSafeName(name, 'container'),
    type,
    properties,
    fromEnvironment: true,
    ...(undecodable.length > 0 ? { undecodable } : {}),
  };
}

/**
 * The names of this process's environment variables whose bytes are not UTF-8, read from
 * `/proc/self/environ` (the environment as the process was started with it): `process.env` has
 * already decoded them loosely, so only the raw bytes tell. None where /proc cannot be read.
 */
function undecodableEnvironment(): string[] {
  let raw: Buffer;
  try {
    raw = readFileSync('/proc/self/environ');
  } catch {
    return [];
  }
  const strict = new TextDecoder('utf-8', { fatal: true });
  const names: string[] = [];
  for (let start = 0; start < raw.length; ) {
    const nul = raw.indexOf(0, start);
    const end = nul === -1 ? raw.length : nul;
    const entry = raw.subarray(start, end);
    try {
      strict.decode(entry);
    } catch {
      const equals = entry.indexOf(0x3d);
      names.push(entry.subarray(0, equals === -1 ? entry.length : equals).toString('utf8'));
    }
    start = end + 1;
  }
  return names;
}

/**
 * The container name a type gives when no container is named: the type itself, or for a module
 * given as a path (`--type /opt/modules/mymod`) its base name, as Dysnomia's determineContainerName.
 */
function typeName(type: string): string {
  return type.includes('/') ? path.basename(type.replace(/\/+$/, '')) : type;
}

/**
 * A container given as an object of properties (the library API). `name` defaults to the type
 * (a module's path gives its base name).
 */
export function containerFromProperties(
  properties: ContainerProperties,
  name?: string,
): ContainerSpec {
  const type = propertyString(properties.type);
  if (type === undefined || type === '') {
    throw new ConfigError('no type given in the container properties', { key: 'type' });
  }
  return {
    name: assertSafeName(name ?? typeName(type), 'container'),
    type,
    properties: { ...properties },
    fromEnvironment: false,
  };
}

/**
 * Finds a component from a path, or a name searched as `<dir>/<container>/<name>` in
 * DYSNOMIA_COMPONENTS_PATH. The path must exist.
 */
export async function resolveComponent(
  argument: string,
  containerName: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ComponentSpec> {
  if (argument === '') throw new UsageError('--component is empty');
  let resolved: string | undefined;
  if (isPathArgument(argument)) {
    resolved = path.resolve(argument);
    if (!(await exists(resolved))) {
      throw new ConfigError(`component path does not exist: ${resolved}`);
    }
  } else {
    const dirs = componentsPath(env);
    for (const dir of dirs) {
      const candidate = path.join(dir, containerName, argument);
      if (await exists(candidate)) {
        resolved = path.resolve(candidate);
        break;
      }
    }
    if (resolved === undefined) {
      throw new ConfigError(
        `no component named ${JSON.stringify(argument)} for container ${JSON.stringify(containerName)} in DYSNOMIA_COMPONENTS_PATH (${dirs.map((d) => path.join(d, containerName)).join(':')}); give a path (./${argument}) instead`,
      );
    }
  }
  // Dysnomia resolves symlinks (readlink -f), so a profile link names the store path it points to.
  const real = await realpath(resolved);
  return { name: assertSafeName(nameFromPath(real, env), 'component', real), path: real };
}
