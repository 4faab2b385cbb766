/**
 * The machine description of `dysnomia-containers --generate-expr`: machine properties from
 * DYSNOMIA_PROPERTIES and every container's properties, as a Nix expression (for Disnix's
 * infrastructure model) or as JSON.
 */
import { readFile } from 'node:fs/promises';
import {
  type ContainerProperties,
  type PropertyValue,
  parseContainerText,
  readContainerFile,
} from '../core/container-file.js';
import { ConfigError } from '../core/errors.js';
import { type AvailableComponent, listContainers, type QueryOptions } from './queries.js';

const DEFAULT_PROPERTIES_FILE = '/etc/dysnomia/properties';

/** What `--generate-expr` describes. */
export interface MachineDescription {
  /** Machine-level properties (empty when the properties file does not exist). */
  properties: ContainerProperties;
  /** Each container's properties by container name, without `type` (as Dysnomia prints them). */
  containers: Record<string, ContainerProperties>;
  /** The `system` property, repeated at the top level as Disnix expects it, when it is set. */
  system?: PropertyValue;
}

/** The machine properties file: `DYSNOMIA_PROPERTIES`, default /etc/dysnomia/properties. */
export function propertiesFile(env: NodeJS.ProcessEnv = process.env): string {
  return env.DYSNOMIA_PROPERTIES || DEFAULT_PROPERTIES_FILE;
}

/** Reads the machine properties, parsed like a container file; a missing file gives `{}`. */
export async function readMachineProperties(env: NodeJS.ProcessEnv = process.env): Promise<ContainerProperties> {
  const file = propertiesFile(env);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return {};
    throw new ConfigError(`cannot read the machine properties file (${code ?? String(error)})`, {
      file,
      cause: error,
    });
  }
  return parseContainerText(text, file);
}

/** Describes this machine: its properties and the properties of every container file. */
export async function describeMachine(options: Omit<QueryOptions, 'container'> = {}): Promise<MachineDescription> {
  const properties = await readMachineProperties(options.env);
  const containers: Record<string, ContainerProperties> = {};
  for (const entry of await listContainers(options)) {
    const { type: _type, ...rest } = await readContainerFile(entry.file);
    containers[entry.name] = rest;
  }
  const description: MachineDescription = { properties, containers };
  if (properties.system !== undefined) description.system = properties.system;
  return description;
}

const NIX_KEYWORDS = new Set(['if', 'then', 'else', 'assert', 'with', 'let', 'in', 'rec', 'inherit', 'or']);

/** A Nix attribute name: bare when it is a plain identifier, else a quoted string. */
function nixName(name: string): string {
  return /^[A-Za-z_][A-Za-z0-9_'-]*$/.test(name) && !NIX_KEYWORDS.has(name) ? name : nixString(name);
}

/** A Nix double-quoted string; `$` is always escaped so nothing is ever interpolated. */
export function nixString(value: string): string {
  const escaped = value.replace(/[\\"$\n\r\t]/g, (c) => {
    switch (c) {
      case '\n':
        return '\\n';
      case '\r':
        return '\\r';
      case '\t':
        return '\\t';
      default:
        return `\\${c}`;
    }
  });
  return `"${escaped}"`;
}

function nixValue(value: PropertyValue): string {
  return Array.isArray(value) ? `[ ${value.map((item) => `${nixString(item)} `).join('')}]` : nixString(value);
}

function nixAttributes(properties: ContainerProperties, indent: string): string[] {
  return Object.entries(properties).map(([key, value]) => `${indent}${nixString(key)} = ${nixValue(value)};`);
}

/**
 * The description as Dysnomia's Nix expression:
 * `{ properties = { ... }; containers = { name = { ... }; }; system = "..."; }`.
 */
export function toNixExpression(description: MachineDescription): string {
  const lines = ['{', '  properties = {', ...nixAttributes(description.properties, '    '), '  };'];
  lines.push('  containers = {');
  for (const [name, properties] of Object.entries(description.containers)) {
    lines.push(`    ${nixName(name)} = {`, ...nixAttributes(properties, '      '), '    };');
  }
  lines.push('  };');
  if (description.system !== undefined) lines.push(`  system = ${nixValue(description.system)};`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/** `--generate-dot`: a Graphviz graph with a cluster per container holding its components. */
export function toDotGraph(components: readonly AvailableComponent[]): string {
  const quote = (text: string) => JSON.stringify(text);
  const lines = ['digraph G {'];
  for (const name of [...new Set(components.map((c) => c.container))]) {
    lines.push(`  subgraph ${quote(`cluster_${name}`)} {`, '    style=filled;', `    label=${quote(name)};`);
    lines.push('    fillcolor=grey;', '    node [style=filled,fillcolor=white,color=black];');
    for (const c of components.filter((c) => c.container === name)) {
      lines.push(`    ${quote(`${c.container}/${c.component}`)} [label=${quote(c.component)}];`);
    }
    lines.push('  }');
  }
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
