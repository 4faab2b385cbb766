/**
 * `external`: runs an executable that speaks Dysnomia's module protocol, so every existing
 * Dysnomia module keeps working:
 *
 *   <module> <operation> <component path> <container name>
 *
 * with the container properties and DYSNOMIA_STATEDIR in its environment. With a container file
 * the environment is only those properties plus PATH (Dysnomia runs `env -i`); with --environment
 * it is the whole environment. Output is passed through; the exit status decides.
 */
import path from 'node:path';
import { execa } from 'execa';
import { propertyString } from '../../core/container-file.js';
import { PluginError } from '../../core/errors.js';
import type { PassThroughPlugin, PluginContext } from '../../core/plugin.js';

/** The module's environment. Arrays are joined with spaces, as Dysnomia passes them. */
function moduleEnvironment(ctx: PluginContext<unknown>): Record<string, string> {
  const env: Record<string, string> = {};
  // With --environment the properties are the caller's whole environment.
  for (const [key, value] of Object.entries(ctx.container.properties)) {
    if (key !== 'type') env[key] = propertyString(value) ?? '';
  }
  if (!ctx.container.fromEnvironment) env.PATH = process.env.PATH ?? '/usr/bin:/bin';
  env.DYSNOMIA_STATEDIR = ctx.stateDir;
  return env;
}

/** Quotes a word for bash. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A plugin that runs the executable at `modulePath` for every operation. */
export function externalPlugin(modulePath: string): PassThroughPlugin {
  const type = path.basename(modulePath);
  return {
    type,
    passThrough: true,
    modulePath,
    async run(ctx) {
      const what = `module ${modulePath} (${ctx.operation} of ${ctx.component.name})`;
      const subprocess = execa(modulePath, [ctx.operation, ctx.component.path, ctx.container.name], {
        env: moduleEnvironment(ctx),
        extendEnv: false,
        stdin: 'ignore',
        buffer: false,
        reject: false,
        cancelSignal: ctx.signal,
      });
      // Decode as a stream so a character split across two reads stays whole.
      subprocess.stdout?.setEncoding('utf8');
      subprocess.stdout?.on('data', (text: string) => ctx.print(text));
      subprocess.stderr?.on('data', (data: Buffer) => process.stderr.write(data));
      const result = await subprocess;
      if (result.isCanceled) {
        throw new PluginError(`${what} was cancelled`, { plugin: type });
      }
      if (result.signal !== undefined) {
        throw new PluginError(`${what} was killed by ${result.signal}`, { plugin: type });
      }
      if (result.exitCode === undefined) {
        throw new PluginError(`cannot run ${what}; check its first line (#!) and that it is a program`, {
          plugin: type,
          cause: result.cause,
          stderr: result.originalMessage,
        });
      }
      if (result.exitCode !== 0) {
        throw new PluginError(
          `${what} failed with exit status ${result.exitCode} (its own messages, if any, are above)`,
          { plugin: type },
        );
      }
    },
    // Dysnomia sources the module with `shell` inside the session, so what it exports is there.
    async shell(ctx) {
      const args = ['shell', ctx.component.path, ctx.container.name].map(shellQuote).join(' ');
      return {
        help: [],
        module: modulePath,
        rc: `source ${shellQuote(modulePath)} ${args}\nset +e +o pipefail`,
      };
    },
  };
}
