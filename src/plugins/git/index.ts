/** `git-repository`: placeholder until its issue lands. */
import { OperationError } from '../../core/errors.js';
import type { Plugin } from '../../core/plugin.js';

const notYet = async (): Promise<never> => {
  throw new OperationError('the git-repository plugin is not implemented yet', { plugin: 'git-repository' });
};

const plugin: Plugin<Record<string, unknown>> = {
  type: 'git-repository',
  parseOptions: (properties) => properties,
  activate: notYet,
  snapshot: notYet,
  restore: notYet,
  collectGarbage: notYet,
};

export default plugin;
