/**
 * The database names of a component: the live database is named after the component; a restore
 * or an activation builds the new content in a staging database beside it, and a MariaDB swap
 * parks the old tables in an "old" database until they are dropped. Leftovers of a killed run are
 * recognisable by these suffixes and are cleaned up by the next activate, restore or
 * collect-garbage of the component.
 */
import { ConfigError } from '../../core/errors.js';

/** Suffix of the database a restore or an activation loads into before the swap. */
export const STAGING_SUFFIX = '__dys_new';
/** Suffix of the database holding the replaced data until it is dropped. */
export const OLD_SUFFIX = '__dys_old';

/** The live database and its helpers, all valid identifiers. */
export interface DatabaseNames {
  live: string;
  staging: string;
  old: string;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;

/**
 * The database names for a component, after checking that its name is a plain identifier.
 * Anything else (spaces, quotes, `;`, a name ending in one of our suffixes) is a configuration
 * error, raised before any connection is made. `maxLength` is the server's identifier limit.
 */
export function databaseNames(component: string, plugin: string, maxLength: number): DatabaseNames {
  const longest = maxLength - Math.max(STAGING_SUFFIX.length, OLD_SUFFIX.length);
  if (!NAME.test(component) || component.length > longest) {
    throw new ConfigError(
      `the component name ${JSON.stringify(component)} cannot be a database name: the database is named after the component, so use ASCII letters (a-z, A-Z), digits, _ and - only (not starting with -), at most ${longest} characters`,
      { plugin },
    );
  }
  if (component.includes('__dys_')) {
    throw new ConfigError(
      `the component name ${JSON.stringify(component)} contains "__dys_", which dysnomia reserves for its staging databases; rename the component`,
      { plugin },
    );
  }
  return { live: component, staging: component + STAGING_SUFFIX, old: component + OLD_SUFFIX };
}

/** The error of an activation that found the database made by someone else while it loaded. */
export function appeared(live: string): string {
  return `database ${live} appeared on the server while activate was loading the scripts (someone else created it); it was left as it is, and the copy activate had made was dropped. Activate again to use it as the component's database`;
}

/** The operations whose code names the component's database (the others never reach it). */
const NAMED_OPERATIONS: ReadonlySet<string> = new Set(['activate', 'snapshot', 'restore', 'collect-garbage']);

/**
 * The SQL plugins' checkComponent: a component name that cannot be a database is refused before
 * the component is locked, for the operations that would refuse it anyway.
 */
export function checkDatabaseName(operation: string, component: string, plugin: string, maxLength: number): void {
  if (NAMED_OPERATIONS.has(operation)) databaseNames(component, plugin, maxLength);
}
