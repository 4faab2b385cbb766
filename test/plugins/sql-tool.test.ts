/**
 * loadWith, which feeds a snapshot stream to mysql or psql, and dumpWith, which hands a dump
 * tool's output to the store: however they end, the error says
 * what was being done and carries the tool's own words, never a bare stream error. Real
 * processes (sh) stand in for the client tools; what matters here is how they end.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { IntegrityError, PluginError } from '../../src/core/errors.js';
import { dumpWith, loadWith } from '../../src/plugins/sql/tool.js';

const OPTIONS = { plugin: 'test-sql' };
const WHAT = 'loading snapshot abc into db__dys_staging';

/** 20 KiB, a piece every 20 ms: the tool can exit between two writes. */
function slowInput(): Readable {
  return Readable.from(
    (async function* () {
      for (let i = 0; i < 20; i++) {
        yield Buffer.alloc(1024, 0x41);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })(),
  );
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the load to fail');
}

describe('loadWith', () => {
  it('a tool that fails between two writes (its session was killed): its exit status and message, not "Premature close"', async () => {
    const error = await failure(loadWith('sh', ['-c', 'head -c 10 >/dev/null; echo "ERROR 2013: Lost connection" >&2; exit 1'], WHAT, slowInput(), OPTIONS));
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toContain(WHAT);
    expect(error.message).toContain('sh failed (exit status 1)');
    expect(error.message).toContain('Lost connection');
    expect(error.message).not.toMatch(/premature/i);
  });

  it('a tool that stops reading and exits 0: the load is incomplete', async () => {
    const error = await failure(loadWith('sh', ['-c', 'head -c 10 >/dev/null'], WHAT, slowInput(), OPTIONS));
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${WHAT}: the tool stopped reading its input before the end`);
  });

  it('a damaged snapshot: its own error, and the tool is stopped', async () => {
    const input = Readable.from(
      (async function* () {
        yield Buffer.from('SELECT 1;\n');
        throw new IntegrityError('chunk 3 of snapshot abc does not match its hash');
      })(),
    );
    const error = await failure(loadWith('sh', ['-c', 'cat >/dev/null'], WHAT, input, OPTIONS));
    expect(error).toBeInstanceOf(IntegrityError);
    expect(error.message).toBe('chunk 3 of snapshot abc does not match its hash');
  });

  it('any other input failure: a PluginError saying what was being loaded', async () => {
    const input = Readable.from(
      (async function* () {
        yield Buffer.from('SELECT 1;\n');
        throw Object.assign(new Error('read EIO'), { code: 'EIO' });
      })(),
    );
    const error = await failure(loadWith('sh', ['-c', 'cat >/dev/null'], WHAT, input, OPTIONS));
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${WHAT}: read EIO`);
  });

  it('a tool that cannot be started: says which', async () => {
    const error = await failure(loadWith('/nonexistent/mysql', [], WHAT, slowInput(), OPTIONS));
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toMatch(new RegExp(`^${WHAT}: cannot run mysql \\(.*ENOENT`));
  });

  it('a complete load succeeds', async () => {
    await expect(loadWith('sh', ['-c', 'test "$(wc -c)" -eq 20480'], WHAT, slowInput(), OPTIONS)).resolves.toBeUndefined();
  });

  it('without bufferedInput the tool reads its input as it would (no stdbuf)', async () => {
    const script = 'test -z "$_STDBUF_I" || { echo "input buffer set: $_STDBUF_I" >&2; exit 9; }; cat >/dev/null';
    await expect(loadWith('sh', ['-c', script], WHAT, slowInput(), OPTIONS)).resolves.toBeUndefined();
  });

  describe('with bufferedInput (psql)', () => {
    const BUFFERED = { ...OPTIONS, bufferedInput: true };

    it('runs the tool under stdbuf with a 1 MiB input buffer, and hands it every byte', async () => {
      // stdbuf tells its preloaded library the sizes through the environment.
      const script = 'test "$_STDBUF_I" = 1048576 || { echo "no input buffer: [$_STDBUF_I]" >&2; exit 9; }; test "$(wc -c)" -eq 20480';
      await expect(loadWith('sh', ['-c', script], WHAT, slowInput(), BUFFERED)).resolves.toBeUndefined();
    });

    it('a tool that reads through C stdio (sed) gets every line, in order', async () => {
      const lines = Array.from({ length: 200_000 }, (_, i) => `row ${i}\n`).join('');
      const script = 'sed "s/^row //" | awk \'{ if ($1 != NR - 1) { print "line " NR ": " $0 > "/dev/stderr"; exit 5 } } END { if (NR != 200000) exit 6 }\'';
      await expect(loadWith('sh', ['-c', script], WHAT, Readable.from([Buffer.from(lines)]), BUFFERED)).resolves.toBeUndefined();
    });

    it('a tool that fails: its own exit status and message, not stdbuf\'s', async () => {
      const error = await failure(loadWith('sh', ['-c', 'cat >/dev/null; echo "ERROR: syntax error" >&2; exit 3'], WHAT, slowInput(), BUFFERED));
      expect(error).toBeInstanceOf(PluginError);
      expect(error.message).toBe(`${WHAT}: sh failed (exit status 3): ERROR: syntax error`);
    });

    it('a damaged snapshot: its own error, and the tool is stopped', async () => {
      const input = Readable.from(
        (async function* () {
          yield Buffer.from('SELECT 1;\n');
          throw new IntegrityError('chunk 3 of snapshot abc does not match its hash');
        })(),
      );
      const started = Date.now();
      // The tool would wait a minute after its input ends; it is killed instead.
      const error = await failure(loadWith('sh', ['-c', 'cat >/dev/null; sleep 60'], WHAT, input, BUFFERED));
      expect(error).toBeInstanceOf(IntegrityError);
      expect(error.message).toBe('chunk 3 of snapshot abc does not match its hash');
      expect(Date.now() - started).toBeLessThan(30_000);
    });

    it('a tool that cannot be started: says which', async () => {
      const error = await failure(loadWith('/nonexistent/psql', [], WHAT, slowInput(), BUFFERED));
      expect(error).toBeInstanceOf(PluginError);
      expect(error.message).toMatch(new RegExp(`^${WHAT}: cannot run psql`));
    });

    it('an input file that cannot be opened fails the load, in a process that has not looked for stdbuf yet', async () => {
      // A fresh copy of the module: its first load is the one that looks stdbuf up. An input that
      // errs while that happens must still reach the load, not crash the process.
      vi.resetModules();
      const fresh = await import('../../src/plugins/sql/tool.js');
      const error = await failure(fresh.loadWith('sh', ['-c', 'cat >/dev/null'], WHAT, createReadStream('/nonexistent/01-schema.sql'), BUFFERED));
      expect(error.message).toContain(WHAT);
      expect(error.message).toContain('ENOENT');
    });
  });
});

/** Everything a dump tool wrote, as the store would read it. */
async function collected(output: Readable): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of output) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

describe('dumpWith', () => {
  const DUMPING = 'dumping db';

  it('hands over every byte a tool wrote through stdio, in order', async () => {
    // awk writes through C stdio, as mysqldump and pg_dump do (they run under stdbuf -o1M).
    let dump: Buffer = Buffer.alloc(0);
    const script = 'BEGIN { for (i = 0; i < 200000; i++) print "row " i }';
    await dumpWith('awk', [script], DUMPING, async (output) => {
      dump = await collected(output);
    }, OPTIONS);
    const lines = dump.toString().split('\n');
    expect(lines).toHaveLength(200001);
    expect(lines[199999]).toBe('row 199999');
  });

  it('a tool that fails: its exit status and its message', async () => {
    const error = await failure(
      dumpWith('sh', ['-c', 'echo partial; echo "access denied" >&2; exit 3'], DUMPING, collected as never, OPTIONS),
    );
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${DUMPING}: sh failed (exit status 3): access denied`);
    expect((error as PluginError).stderr).toContain('access denied');
  });

  it('a tool that cannot be started: says which', async () => {
    const error = await failure(dumpWith('/nonexistent/pg_dump', [], DUMPING, collected as never, OPTIONS));
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toMatch(new RegExp(`^${DUMPING}: cannot run pg_dump`));
  });
});

