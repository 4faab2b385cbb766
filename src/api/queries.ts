/**
 * What is on this machine: container files, components available for deployment, and the
 * components the state dir marks as activated or garbage. `dysnomia-containers --query-*`.
 */
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Logger, silentLogger } from '../core/log.js';
import { componentsPath, containersPath, nameFromPath } from '../core/resolve.js';
import { type ComponentKey, listMarked } from '../core/state-dir.js';
import { visibleNames } from '../snapshot-store/fs-util.js';
import { type CommonOptions, stateDirOf } from './options.js';

/** A container file found in DYSNOMIA_CONTAINERS_PATH. */
export interface ContainerEntry {
  /** The container's name (the file name). */
  name: string;
  /** Absolute path of the container file. */
  file: string;
}

/** A component found in DYSNOMIA_COMPONENTS_PATH/<container>/. */
export interface AvailableComponent extends ComponentKey {
  /** Absolute path of the component directory, symlinks resolved. */
  path: string;
}

/** Options of the queries: search paths come from `env`, warnings go to `log`. */
export interface QueryOptions {
  /** Only this container (by name). */
  container?: string;
  env?: NodeJS.ProcessEnv;
  /** Receives a warning for every stray entry that is skipped. */
  log?: Logger;
}

/** Options of the state-dir queries. */
export interface MarkerQueryOptions extends Pick<CommonOptions, 'stateDir' | 'env'> {
  /** Only this container (by name). */
  container?: string;
}

/**
 * What an entry is after following symlinks: `file`, `directory`, `other`, or `missing` (a
 * dangling symlink, or removed meanwhile). Any other error (EACCES, EIO) is thrown: an entry we
 * cannot look at is not known to be missing.
 */
async function kindOf(file: string): Promise<'file' | 'directory' | 'other' | 'missing'> {
  try {
    const info = await stat(file);
    return info.isFile() ? 'file' : info.isDirectory() ? 'directory' : 'other';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return 'missing';
    throw error;
  }
}

/**
 * The container files in DYSNOMIA_CONTAINERS_PATH, in search-path order; a name found in two
 * folders is the first one (the one `--container NAME` would use). Missing folders are skipped.
 */
export async function listContainers(options: QueryOptions = {}): Promise<ContainerEntry[]> {
  const log = options.log ?? silentLogger;
  const found = new Map<string, ContainerEntry>();
  for (const dir of containersPath(options.env ?? process.env)) {
    for (const name of await visibleNames(dir)) {
      const file = path.resolve(dir, name);
      const kind = await kindOf(file);
      if (kind !== 'file') {
        log.warn(`skipping ${file}: ${describeKind(kind)}, not a container file`);
        continue;
      }
      if (options.container !== undefined && name !== options.container) continue;
      if (!found.has(name)) found.set(name, { name, file });
    }
  }
  return [...found.values()];
}

function describeKind(kind: 'file' | 'directory' | 'other' | 'missing'): string {
  switch (kind) {
    case 'file':
      return 'a file';
    case 'directory':
      return 'a directory';
    case 'missing':
      return 'a dangling symlink';
    case 'other':
      return 'a special file';
  }
}

/** The components tree as `--deploy` must see it: what is there, and what could not be seen. */
export interface ComponentsSurvey {
  available: AvailableComponent[];
  /**
   * Parts of the tree that may hide components: a folder of the search path that does not exist,
   * or an entry whose symlink dangles (a failed build, a collected store path). Each says which.
   */
  gaps: string[];
}

/**
 * Every component in DYSNOMIA_COMPONENTS_PATH/<container>/<component>, in search-path order.
 * Components are directories; anything else in the tree is warned about and skipped. The component
 * name is the one its activated marker gets (symlinks resolved, Nix store hash stripped).
 */
export async function listAvailableComponents(options: QueryOptions = {}): Promise<AvailableComponent[]> {
  return (await surveyComponents(options)).available;
}

/** {@link listAvailableComponents}, and the gaps of the tree (see {@link ComponentsSurvey}). */
export async function surveyComponents(options: QueryOptions = {}): Promise<ComponentsSurvey> {
  const env = options.env ?? process.env;
  const log = options.log ?? silentLogger;
  const found = new Map<string, AvailableComponent>();
  const gaps: string[] = [];
  for (const root of componentsPath(env)) {
    const rootKind = await kindOf(root);
    if (rootKind !== 'directory') {
      gaps.push(`the components tree ${root} (DYSNOMIA_COMPONENTS_PATH) ${rootKind === 'missing' ? 'does not exist' : `is ${describeKind(rootKind)}, not a folder`}`);
      continue;
    }
    for (const container of await visibleNames(root)) {
      const containerDir = path.resolve(root, container);
      const kind = await kindOf(containerDir);
      if (kind !== 'directory') {
        if (kind === 'missing') gaps.push(`${containerDir} is a dangling symlink`);
        log.warn(
          `skipping ${containerDir}: ${describeKind(kind)} in the components tree (expected a folder per container, <container>/<component>)`,
        );
        continue;
      }
      if (options.container !== undefined && container !== options.container) continue;
      // Two entries of one container folder that resolve to the same name would share a marker
      // and a database: the second would never be activated or snapshotted, so it is named.
      const seenHere = new Map<string, { entryPath: string; real: string }>();
      for (const entry of await visibleNames(containerDir)) {
        const entryPath = path.join(containerDir, entry);
        const entryKind = await kindOf(entryPath);
        if (entryKind !== 'directory') {
          if (entryKind === 'missing') gaps.push(`${entryPath} is a dangling symlink`);
          log.warn(`skipping ${entryPath}: ${describeKind(entryKind)}, not a component folder`);
          continue;
        }
        const real = await realpath(entryPath);
        const component = nameFromPath(real, env);
        const key = `${container}/${component}`;
        const first = seenHere.get(component);
        if (first !== undefined) {
          if (first.real !== real) {
            log.warn(
              `skipping ${entryPath}: it resolves to ${real}, so it is the component ${key}, as ${first.entryPath} (${first.real}) already is; give the two different names`,
            );
          }
          continue;
        }
        seenHere.set(component, { entryPath, real });
        if (!found.has(key)) found.set(key, { container, component, path: real });
      }
    }
  }
  return { available: [...found.values()], gaps };
}

/** The components the state dir marks as activated (`activated/<container>/<component>`). */
export async function listActivatedComponents(options: MarkerQueryOptions = {}): Promise<ComponentKey[]> {
  return listMarked(stateDirOf(options), 'activated', options.container);
}

/** The components marked as garbage, waiting for collect-garbage (`garbage/<container>/<component>`). */
export async function listGarbageComponents(options: MarkerQueryOptions = {}): Promise<ComponentKey[]> {
  return listMarked(stateDirOf(options), 'garbage', options.container);
}
