/**
 * What the SQL plugins do when a restore or an activation fails before its swap: only the staging
 * database was touched, so the live one is as it was, and the message must say so.
 */
import { DysnomiaError, messageOf, OperationError } from '../../core/errors.js';
import type { Logger } from '../../core/log.js';

/**
 * Drops the staging database after a failure. A drop that fails too (the connection that broke the
 * load is gone) is a warning, not the error: the first error is what the user must see, and the
 * next restore, activate or collect-garbage of the component drops the leftover.
 */
export async function dropStagingAfterFailure(drop: () => Promise<void>, staging: string, log: Logger): Promise<void> {
  try {
    await drop();
  } catch (error) {
    log.warn(`could not drop ${staging} (${messageOf(error)}); the next restore, activate or collect-garbage of this component drops it`);
  }
}

/**
 * The error of a restore that stopped before its swap, saying that the live database is unchanged.
 * A driver's own error (a lost connection) becomes an OperationError, so it is reported as what
 * happened and not as "an unexpected error".
 */
export function unchanged(error: unknown, live: string, plugin: string): unknown {
  const note = `The live database ${live} is unchanged: the restore stopped before the swap.`;
  if (error instanceof DysnomiaError) {
    error.message += `\n${note}`;
    return error;
  }
  return new OperationError(`the restore failed: ${messageOf(error)}\n${note}`, { plugin, cause: error });
}

/**
 * The error of an activation whose initial scripts did not load. A cancelled one (Ctrl-C, SIGTERM)
 * was not the script's fault: "fix the script" would send the user looking for an error there is not.
 */
export function notCreated(error: unknown, live: string, plugin: string, signal: AbortSignal | undefined): OperationError {
  const next = signal?.aborted ? 'activate again to create it' : 'fix the script and activate again';
  return new OperationError(`cannot create database ${live}: ${messageOf(error)}\nNothing was created; ${next}.`, { plugin, cause: error });
}
