/**
 * A floor for the SQL snapshot figures: the least a Node program does with a dump. It runs the
 * dump tool as our snapshot does (under `stdbuf -o1M` where installed), reads all of its output
 * and hashes it once with SHA-256, and nothing else: no chunking, no per-chunk hash, no worker, no
 * store. Not a target and not our code; it says what the language and the machine cost before the
 * store does anything.
 *
 *   node bench/lib/node-reader.mjs stream -- pg_dump DB    # as a child's stdout is read by default
 *   node bench/lib/node-reader.mjs reused -- pg_dump DB    # into one reused 1 MiB buffer
 *
 * `stream` reads the child's stdout as Node hands it out: a fresh 64 KiB buffer per read.
 * `reused` gives the tool the other end of a local socket that we read with `onread` into one
 * buffer, so that no read touches fresh memory (on a VM where a page fault costs about 11 µs,
 * that is most of the difference). Prints the byte count and the SHA-256 on stdout.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const [mode, separator, tool, ...args] = process.argv.slice(2);
if (!['stream', 'reused'].includes(mode) || separator !== '--' || tool === undefined) {
  process.stderr.write('usage: node-reader.mjs stream|reused -- TOOL [ARGS...]\n');
  process.exit(2);
}

function stdbuf() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    try {
      accessSync(path.join(dir, 'stdbuf'), constants.X_OK);
      return path.join(dir, 'stdbuf');
    } catch {
      // not here
    }
  }
  return undefined;
}
const wrapper = stdbuf();
const [file, argv] = wrapper === undefined ? [tool, args] : [wrapper, ['-o1M', tool, ...args]];

const hash = createHash('sha256');
let bytes = 0;

/** Resolves when the child has exited 0; rejects otherwise. */
function exited(child) {
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${tool} exited with ${code ?? signal}`))));
  });
}

async function readStream() {
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  const done = exited(child);
  for await (const piece of child.stdout) {
    hash.update(piece);
    bytes += piece.length;
  }
  await done;
}

async function readReused() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'node-reader-'));
  try {
    const socketPath = path.join(dir, 'socket');
    const server = net.createServer();
    const accepted = new Promise((resolve) => server.once('connection', resolve));
    await new Promise((resolve, reject) => server.listen(socketPath, resolve).once('error', reject));
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    const ended = new Promise((resolve, reject) => {
      const client = net.connect({
        path: socketPath,
        onread: {
          buffer,
          callback: (length, into) => {
            hash.update(into.subarray(0, length));
            bytes += length;
          },
        },
      });
      client.on('end', resolve);
      client.on('error', reject);
    });
    const theirs = await accepted;
    server.close();
    const child = spawn(file, argv, { stdio: ['ignore', theirs, 'inherit'] });
    const done = exited(child);
    theirs.destroy(); // the child has its own copy; ours would keep the socket open after it exits
    await Promise.all([done, ended]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await (mode === 'stream' ? readStream() : readReused());
process.stdout.write(`${bytes} ${hash.digest('hex')}\n`);
