/**
 * A throw-away "machine" for dysnomia-containers tests: a containers folder, a components tree
 * (<components>/<container>/<component>/), a state dir and the environment naming them.
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { useTempDir } from './temp.js';

export interface Machine {
  root: string;
  containersDir: string;
  componentsDir: string;
  stateDir: string;
  /** DYSNOMIA_CONTAINERS_PATH, DYSNOMIA_COMPONENTS_PATH, DYSNOMIA_STATEDIR, DYSNOMIA_PROPERTIES. */
  env: Record<string, string>;
  /** Writes a container file; returns its path. */
  addContainer(name: string, properties: Record<string, string | string[]>): Promise<string>;
  /** Creates a component folder (with optional files); returns its path. */
  addComponent(container: string, component: string, files?: Record<string, string>): Promise<string>;
  /** Removes a component folder from the tree. */
  removeComponent(container: string, component: string): Promise<void>;
}

/** Quotes a value for a container file (single quotes, as a shell would read it). */
export function quoteProperty(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}

/** The text of a container file with these properties. */
export function containerText(properties: Record<string, string | string[]>): string {
  return Object.entries(properties)
    .map(([key, value]) =>
      Array.isArray(value) ? `${key}=(${value.map(quoteProperty).join(' ')})` : `${key}=${quoteProperty(value)}`,
    )
    .join('\n')
    .concat('\n');
}

/** A new machine in a temporary folder removed after the test. Call inside a test. */
export async function useMachine(): Promise<Machine> {
  const root = await useTempDir('dysnomia-machine-');
  const containersDir = path.join(root, 'containers');
  const componentsDir = path.join(root, 'components');
  const stateDir = path.join(root, 'state');
  await mkdir(containersDir, { recursive: true });
  await mkdir(componentsDir, { recursive: true });
  return {
    root,
    containersDir,
    componentsDir,
    stateDir,
    env: {
      DYSNOMIA_CONTAINERS_PATH: containersDir,
      DYSNOMIA_COMPONENTS_PATH: componentsDir,
      DYSNOMIA_STATEDIR: stateDir,
      DYSNOMIA_PROPERTIES: path.join(root, 'properties'),
    },
    async addContainer(name, properties) {
      const file = path.join(containersDir, name);
      await writeFile(file, containerText(properties));
      return file;
    },
    async addComponent(container, component, files = { 'README': `${component}\n` }) {
      const dir = path.join(componentsDir, container, component);
      await mkdir(dir, { recursive: true });
      for (const [name, content] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
        await writeFile(path.join(dir, name), content);
      }
      return dir;
    },
    async removeComponent(container, component) {
      await rm(path.join(componentsDir, container, component), { recursive: true, force: true });
    },
  };
}

/**
 * Writes a Dysnomia-protocol module named `dir-copy` into `dir` (for DYSNOMIA_MODULES_PATH): a
 * component is a real folder copied into the container's `targetDir` on activate, and removed on
 * collect-garbage. Operations are appended to `$targetDir/.log`. A component holding a file
 * named `fail-<operation>` makes that operation fail.
 */
export async function writeDirCopyModule(dir: string): Promise<string> {
  const file = path.join(dir, 'dir-copy');
  await mkdir(dir, { recursive: true });
  await writeFile(
    file,
    `#!/bin/sh
set -e
operation="$1"; component="$2"; container="$3"
name="$(basename "$component")"
mkdir -p "$targetDir"
echo "$operation $container/$name" >> "$targetDir/.log"
if [ -e "$component/fail-$operation" ]; then echo "dir-copy: $operation of $name refused" >&2; exit 3; fi
case "$operation" in
  activate) [ -e "$targetDir/$name" ] || cp -R "$component" "$targetDir/$name" ;;
  collect-garbage) rm -rf "$targetDir/$name" ;;
esac
`,
    { mode: 0o755 },
  );
  return file;
}
