/**
 * The CLIs' progress line, on a fake terminal (mocking a TTY is allowed: we do not manage it) and
 * a fake clock.
 */
import { describe, expect, it } from 'vitest';
import type { ProgressEvent } from '../../src/api/options.js';
import { progressLine, type ProgressStream } from '../../src/cli/progress.js';

function fakeStream(isTTY: boolean, columns = 80): ProgressStream & { output: string } {
  const stream = {
    isTTY,
    columns,
    output: '',
    write(text: string) {
      stream.output += text;
      return true;
    },
  };
  return stream;
}

const event = (bytes: number, extra: Partial<ProgressEvent> = {}): ProgressEvent => ({
  operation: 'snapshot',
  component: 'testdb',
  stage: 'dump',
  bytes,
  ...extra,
});

/** What a terminal shows: the text after the last carriage return of the last line. */
function screen(output: string): string {
  const lines = output.replaceAll('\u001b[K', '').split('\n');
  return lines.map((line) => line.slice(line.lastIndexOf('\r') + 1)).join('\n');
}

describe('progress line', () => {
  it('shows nothing at all when the stream is not a terminal', () => {
    const stream = fakeStream(false);
    const line = progressLine({ program: 'dysnomia', stream });
    expect(line.enabled).toBe(false);
    line.update(event(1000));
    line.clear();
    line.write('dysnomia: a log line\n');
    expect(stream.output).toBe('dysnomia: a log line\n');
  });

  it('rewrites one line with stage, bytes, percentage and rate, at most every 100 ms', () => {
    const stream = fakeStream(true);
    let now = 0;
    const line = progressLine({ program: 'dysnomia', stream, now: () => now });
    line.update(event(0, { totalBytes: 4 * 1024 * 1024 }));
    expect(screen(stream.output)).toBe('dysnomia: snapshot testdb: dump 0 B of 4.0 MiB (0%)');
    now = 50;
    line.update(event(1024 * 1024, { totalBytes: 4 * 1024 * 1024 }));
    expect(screen(stream.output)).toBe('dysnomia: snapshot testdb: dump 0 B of 4.0 MiB (0%)');
    now = 1000;
    line.update(event(2 * 1024 * 1024, { totalBytes: 4 * 1024 * 1024 }));
    expect(screen(stream.output)).toBe('dysnomia: snapshot testdb: dump 2.0 MiB of 4.0 MiB (50%), 2.0 MiB/s');
    expect(stream.output).not.toContain('\n');
  });

  it('draws a new stage at once, keeps log lines above it, and clears it at the end', () => {
    const stream = fakeStream(true);
    let now = 0;
    const line = progressLine({ program: 'dysnomia', stream, now: () => now });
    line.update(event(10));
    now = 1;
    line.update(event(20, { stage: 'compress' }));
    expect(screen(stream.output)).toBe('dysnomia: snapshot testdb: compress 20 B');
    line.write('dysnomia: [mysql-database] a warning\n');
    expect(screen(stream.output)).toBe('dysnomia: [mysql-database] a warning\ndysnomia: snapshot testdb: compress 20 B');
    line.clear();
    expect(screen(stream.output)).toBe('dysnomia: [mysql-database] a warning\n');
    // Nothing is left to clear twice.
    const before = stream.output;
    line.clear();
    expect(stream.output).toBe(before);
  });

  it('takes a terminal of unknown width (0 columns, as under script(1)) as 80 wide', () => {
    const stream = fakeStream(true, 0);
    const line = progressLine({ program: 'dysnomia', stream });
    line.update(event(5));
    expect(screen(stream.output)).toBe('dysnomia: snapshot testdb: dump 5 B');
  });

  it('cuts the line to the terminal width', () => {
    const stream = fakeStream(true, 30);
    const line = progressLine({ program: 'dysnomia', stream });
    line.update(event(5, { component: 'a-component-with-a-very-long-name' }));
    const shown = screen(stream.output);
    expect(shown.length).toBe(29);
    expect(shown.endsWith('...')).toBe(true);
  });
});
