/**
 * dumpPieces: a dump tool's output read into reused buffers (sql/tool-output.ts) and handed to the
 * store as borrowed pieces. Every byte arrives, in order, whatever the consumer's pace; a failing
 * tool or consumer ends the dump with the right error and leaves no process and no socket behind.
 * Real processes (sh, cat, yes) stand in for the dump tools.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { AbortedError, PluginError } from '../../src/core/errors.js';
import { HOST_TAG, ownedName } from '../../src/core/lock.js';
import type { PieceFilter } from '../../src/plugins/sql/piece-filter.js';
import { dumpPieces } from '../../src/plugins/sql/tool.js';
import { hasEnded, until } from '../support/processes.js';
import { useTempDir } from '../support/temp.js';

const OPTIONS = { plugin: 'test-sql' };
const DUMPING = 'dumping db';

/**
 * Copies every piece before it asks for the next, as the store does. With `pauseEvery`, it waits
 * now and then before it copies: a piece stays valid until the next is asked for, however long.
 */
async function copyAll(pieces: AsyncIterable<Buffer>, pauseEvery = 0): Promise<Buffer> {
  const out: Buffer[] = [];
  let count = 0;
  for await (const piece of pieces) {
    count += 1;
    if (pauseEvery > 0 && count % pauseEvery === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    out.push(Buffer.from(piece));
  }
  return Buffer.concat(out);
}

/** What `sh -c script` writes, read through dumpPieces with `filters` and copied as the store copies. */
async function shOutput(script: string, options: Parameters<typeof dumpPieces>[4] = OPTIONS, filters?: PieceFilter[]): Promise<string> {
  let got = '';
  await dumpPieces('sh', ['-c', script], DUMPING, async (pieces) => {
    got = (await copyAll(pieces)).toString();
  }, options, filters);
  return got;
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the dump to fail');
}

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('dumpPieces', () => {
  // Tests that point TMPDIR elsewhere (to where no socket can be made, say).
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('hands over every byte of a large output, in order, to a consumer that falls behind', async () => {
    const dir = await useTempDir();
    const file = path.join(dir, 'dump');
    const data = randomBytes(24 * 1024 * 1024);
    await writeFile(file, data);
    let got: Buffer = Buffer.alloc(0);
    // A pause every few pieces: the reads outrun the consumer, so the socket pauses and resumes
    // and its buffers are reused many times over.
    await dumpPieces('cat', [file], DUMPING, async (pieces) => {
      got = await copyAll(pieces, 3);
    }, OPTIONS);
    expect(got.length).toBe(data.length);
    expect(sha(got)).toBe(sha(data));
  });

  it('hands over every line a tool wrote through C stdio, in order', async () => {
    let got: Buffer = Buffer.alloc(0);
    const script = 'BEGIN { for (i = 0; i < 200000; i++) print "row " i }';
    await dumpPieces('awk', [script], DUMPING, async (pieces) => {
      got = await copyAll(pieces);
    }, OPTIONS);
    const lines = got.toString().split('\n');
    expect(lines).toHaveLength(200001);
    expect(lines[199999]).toBe('row 199999');
  });

  it('runs the filters over the pieces and their end, in order', async () => {
    // Drops every 'x' and holds the last byte back until the next piece or the end.
    const held: PieceFilter = (() => {
      let carry = Buffer.alloc(0);
      return {
        write(piece) {
          const all = Buffer.concat([carry, piece]);
          carry = Buffer.from(all.subarray(all.length - 1));
          return [all.subarray(0, all.length - 1)];
        },
        end: () => [carry],
      };
    })();
    const dropX: PieceFilter = { write: (piece) => [Buffer.from(piece.toString('latin1').replaceAll('x', ''), 'latin1')], end: () => [] };
    const got = await shOutput('i=0; while [ $i -lt 3000 ]; do echo "ax$i"; i=$((i+1)); done', OPTIONS, [held, dropX]);
    expect(got).toBe(Array.from({ length: 3000 }, (_, i) => `a${i}\n`).join(''));
  });

  it('an empty output is an empty stream', async () => {
    let count = -1;
    await dumpPieces('true', [], DUMPING, async (pieces) => {
      count = (await copyAll(pieces)).length;
    }, OPTIONS);
    expect(count).toBe(0);
  });

  it('a tool that fails: its exit status and its message, after the consumer took what it wrote', async () => {
    let got = '';
    const error = await failure(
      dumpPieces('sh', ['-c', 'echo partial; echo "access denied" >&2; exit 3'], DUMPING, async (pieces) => {
        got = (await copyAll(pieces)).toString();
      }, OPTIONS),
    );
    expect(got).toBe('partial\n');
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${DUMPING}: sh failed (exit status 3): access denied`);
  });

  it('a tool that cannot be started: says which', async () => {
    const error = await failure(dumpPieces('/nonexistent/pg_dump', [], DUMPING, copyAll as never, OPTIONS));
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toMatch(new RegExp(`^${DUMPING}: cannot run pg_dump`));
  });

  it('a consumer that fails: its own error, and the tool (writing forever) is stopped', async () => {
    const pidFile = path.join(await useTempDir(), 'pid');
    const storeFull = new Error('no space left on device');
    const error = await failure(
      dumpPieces('sh', ['-c', `echo $$ > ${pidFile}; exec yes`], DUMPING, async (pieces) => {
        let count = 0;
        for await (const _ of pieces) if (++count === 50) throw storeFull;
      }, OPTIONS),
    );
    expect(error).toBe(storeFull);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await until(`yes (${pid}) has ended`, () => hasEnded(pid));
  });

  it('a consumer that stops early without an error: the dump is not whole, and the tool (writing forever) is stopped', async () => {
    const error = await failure(
      dumpPieces('yes', [], DUMPING, async (pieces) => {
        for await (const _ of pieces) break;
      }, OPTIONS),
    );
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${DUMPING}: the output of yes was not read to its end`);
  });

  it('a consumer that stops before the end while the tool waits: the dump is not whole, and the tool is stopped', async () => {
    const pidFile = path.join(await useTempDir(), 'pid');
    const started = Date.now();
    const error = await failure(
      dumpPieces('sh', ['-c', `echo $$ > ${pidFile}; printf one; exec sleep 30`], DUMPING, async (pieces) => {
        for await (const _ of pieces) break;
      }, OPTIONS),
    );
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${DUMPING}: the output of sh was not read to its end`);
    expect(hasEnded(Number(readFileSync(pidFile, 'utf8')))).toBe(true);
    expect(Date.now() - started).toBeLessThan(20_000); // stopped, not waited for
  });

  it('a consumer that stops before the end after the tool has exited 0: the dump is still not whole', async () => {
    const pidFile = path.join(await useTempDir(), 'pid');
    const error = await failure(
      dumpPieces('sh', ['-c', `echo $$ > ${pidFile}; printf one; sleep 0.05; printf two`], DUMPING, async (pieces) => {
        for await (const _ of pieces) {
          // The tool writes the rest and exits 0; its output then waits, read, in our buffers.
          await until('the tool has exited', () => hasEnded(Number(readFileSync(pidFile, 'utf8'))));
          await new Promise((resolve) => setTimeout(resolve, 50));
          break;
        }
      }, OPTIONS),
    );
    expect(error).toBeInstanceOf(PluginError);
    expect(error.message).toBe(`${DUMPING}: the output of sh was not read to its end`);
  });

  it('a filter that throws fails the dump with its error, from the socket and from a pipe alike', async () => {
    const broken: PieceFilter = {
      write: () => {
        throw new Error('filter broke');
      },
      end: () => [],
    };
    const tmp = await useTempDir();
    for (const where of [tmp, path.join(tmp, 'missing')]) {
      vi.stubEnv('TMPDIR', where);
      const error = await failure(dumpPieces('yes', [], DUMPING, (pieces) => copyAll(pieces).then(() => {}), OPTIONS, [broken]));
      expect(error, `TMPDIR=${where}`).toBeInstanceOf(PluginError);
      expect(error.message, `TMPDIR=${where}`).toBe(`${DUMPING}: reading the output of yes failed: filter broke`);
    }
  });

  it('a cancelled dump: AbortedError, and the tool is stopped', async () => {
    const controller = new AbortController();
    const error = await failure(
      dumpPieces('yes', [], DUMPING, async (pieces) => {
        let count = 0;
        for await (const _ of pieces) if (++count === 20) controller.abort();
      }, { ...OPTIONS, signal: controller.signal }),
    );
    expect(error).toBeInstanceOf(AbortedError);
  });

  it('leaves no socket folder behind, and reads as a stream where no socket can be made', async () => {
    const tmp = await useTempDir();
    vi.stubEnv('TMPDIR', tmp);
    expect(await shOutput('echo one; echo two')).toBe('one\ntwo\n');
    expect(await readdir(tmp)).toEqual([]);
    // A temporary folder that does not exist: the output is still read whole (as a stream).
    const said: string[] = [];
    const debug = (message: string) => said.push(message);
    vi.stubEnv('TMPDIR', path.join(tmp, 'missing'));
    expect(await shOutput('echo three', { ...OPTIONS, debug }, [{ write: (piece) => [piece], end: () => [Buffer.from('end\n')] }])).toBe('three\nend\n');
    expect(said).toEqual([expect.stringMatching(new RegExp(`^${DUMPING}: reading sh's output from a pipe: .*ENOENT`))]);
    // One too long for a socket's address (Linux takes 107 bytes, and Node would cut it short
    // silently, outside the private folder): read as a stream too, and nothing left behind.
    const long = path.join(tmp, 'x'.repeat(Math.max(1, 100 - tmp.length)));
    await mkdir(long);
    vi.stubEnv('TMPDIR', long);
    expect(await shOutput('echo four', { ...OPTIONS, debug }, [])).toBe('four\n');
    expect(said[1]).toMatch(/longer than 107 bytes/);
    expect(await readdir(long)).toEqual([]);
    expect((await readdir(tmp)).sort()).toEqual([path.basename(long)]);
  });

  it('removes the socket folders that killed runs left, and no other', async () => {
    const tmp = await useTempDir();
    // A run killed between making its folder and removing it: its pid is free now.
    const ended = execa('true');
    await ended;
    const gone = ended.pid!;
    const left = `dysnomia-output-${gone}@${HOST_TAG}-aB3dE9`;
    const leftWithStart = `dysnomia-output-${gone}.12345@${HOST_TAG}-Zz9Yy8`;
    // A run still going (this process), one of another host, an older version's (no maker), and
    // someone else's file that only looks alike.
    const running = `${ownedName('dysnomia-output-')}Qq1Ww2`;
    const otherHost = `dysnomia-output-${gone}@${HOST_TAG === 'ffffffff' ? '00000000' : 'ffffffff'}-Rr4Tt5`;
    const older = 'dysnomia-output-Ab12Cd';
    const file = `dysnomia-output-${gone}@${HOST_TAG}-file00`;
    for (const name of [left, leftWithStart, running, otherHost, older]) {
      await mkdir(path.join(tmp, name));
      // A socket as a killed run leaves it: its listener died without closing it.
      const socket = path.join(tmp, name, 'socket');
      await execa(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socket)}, () => process.kill(process.pid, 'SIGKILL'))`], { reject: false });
      expect((await lstat(socket)).isSocket()).toBe(true);
    }
    await writeFile(path.join(tmp, file), 'not ours');
    vi.stubEnv('TMPDIR', tmp);
    expect(await shOutput('echo five')).toBe('five\n');
    // The sweep goes on beside the dump, not waited for.
    const kept = [running, otherHost, older, file].sort();
    await until('the leftover folders are removed', async () => (await readdir(tmp)).length <= kept.length, 5_000).catch(() => {});
    expect((await readdir(tmp)).sort()).toEqual(kept);
  });
});
