/**
 * `echo`: prints what it is asked to do, for debugging container files and deployments, like
 * Dysnomia's echo module. It keeps no state and never uses the snapshot store, so every operation
 * (snapshot and restore included) reaches it and only prints.
 */
import type { ContainerProperties } from '../../core/container-file.js';
import type { PassThroughPlugin, PluginContext } from '../../core/plugin.js';

/** Names whose values echo never prints. */
const SECRET = /pass(word)?|pwd|secret|token|key|credential/i;

function describe(ctx: PluginContext<unknown>): string {
  const lines = [
    `echo: ${ctx.operation} ${ctx.component.path}`,
    `  component: ${ctx.component.name}`,
    `  container: ${ctx.container.name}${ctx.container.file ? ` (${ctx.container.file})` : ctx.container.fromEnvironment ? ' (from the environment)' : ' (given as properties)'}`,
  ];
  // With --environment every environment variable is a property; list only the type then.
  const properties: ContainerProperties = ctx.container.fromEnvironment
    ? { type: ctx.container.type }
    : ctx.container.properties;
  for (const [key, value] of Object.entries(properties).sort(([a], [b]) => a.localeCompare(b))) {
    const shown = SECRET.test(key) ? '(hidden)' : Array.isArray(value) ? `(${value.join(' ')})` : value;
    lines.push(`  ${key}=${shown}`);
  }
  return `${lines.join('\n')}\n`;
}

const echo: PassThroughPlugin = {
  type: 'echo',
  passThrough: true,
  run: async (ctx) => ctx.print(describe(ctx)),
  shell: async (ctx) => ({ help: [describe(ctx).trimEnd()] }),
};

export default echo;
