/** Container properties of `git-repository`: where the repositories live and who may write them. */
import path from 'node:path';
import { type ContainerProperties, scalarProperty } from '../../core/container-file.js';
import { ConfigError } from '../../core/errors.js';

export const PLUGIN_TYPE = 'git-repository';

/** The validated container properties. */
export interface GitRepositoryOptions {
  /** `gitBaseDir`: absolute path of the folder holding one bare repository per component. */
  baseDir: string;
  /** `gitGroup`: the group that owns the repositories and may write them (as Dysnomia's svnGroup). */
  group?: string;
  /** The container file the properties came from, for error messages. */
  file?: string;
}

/** The properties parseGitOptions reads (see Plugin.properties). */
export const PROPERTIES = ['gitBaseDir', 'gitGroup'] as const;

/** A group name as `groupadd` accepts it, or a numeric group id. */
const GROUP = /^(?:[0-9]+|[A-Za-z_][A-Za-z0-9_.-]*\$?)$/;

/** Validates `gitBaseDir` and `gitGroup`; a ConfigError names the file and the key. */
export function parseGitOptions(properties: ContainerProperties, file?: string): GitRepositoryOptions {
  const baseDir = scalarProperty(properties, 'gitBaseDir', file, PLUGIN_TYPE);
  if (baseDir === undefined || baseDir.trim() === '') {
    throw new ConfigError(
      'missing: set gitBaseDir to the folder that holds the repositories (e.g. gitBaseDir=/srv/git)',
      { file, key: 'gitBaseDir', plugin: PLUGIN_TYPE },
    );
  }
  if (!path.isAbsolute(baseDir)) {
    throw new ConfigError(`${JSON.stringify(baseDir)} is not an absolute path; give the full path, e.g. /srv/git`, {
      file,
      key: 'gitBaseDir',
      plugin: PLUGIN_TYPE,
    });
  }
  const group = scalarProperty(properties, 'gitGroup', file, PLUGIN_TYPE)?.trim();
  if (group !== undefined && group !== '' && !GROUP.test(group)) {
    throw new ConfigError(`${JSON.stringify(group)} is not a group name or number`, {
      file,
      key: 'gitGroup',
      plugin: PLUGIN_TYPE,
    });
  }
  return {
    baseDir: path.normalize(baseDir),
    group: group === '' ? undefined : group,
    file,
  };
}
