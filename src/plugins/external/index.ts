/**
 * `external`: runs an executable that speaks Dysnomia's module protocol, so every existing
 * Dysnomia module keeps working:
 *
 *   <module> <operation> <component path> <container name>
 *
 * with the container properties and DYSNOMIA_STATEDIR in its environment. With a container file
 * the environment is only those properties plus PATH (Dysnomia runs `env -i`); with --environment
 * it is the whole current environment. Output is passed through; the exit status decides.
 */
import path from 'node:path';
import { execa } from 'execa';
import { propertyString } from '../../core/container-file.js';
import { PluginError } from '../../core/errors.js';
import type { PassThroughPlugin, PluginContext } from '../../core/plugin.js';

function moduleEnvironment(ctx: PluginContext<unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  if (ctx.container.fromEnvironment) {
    for (const [key, value] of Object.entries(process.env)) if (value !== undefined) env[key] = value;
  } else {
    for (const [key, value] of Object.entries(ctx.container.properties)) {
      if (key !== 'type') env[key] = propertyString(value) ?? '';
    }
    env.PATH = process.env.PATH ?? '/usr/bin:/bin';
  }
  env.DYSNOMIA_STATEDIR = ctx.stateDir;
  return env;
}

/** A plugin that runs the executable at `modulePath` for every operation. */
export function externalPlugin(modulePath: string): PassThroughPlugin {
  return {
    type: path.basename(modulePath),
    passThrough: true,
    async run(ctx) {
      const subprocess = execa(modulePath, [ctx.operation, ctx.component.path, ctx.container.name], {
        env: moduleEnvironment(ctx),
        extendEnv: false,
        stdin: 'ignore',
        buffer: false,
        reject: false,
        cancelSignal: ctx.signal,
      });
      subprocess.stdout?.on('data', (data: Buffer) => ctx.print(data.toString()));
      subprocess.stderr?.on('data', (data: Buffer) => process.stderr.write(data));
      const result = await subprocess;
      if (result.isCanceled) {
        throw new PluginError(`module ${modulePath} was cancelled during ${ctx.operation}`, {
          plugin: this.type,
        });
      }
      if (result.exitCode === undefined) {
        throw new PluginError(`cannot run module ${modulePath}`, {
          plugin: this.type,
          cause: result.cause,
          stderr: result.originalMessage,
        });
      }
      if (result.exitCode !== 0) {
        throw new PluginError(
          `module ${modulePath} failed during ${ctx.operation} of ${ctx.component.name} (exit status ${result.exitCode})`,
          { plugin: this.type },
        );
      }
    },
  };
}
