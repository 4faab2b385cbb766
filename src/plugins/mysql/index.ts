/** `mysql-database`: placeholder until its issue lands. */
import { OperationError } from '../../core/errors.js';
import type { Plugin } from '../../core/plugin.js';

const notYet = async (): Promise<never> => {
  throw new OperationError('the mysql-database plugin is not implemented yet', { plugin: 'mysql-database' });
};

const plugin: Plugin<Record<string, unknown>> = {
  type: 'mysql-database',
  parseOptions: (properties) => properties,
  activate: notYet,
  snapshot: notYet,
  restore: notYet,
  collectGarbage: notYet,
};

export default plugin;
