/**
 * loadWith, which feeds a snapshot stream to mysql or psql: however the load ends, the error says
 * what was being done and carries the tool's own words, never a bare stream error. Real
 * processes (sh) stand in for the client tools; what matters here is how they end.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { IntegrityError, PluginError } from '../../src/core/errors.js';
import { loadWith } from '../../src/plugins/sql/tool.js';

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
});
