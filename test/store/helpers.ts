/** Helpers for the store tests: deterministic pseudo-random dumps and a store in a temp dir. */
import { createHash } from 'node:crypto';
import { chmod, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { expect } from 'vitest';
import type { Logger } from '../../src/core/log.js';
import type { SnapshotSource } from '../../src/core/plugin.js';
import type { ComponentKey } from '../../src/core/state-dir.js';
import { SnapshotStore } from '../../src/snapshot-store/store.js';
import { programPath, runCli } from '../support/cli.js';
import { useTempDir } from '../support/temp.js';

/** Text that looks like a SQL dump (compressible, varied), deterministic for a seed. */
export function fakeDump(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state >>> 0;
  };
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel', 'india', 'juliet'];
  let at = 0;
  let row = 0;
  while (at < size) {
    row += 1;
    const line = `${row}\t${words[next() % 10]}-${next() % 100000}\t${(next() % 100000) / 100}\t${next().toString(16)}\n`;
    at += out.write(line, at);
  }
  return out;
}

/** A readable that emits `data` in pieces of `piece` bytes. */
export function streamOf(data: Uint8Array, piece = 65536): Readable {
  return Readable.from(
    (function* () {
      for (let at = 0; at < data.length; at += piece) yield Buffer.from(data.subarray(at, at + piece));
    })(),
    { objectMode: false },
  );
}

/** Reads a whole stream of a snapshot. */
export async function readAll(source: SnapshotSource, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of source.open(name)) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

export function sha256(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A logger that records lines. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const logger: Logger & { lines: string[] } = {
    lines,
    info: (message) => lines.push(`info: ${message}`),
    warn: (message) => lines.push(`warn: ${message}`),
    debug: () => {},
    child: () => logger,
  };
  return logger;
}

/** Every path under `dir` (except locks/ and pool/.damaged/) with its kind, size or link target, for "nothing changed" checks. */
export async function treeOf(dir: string): Promise<string[]> {
  const { lstat, readdir, readlink } = await import('node:fs/promises');
  const path = await import('node:path');
  const out: string[] = [];
  const walk = async (rel: string) => {
    const full = path.join(dir, rel);
    const info = await lstat(full).catch(() => undefined);
    if (info === undefined) return;
    if (info.isSymbolicLink()) out.push(`${rel} -> ${await readlink(full)}`);
    else if (info.isDirectory()) {
      if (rel !== '') out.push(`${rel}/`);
      for (const name of (await readdir(full)).sort()) {
        // Bookkeeping, not data: lock files, and the records of packs found damaged.
        if (rel === '' && name === 'locks') continue;
        if (rel === 'pool' && name === '.damaged') continue;
        await walk(rel === '' ? name : `${rel}/${name}`);
      }
    } else out.push(`${rel} ${info.size} ${info.nlink}`);
  };
  await walk('');
  return out;
}

/** Runs `dysnomia-snapshots ...args` on a state dir. */
export function snapshots(stateDir: string, args: string[], input?: string | Buffer) {
  return runCli('dysnomia-snapshots', args, { env: { DYSNOMIA_STATEDIR: stateDir }, input });
}

/**
 * A store holding one snapshot of `key` (one stream, `stream`, of `data`), and the stream
 * `--export` makes of it (with `extra` arguments).
 */
export async function exported(
  key: ComponentKey,
  data: Buffer,
  options: { type: string; stream: string; extra?: string[] },
): Promise<{ stateDir: string; stream: Buffer; rel: string; identity: string }> {
  const stateDir = await useTempDir();
  const outcome = await new SnapshotStore(stateDir).write(key, { type: options.type }, (sink) => sink.addStream(options.stream, streamOf(data)));
  const rel = `${key.container}/${key.component}/${outcome!.identity}`;
  const file = path.join(await useTempDir(), 'export.tar');
  const result = await execa(process.execPath, [programPath('dysnomia-snapshots'), '--export', rel, ...(options.extra ?? [])], {
    env: { DYSNOMIA_STATEDIR: stateDir },
    stdout: { file },
    reject: false,
  });
  expect(result.exitCode, result.stderr).toBe(0);
  return { stateDir, stream: await readFile(file), rel, identity: outcome!.identity };
}

/** A tar stream written again with each entry's data replaced by what `edit` gives for it (none, one or more entries). */
export async function rewriteTar(stream: Buffer, edit: (name: string, data: Buffer) => Buffer[]): Promise<Buffer> {
  const extract = tar.extract();
  const pack = tar.pack();
  const done = (async () => {
    const parts: Buffer[] = [];
    for await (const part of pack) parts.push(part as Buffer);
    return Buffer.concat(parts);
  })();
  Readable.from([stream]).pipe(extract);
  for await (const entry of extract) {
    const parts: Buffer[] = [];
    for await (const part of entry) parts.push(part as Buffer);
    for (const data of edit(entry.header.name, Buffer.concat(parts))) pack.entry({ ...entry.header, size: data.length }, data);
  }
  pack.finalize();
  return done;
}

/** Flips the lowest bit of the byte at `offset` (making the file writable first). */
export async function flipByte(file: string, offset: number): Promise<void> {
  await chmod(file, 0o644);
  const handle = await open(file, 'r+');
  const byte = Buffer.alloc(1);
  await handle.read(byte, 0, 1, offset);
  byte[0] = byte[0]! ^ 0x01;
  await handle.write(byte, 0, 1, offset);
  await handle.close();
}

/** The pid of a process that has exited. */
export async function deadPid(): Promise<number> {
  const child = await execa(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(child.stdout);
}
