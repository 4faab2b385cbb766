/**
 * The progress line of the CLIs: one line on stderr, rewritten in place, showing the stage, the
 * bytes processed and the rate. Shown only when stderr is a terminal; a log file or a cron mail
 * gets no carriage returns and no escape codes.
 */
import { formatBytes } from '../api/report.js';
import type { ProgressEvent } from '../api/options.js';

/** The part of a stream the progress line uses (process.stderr, or a fake terminal in tests). */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

/** How to show progress. */
export interface ProgressLineOptions {
  /** The program name the line starts with. */
  program: string;
  /** Default: process.stderr. */
  stream?: ProgressStream;
  /** Milliseconds clock, for the rate; default performance.now. */
  now?: () => number;
  /** Redraw at most this often, in milliseconds (a new stage is always drawn). Default 100. */
  minIntervalMs?: number;
}

/** A progress line; every method does nothing when the stream is not a terminal. */
export interface ProgressLine {
  /** True when the stream is a terminal and the line is shown. */
  readonly enabled: boolean;
  /** Takes a progress event (pass it as `onProgress`). */
  update(event: ProgressEvent): void;
  /** Writes a log line above the progress line without garbling either. */
  write(text: string): void;
  /** Removes the line (call when the operation ends). */
  clear(): void;
}

const ERASE_LINE = '\r\u001b[K';

/** Creates the progress line for `options.stream` (default stderr). */
export function progressLine(options: ProgressLineOptions): ProgressLine {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  const minInterval = options.minIntervalMs ?? 100;
  const enabled = stream.isTTY === true;
  let shown = '';
  let lastDraw = -Infinity;
  let phase: { key: string; started: number; startBytes: number } | undefined;

  const draw = (text: string) => {
    // A terminal of unknown size (columns 0 or unset) is taken as 80 wide.
    const width = Math.max((stream.columns || 80) - 1, 10);
    shown = text.length > width ? `${text.slice(0, width - 3)}...` : text;
    stream.write(`${ERASE_LINE}${shown}`);
  };

  return {
    enabled,
    update(event) {
      if (!enabled) return;
      const key = `${event.operation} ${event.component} ${event.stage}`;
      const time = now();
      const newPhase = phase?.key !== key;
      if (newPhase) phase = { key, started: time, startBytes: event.bytes };
      if (!newPhase && time - lastDraw < minInterval) return;
      lastDraw = time;
      draw(`${options.program}: ${describe(event, phase!, time)}`);
    },
    write(text) {
      if (!enabled || shown === '') {
        stream.write(text);
        return;
      }
      stream.write(`${ERASE_LINE}${text}`);
      stream.write(shown);
    },
    clear() {
      if (!enabled || shown === '') return;
      stream.write(ERASE_LINE);
      shown = '';
    },
  };
}

function describe(event: ProgressEvent, phase: { started: number; startBytes: number }, time: number): string {
  let text = `${event.operation} ${event.component}: ${event.stage} ${formatBytes(event.bytes)}`;
  if (event.totalBytes !== undefined && event.totalBytes > 0) {
    const percent = Math.min(100, Math.floor((event.bytes / event.totalBytes) * 100));
    text += ` of ${formatBytes(event.totalBytes)} (${percent}%)`;
  }
  const seconds = (time - phase.started) / 1000;
  if (seconds >= 0.5) text += `, ${formatBytes((event.bytes - phase.startBytes) / seconds)}/s`;
  return text;
}
