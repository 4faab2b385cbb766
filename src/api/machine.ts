/**
 * The machine description of `dysnomia-containers --generate-expr`: machine properties from
 * DYSNOMIA_PROPERTIES and every container's properties, as a Nix expression (for Disnix's
 * infrastructure model) or as JSON.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { type ContainerProperties, type PropertyValue, readContainerFile } from '../core/container-file.js';
import { ConfigError } from '../core/errors.js';
import type { Logger } from '../core/log.js';
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

/** Seconds the properties file may take to evaluate (its `$(...)` commands included). */
const PROPERTIES_TIMEOUT_SECONDS = 30;

/**
 * Prints, for each name given, the variable the sourced file left: `s NAME VALUE` or
 * `a NAME COUNT VALUE...`, every field NUL-terminated, then `end`. A syntax error stops it first
 * (`bash -n`); a command of the file that fails does not (its value is then empty, as in Dysnomia).
 * What the file prints goes to stderr. The script's own variables have names no property would use.
 *
 * Dysnomia evaluates each line of the file on its own, in a subshell, so an `exit` (or a `return`)
 * there ends only its line. Sourced whole, it would end the evaluation, and every property after
 * it, or all of them, would be lost: the DEBUG trap skips it (extdebug skips a command whose trap
 * returns non-zero) and says so, naming the line. Anything else that ends the shell early (`exec
 * CMD`) leaves no `end`, which is an error, not an empty set of properties.
 */
const PRINT_PROPERTIES = `
bash -n "$1" || exit 2
__dysnomia_file=$1
shift
__dysnomia_guard() {
  (( BASH_SUBSHELL == 0 )) && [[ \${BASH_SOURCE[1]-} == "$__dysnomia_file" ]] || return 0
  # The file's set -e, off while a skipped command's status (the trap's) was checked, is back.
  [[ -n \${__dysnomia_errexit-} ]] && { set -e; __dysnomia_errexit=; }
  local prefix='^((builtin|command)[[:space:]]+)?'
  if [[ $BASH_COMMAND =~ \${prefix}exit([[:space:]]|$) ]] ||
    { [[ \${FUNCNAME[1]-} == source ]] && [[ $BASH_COMMAND =~ \${prefix}return([[:space:]]|$) ]]; }; then
    printf 'line %s: "%s" skipped; the lines after it are read too, as Dysnomia evaluates each line on its own\\n' "\${BASH_LINENO[0]}" "$BASH_COMMAND" >&2
    [[ $- == *e* ]] && { set +e; __dysnomia_errexit=1; }
    return 1
  fi
  local command="\${prefix}exec[[:space:]]+(-[acl]+[[:space:]]+)*[^-<>&{[:space:][:digit:]]"
  if [[ $BASH_COMMAND =~ $command ]]; then
    printf 'line %s: "%s" replaces the shell, so the properties cannot be read\\n' "\${BASH_LINENO[0]}" "$BASH_COMMAND" >&2
  fi
  return 0
}
exec {__dysnomia_out}>&1
set -T
shopt -s extdebug
trap __dysnomia_guard DEBUG
source "$__dysnomia_file" >&2
trap - DEBUG
shopt -u extdebug
set +T +e +u
for __dysnomia_name in "$@"; do
  __dysnomia_declaration=$(declare -p "$__dysnomia_name" 2>/dev/null) || continue
  if [[ $__dysnomia_declaration == "declare -a"* ]]; then
    declare -n __dysnomia_values="$__dysnomia_name"
    printf 'a\\0%s\\0%s\\0' "$__dysnomia_name" "\${#__dysnomia_values[@]}" >&"$__dysnomia_out"
    printf '%s\\0' "\${__dysnomia_values[@]}" >&"$__dysnomia_out"
    unset -n __dysnomia_values
  else
    printf 's\\0%s\\0%s\\0' "$__dysnomia_name" "\${!__dysnomia_name}" >&"$__dysnomia_out"
  fi
done
printf 'end\\0' >&"$__dysnomia_out"
`;

/** The names a properties file assigns, in order: `name=` or `export name=` at the start of a line. */
function assignedNames(text: string): string[] {
  const names: string[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\+?=/.exec(line);
    if (match && !names.includes(match[1]!)) names.push(match[1]!);
  }
  return names;
}

function decodeProperties(output: Buffer, file: string, stderr: string): ContainerProperties {
  const fields = output.toString('utf8').split('\0');
  const properties: ContainerProperties = {};
  let i = 0;
  const next = () => {
    if (i >= fields.length - 1) throw new ConfigError('bash printed the properties in a form that cannot be read', { file });
    return fields[i++]!;
  };
  for (;;) {
    if (i >= fields.length - 1) {
      // No `end`: the shell ended inside the file (`exec CMD`, a kill) with nothing to say so.
      throw new ConfigError(
        `the evaluation of the machine properties file stopped before its end${stderr ? ` (${stderr})` : ''}; a properties file only assigns variables, nothing was printed`,
        { file },
      );
    }
    const kind = next();
    if (kind === 'end') break;
    const name = next();
    if (kind === 'a') {
      const count = Number(next());
      const values: string[] = [];
      for (let k = 0; k < count; k += 1) values.push(next());
      properties[name] = values;
    } else {
      properties[name] = next();
    }
  }
  return properties;
}

/**
 * Reads the machine properties; a missing file gives `{}`. Unlike container files, this file is
 * evaluated by bash, as Dysnomia does: its values may be shell substitutions, and the properties
 * NixOS's dysnomia module and Dysnomia's own tests write use them (`mem="$(grep MemTotal
 * /proc/meminfo | ...)"`, `hostname="$(hostname)"`). Disnix captures a machine's infrastructure
 * with `--generate-expr`, so refusing those would fail the capture of such machines. The
 * variables each assignment line names are read back after the file has run.
 */
export async function readMachineProperties(env: NodeJS.ProcessEnv = process.env, log?: Logger): Promise<ContainerProperties> {
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
  const names = assignedNames(text);
  if (names.length === 0) return {};
  const result = await execa('bash', ['--noprofile', '--norc', '-c', PRINT_PROPERTIES, 'dysnomia-properties', path.resolve(file), ...names], {
    env,
    extendEnv: false,
    stdin: 'ignore',
    encoding: 'buffer',
    reject: false,
    timeout: PROPERTIES_TIMEOUT_SECONDS * 1000,
  });
  const stderr = Buffer.from(result.stderr).toString('utf8').trim();
  if (result.timedOut) {
    throw new ConfigError(`the machine properties file did not finish within ${PROPERTIES_TIMEOUT_SECONDS} s (bash evaluates it, with its $(...) commands); nothing was printed`, { file });
  }
  if (result.failed) {
    const why = result.code === 'ENOENT' ? 'bash was not found' : `bash ${result.exitCode === undefined ? 'failed' : `exited with ${result.exitCode}`}${stderr ? `: ${stderr}` : ''}`;
    throw new ConfigError(`cannot evaluate the machine properties file (${why})`, { file });
  }
  const properties = decodeProperties(Buffer.from(result.stdout), file, stderr);
  // A command of the file that complained (a missing tool in a `$(...)`), or an exit that was
  // skipped, is worth seeing.
  for (const line of stderr.split('\n')) if (line !== '') log?.warn(`${file}: ${line}`);
  return properties;
}

/**
 * Describes this machine: its properties and the properties of every container file (only the
 * one named `container`, when given, as `-C` does; the properties are the machine's either way).
 */
export async function describeMachine(options: QueryOptions = {}): Promise<MachineDescription> {
  const properties = await readMachineProperties(options.env, options.log);
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
