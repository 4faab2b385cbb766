/**
 * The lifecycle suite every plugin runs (ARCHITECTURE "Tests"), through the real CLI:
 * activate, activate again (no-op), snapshot, snapshot again (no new generation), change,
 * snapshot (new generation), deactivate, collect-garbage (removed), activate, restore (the change
 * is back).
 */
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './cli.js';
import { useTempDir } from './temp.js';

export interface LifecycleFixture {
  /** Container properties (type included) reaching the real server or directory. */
  properties: Record<string, string>;
  /** Path of the component directory (its basename is the component name). */
  componentPath: string;
  /** Whether the component currently exists in the container. */
  exists(): Promise<boolean>;
  /** A fingerprint of the component's content, equal for equal states. */
  state(): Promise<string>;
  /** Changes the component's content. */
  change(): Promise<void>;
  /** Removes whatever the test left in the container. */
  cleanup(): Promise<void>;
}

export interface LifecycleOptions {
  /** Prepares a fresh component (unique name) for one test run. */
  setup(): Promise<LifecycleFixture>;
}

function containerText(properties: Record<string, string>): string {
  return Object.entries(properties)
    .map(([key, value]) => `${key}='${value.replaceAll("'", "'\\''")}'`)
    .join('\n');
}

/** Declares the lifecycle suite for one plugin type. */
export function lifecycleSuite(type: string, options: LifecycleOptions): void {
  describe(`${type}: shared lifecycle`, () => {
    it('activates, snapshots, changes, collects and restores', async () => {
      const fixture = await options.setup();
      try {
        const dir = await useTempDir();
        const stateDir = path.join(dir, 'state');
        const containerFile = path.join(dir, `${type}-container`);
        await writeFile(containerFile, `${containerText(fixture.properties)}\n`);
        const env = { DYSNOMIA_STATEDIR: stateDir };
        const componentName = path.basename(fixture.componentPath);
        const containerName = path.basename(containerFile);
        const op = (operation: string) =>
          runCli('dysnomia', ['--operation', operation, '--component', fixture.componentPath, '--container', containerFile], { env });
        const ok = async (operation: string) => {
          const result = await op(operation);
          expect(result.exitCode, `${operation} failed:\n${result.stderr}`).toBe(0);
          return result;
        };
        const generations = async () => {
          try {
            return (await readdir(path.join(stateDir, 'generations', containerName, componentName))).sort(
              (a, b) => Number(a) - Number(b),
            );
          } catch {
            return [];
          }
        };

        expect(await fixture.exists()).toBe(false);
        await ok('activate');
        expect(await fixture.exists()).toBe(true);
        const initial = await fixture.state();

        await ok('activate');
        expect(await fixture.state()).toBe(initial);

        await ok('snapshot');
        expect(await generations()).toEqual(['1']);
        await ok('snapshot');
        expect(await generations()).toEqual(['1']);

        await fixture.change();
        const changed = await fixture.state();
        expect(changed).not.toBe(initial);
        await ok('snapshot');
        expect(await generations()).toEqual(['1', '2']);

        await ok('deactivate');
        expect(await fixture.exists()).toBe(true);
        await ok('collect-garbage');
        expect(await fixture.exists()).toBe(false);

        await ok('activate');
        expect(await fixture.state()).toBe(initial);
        await ok('restore');
        expect(await fixture.state()).toBe(changed);

        const check = await runCli('dysnomia-snapshots', ['--query-all', '--check'], { env });
        expect(check.exitCode, check.stderr).toBe(0);
      } finally {
        await fixture.cleanup();
      }
    });
  });
}
