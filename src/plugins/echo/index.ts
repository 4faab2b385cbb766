/**
 * `echo`: prints what it is asked to do, for debugging container files and deployments. It keeps
 * no state, so snapshot writes nothing and restore has nothing to read.
 */
import type { ContainerProperties } from '../../core/container-file.js';
import type { Plugin, PluginContext } from '../../core/plugin.js';

/** Names whose values echo never prints. */
const SECRET = /pass(word)?|secret|token|key/i;

function describe(ctx: PluginContext<ContainerProperties>): string {
  const lines = [
    `echo: ${ctx.operation} ${ctx.component.path}`,
    `  component: ${ctx.component.name}`,
    `  container: ${ctx.container.name}${ctx.container.file ? ` (${ctx.container.file})` : ' (from the environment)'}`,
  ];
  // With --environment every environment variable is a property; list only the type then.
  const properties = ctx.container.fromEnvironment ? { type: ctx.container.type } : ctx.options;
  for (const [key, value] of Object.entries(properties).sort(([a], [b]) => a.localeCompare(b))) {
    const shown = SECRET.test(key) ? '(hidden)' : Array.isArray(value) ? `(${value.join(' ')})` : value;
    lines.push(`  ${key}=${shown}`);
  }
  return `${lines.join('\n')}\n`;
}

const echo: Plugin<ContainerProperties> = {
  type: 'echo',
  parseOptions: (properties) => properties,
  activate: async (ctx) => ctx.print(describe(ctx)),
  deactivate: async (ctx) => ctx.print(describe(ctx)),
  lock: async (ctx) => ctx.print(describe(ctx)),
  unlock: async (ctx) => ctx.print(describe(ctx)),
  snapshot: async (ctx) => ctx.print(describe(ctx)),
  restore: async (ctx, source) => ctx.print(`${describe(ctx)}  snapshot: ${source.identity}\n`),
  collectGarbage: async (ctx) => ctx.print(describe(ctx)),
  shell: async (ctx) => ({ help: [describe(ctx).trimEnd()] }),
};

export default echo;
