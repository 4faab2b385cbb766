/**
 * Turns what a user typed (or a deployer passed) into a resolved container and component, with
 * Dysnomia's rules: a container file by path or by name in DYSNOMIA_CONTAINERS_PATH, or the
 * environment with --environment; a component by path or by name in DYSNOMIA_COMPONENTS_PATH.
 */
import type { ContainerProperties } from './container-file.js';
import { UsageError } from './errors.js';
import {
  type ComponentSpec,
  type ContainerSpec,
  containerFromEnvironment,
  containerFromProperties,
  findContainerFile,
  loadContainerFile,
  resolveComponent,
} from './resolve.js';

export interface TargetArguments {
  /** A container file path or name; with `environment`, only its name is used. */
  container?: string | { properties: ContainerProperties; name?: string };
  /** A component path or name. */
  component?: string;
  /** Take the container's properties from the environment (`--environment`). */
  environment?: boolean;
  /** The plugin type for `--environment`, or the fallback when the file names none. */
  type?: string;
  env?: NodeJS.ProcessEnv;
}

export interface Target {
  container: ContainerSpec;
  component: ComponentSpec;
}

/** Resolves the container alone (for commands that need no component). */
export async function resolveContainer(args: TargetArguments): Promise<ContainerSpec> {
  const env = args.env ?? process.env;
  if (args.container !== undefined && typeof args.container === 'object') {
    return containerFromProperties(args.container.properties, args.container.name);
  }
  if (args.environment) return containerFromEnvironment(args.type, args.container, env);
  if (args.container === undefined || args.container === '') {
    throw new UsageError('no container given: use --container FILE, or --environment with --type TYPE');
  }
  const file = await findContainerFile(args.container, env);
  return loadContainerFile(file, env, args.type);
}

/** Resolves both the container and the component. */
export async function resolveTarget(args: TargetArguments): Promise<Target> {
  if (args.component === undefined || args.component === '') {
    throw new UsageError('no component given: use --component PATH or --component NAME');
  }
  const container = await resolveContainer(args);
  const component = await resolveComponent(args.component, container.name, args.env ?? process.env);
  return { container, component };
}
