/**
 * The options every library call shares, and how they become a resolved target for the core.
 */
import path from 'node:path';
import type { ContainerProperties } from '../core/container-file.js';
import type { OperationRequest } from '../core/dispatcher.js';
import type { Logger } from '../core/log.js';
import type { AnyPlugin, Operation, ProgressEvent as CoreProgressEvent } from '../core/plugin.js';
import type { ContainerSpec } from '../core/resolve.js';
import { defaultStateDir } from '../core/state-dir.js';
import { UsageError } from '../core/errors.js';
import { resolveContainer, resolveTarget } from '../core/target.js';

/** A container given by properties, optionally with the name used in state-dir paths (default: its type). */
export interface NamedContainer {
  properties: ContainerProperties;
  name?: string;
}

/**
 * A container: a container file path (`/etc/...`, `./...`), a name searched in
 * DYSNOMIA_CONTAINERS_PATH, an object of properties (`{ type: 'mysql-database', ... }`), or
 * `{ properties, name }` to choose the name used in the state dir.
 */
export type ContainerInput = string | ContainerProperties | NamedContainer;

/** A progress report; `operation` is `migrate` for the transfer steps of {@link migrate}. */
export interface ProgressEvent extends Omit<CoreProgressEvent, 'operation'> {
  operation: Operation | 'migrate';
}

/** Settings shared by every call that touches a state dir. */
export interface CommonOptions {
  /** The state dir; default DYSNOMIA_STATEDIR, else /var/state/dysnomia as root, else ~/.dysnomia. */
  stateDir?: string;
  /** Cancels the call; an aborted snapshot leaves no partial snapshot, an aborted restore no change. */
  signal?: AbortSignal;
  /** Receives progress reports (bytes processed, stage). */
  onProgress?: (event: ProgressEvent) => void;
  /** Give up waiting for a lock after this many milliseconds (default: wait). */
  lockTimeoutMs?: number;
  /** Where diagnostics go (default: nowhere). */
  log?: Logger;
  /** Environment for search paths and plugins (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Human output of plugins such as echo and external modules (default: process.stdout). */
  print?: (text: string) => void;
}

/** What a single-component operation needs. */
export interface ComponentOptions extends CommonOptions {
  container: ContainerInput;
  /** The component: a directory path, or a name searched in DYSNOMIA_COMPONENTS_PATH/<container>/. */
  component: string;
  /** Your own plugin for this call, instead of the one the container's type names. */
  plugin?: AnyPlugin;
}

/** True for `{ properties: {...}, name? }`; a plain properties object never has an object value. */
function isNamedContainer(input: ContainerProperties | NamedContainer): input is NamedContainer {
  const properties = (input as { properties?: unknown }).properties;
  return typeof properties === 'object' && properties !== null && !Array.isArray(properties);
}

/** Turns a ContainerInput into the core's TargetArguments form. */
export function containerArgument(input: ContainerInput): string | NamedContainer {
  if (typeof input === 'string') return input;
  return isNamedContainer(input) ? input : { properties: input };
}

/** The state dir the options name, or the default. */
export function stateDirOf(options: CommonOptions): string {
  if (options.stateDir === undefined) return defaultStateDir(options.env ?? process.env);
  // An empty string (an unset variable passed on) would be the working directory: the store's
  // folders would land wherever the caller happens to run.
  if (typeof options.stateDir !== 'string' || options.stateDir.trim() === '') {
    throw new UsageError(`stateDir ${JSON.stringify(options.stateDir)} is not a folder path; leave it out for the default (DYSNOMIA_STATEDIR, else /var/state/dysnomia as root, else ~/.dysnomia)`);
  }
  return path.resolve(options.stateDir);
}

/** Resolves a ContainerInput to a container spec. */
export function toContainerSpec(input: ContainerInput, env?: NodeJS.ProcessEnv): Promise<ContainerSpec> {
  return resolveContainer({ container: containerArgument(input), env });
}

/** Resolves the options of a component call into a dispatcher request. */
export async function toRequest(operation: Operation, options: ComponentOptions): Promise<OperationRequest> {
  const target = await resolveTarget({
    container: containerArgument(options.container),
    component: options.component,
    env: options.env,
  });
  return { operation, ...target, ...requestSettings(options), plugin: options.plugin };
}

/** The non-target part of a dispatcher request. */
export function requestSettings(
  options: CommonOptions,
): Omit<OperationRequest, 'operation' | 'container' | 'component'> {
  return {
    stateDir: stateDirOf(options),
    log: options.log,
    signal: options.signal,
    onProgress: options.onProgress,
    lockTimeoutMs: options.lockTimeoutMs,
    env: options.env,
    print: options.print,
  };
}
