/**
 * Human-readable reports of machine-wide actions: the per-component table the CLI prints at the
 * end of every action, and the list of failures.
 */
import { DysnomiaError, messageOf } from '../core/errors.js';
import type { BatchResult, ComponentOutcome } from './batch.js';

/** Bytes as a short human figure: `512 B`, `1.5 KiB`, `23.4 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${Math.round(value)} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** A snapshot identity shortened for a table (the full one is in `--json`). */
function shortIdentity(identity: string | undefined): string {
  if (identity === undefined) return '-';
  return identity.length > 16 ? identity.slice(0, 12) : identity;
}

function row(outcome: ComponentOutcome): string[] {
  const result = outcome.result;
  return [
    `${outcome.container}/${outcome.component}`,
    outcome.status === 'failed' ? 'FAILED' : outcome.status,
    shortIdentity(result?.snapshot?.identity),
    result === undefined ? '-' : formatBytes(result.bytesStored),
    (outcome.durationMs / 1000).toFixed(2),
  ];
}

/**
 * The table printed at the end of an action: component, result, snapshot id, bytes stored,
 * seconds. Empty string when there were no components.
 */
export function formatOutcomeTable(outcomes: readonly ComponentOutcome[]): string {
  if (outcomes.length === 0) return '';
  const rows = [['COMPONENT', 'RESULT', 'SNAPSHOT', 'STORED', 'SECONDS'], ...outcomes.map(row)];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((r) => r[column]!.length)));
  const numeric = [false, false, false, true, true];
  return rows
    .map((r) =>
      r
        .map((cell, column) => (numeric[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** One line per failed or cancelled component, with the plugin and the reason. */
export function formatFailures(result: BatchResult): string[] {
  return result.failures.map((outcome) => {
    const error = outcome.error;
    const plugin = error instanceof DysnomiaError && error.plugin ? `[${error.plugin}] ` : '';
    return `${outcome.operation} of ${outcome.container}/${outcome.component} ${outcome.status}: ${plugin}${messageOf(error)}`;
  });
}

/** A failure as plain data for `--json`. */
export interface ErrorJson {
  name: string;
  message: string;
  plugin?: string;
}

/** A component outcome as plain data for `--json`. */
export interface OutcomeJson extends Omit<ComponentOutcome, 'error'> {
  error?: ErrorJson;
}

/** The outcomes of an action as plain data (errors reduced to name, message and plugin). */
export function outcomesToJson(outcomes: readonly ComponentOutcome[]): OutcomeJson[] {
  return outcomes.map(({ error, ...rest }) => {
    if (error === undefined) return rest;
    const json: ErrorJson = {
      name: error instanceof Error ? error.name : 'Error',
      message: messageOf(error),
    };
    if (error instanceof DysnomiaError && error.plugin) json.plugin = error.plugin;
    return { ...rest, error: json };
  });
}
