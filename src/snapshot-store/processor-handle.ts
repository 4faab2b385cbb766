/**
 * Runs a {@link ChunkProcessor} inline or in a worker thread, behind one asynchronous interface.
 *
 * Hashing and zstd take most of a snapshot's CPU time; moving them to a worker lets the main
 * thread read and chunk the next batch meanwhile (on two cores this is what makes the store faster
 * than the dump it stores). The worker runs the processor's source text through `eval` instead of
 * a worker file: the same code then works from dist/ and from src/ under vitest, where a
 * TypeScript worker file cannot be loaded by Node 20.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { OperationError } from '../core/errors.js';
import { type Batch, copyInto } from './chunker.js';
import {
  type BatchResult,
  ChunkProcessor,
  type KnownPack,
  type KnownSnapshot,
  type NewChunks,
  type ProcessorDeps,
} from './chunk-processor.js';

/** A batch's result; `release()` once its compressed bytes are written (they may be shared). */
export interface ProcessedBatch extends BatchResult {
  release(): void;
}

/** A running processor. Results come back in the order batches were given. */
export interface ProcessorHandle {
  readonly knownPacks: readonly KnownPack[];
  /** Where the batcher gets its buffers from (the worker's shared slots), if anywhere. */
  readonly buffers: BufferSource | undefined;
  /** Processes the next batch of stream `stream` (its position in the snapshot). */
  process(batch: Batch, stream: number): Promise<ProcessedBatch>;
  /** The SHA-256 (hex) of the whole stream, once its batches are all given. */
  endStream(stream: number): Promise<string>;
  /** The chunks new in this write, for a worker that takes over (inline only, between streams). */
  newChunks(): NewChunks;
  close(): Promise<void>;
}

/** Buffers to fill with a batch, lent out by the processor. */
export interface BufferSource {
  /** A free buffer of the batch capacity, or undefined when all are in use. */
  take(): Uint8Array | undefined;
  /** Returns a taken buffer that was not given to `process` (a stream ended on it empty). */
  giveBack(buffer: Uint8Array): void;
}

export interface ProcessorOptions {
  level: number;
  known: KnownSnapshot[];
  /** Run in a worker thread (for streams larger than one batch). */
  worker: boolean;
  /** Bytes one batch buffer holds (the batcher's capacity). */
  capacity: number;
  /** Receives each plain (unshared) batch buffer back once it may be reused. */
  recycle?: (buffer: ArrayBuffer) => void;
  /** The chunks an earlier processor of the same write stored first (it hands over to this one). */
  carried?: NewChunks;
}

const require = createRequire(import.meta.url);
const BINDING_PATH = require.resolve('zstd-napi/binding');

/**
 * Slots shared with the worker: one being filled, up to four in flight (the writer keeps three
 * and submits a fourth before it waits) and one whose result is being written, with a spare.
 */
const SLOTS = 7;

/** Starts a processor; with `worker`, resolves once the worker has loaded the known chunks. */
export async function startProcessor(options: ProcessorOptions): Promise<ProcessorHandle> {
  return options.worker ? startWorker(options) : startInline(options);
}

function startInline(options: ProcessorOptions): ProcessorHandle {
  const deps: ProcessorDeps = { createHash, readFileSync, zstd: require(BINDING_PATH) as ProcessorDeps['zstd'] };
  const processor = new ChunkProcessor(deps, options.level, options.known, options.carried);
  return {
    knownPacks: processor.knownPacks,
    buffers: undefined,
    process: async (batch, stream) => {
      const result = processor.process(batch.data, batch.cuts, stream, undefined, batch.hashes);
      options.recycle?.(batch.data.buffer as ArrayBuffer);
      return { ...result, release: () => {} };
    },
    endStream: async (stream) => processor.endStream(stream),
    newChunks: () => processor.newChunks(),
    close: async () => {},
  };
}

/** The most compressed bytes a batch of `capacity` bytes can need (zstd's bound per chunk, summed). */
function outputCapacity(capacity: number): number {
  return capacity + Math.ceil(capacity / 32) + 128 * 1024;
}

// The batch data and the compressed output live in SharedArrayBuffers allocated once: moving a
// batch buffer to the worker and back for every batch made each thread account it as new
// external memory, and V8 answered with a full garbage collection every few batches (about a
// sixth of a snapshot's CPU time, in docs/benchmarks.md). A batch that is not in a slot (the
// first one, or one when every slot is busy) is copied into a free slot, or moved as before.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const zstd = require(workerData.bindingPath);
const ChunkProcessor = (${ChunkProcessor.toString()});
const processor = new ChunkProcessor({ createHash, readFileSync, zstd }, workerData.level, workerData.known, workerData.carried);
const { input, output, capacity, outputCapacity } = workerData;
parentPort.postMessage({ type: 'ready', knownPacks: processor.knownPacks });
parentPort.on('message', (message) => {
  if (message.end) {
    parentPort.postMessage({ type: 'digest', id: message.id, digest: processor.endStream(message.stream) });
    return;
  }
  const shared = message.slot !== undefined;
  const data = shared
    ? new Uint8Array(input, message.slot * capacity, message.length)
    : new Uint8Array(message.buffer, message.offset, message.length);
  const target = shared ? new Uint8Array(output, message.slot * outputCapacity, outputCapacity) : undefined;
  const result = processor.process(data, message.cuts, message.stream, target, message.hashes);
  const direct = result.compressed.buffer === output;
  const reply = { type: 'result', id: message.id, hashes: result.hashes, kinds: result.kinds, refs: result.refs,
    compressedLength: result.compressed.length, compressed: direct ? undefined : result.compressed,
    input: shared ? undefined : message.buffer };
  const moved = [result.hashes.buffer, result.kinds.buffer, result.refs.buffer];
  if (!direct) moved.push(result.compressed.buffer);
  if (!shared) moved.push(message.buffer);
  parentPort.postMessage(reply, moved);
});
`;

interface Pending {
  slot: number | undefined;
  resolve(result: ProcessedBatch | string): void;
  reject(error: unknown): void;
}

type WorkerMessage =
  | { type: 'ready'; knownPacks: KnownPack[] }
  | { type: 'digest'; id: number; digest: string }
  | {
      type: 'result';
      id: number;
      hashes: Uint8Array;
      kinds: Uint8Array;
      refs: Uint32Array;
      compressedLength: number;
      compressed: Uint8Array | undefined;
      input: ArrayBuffer | undefined;
    };

const FREE = 0;
const LENT = 1;
const BUSY = 2;

async function startWorker(options: ProcessorOptions): Promise<ProcessorHandle> {
  const { capacity } = options;
  const outCapacity = outputCapacity(capacity);
  const input = new SharedArrayBuffer(capacity * SLOTS);
  const output = new SharedArrayBuffer(outCapacity * SLOTS);
  const state = new Uint8Array(SLOTS);
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: {
      bindingPath: BINDING_PATH,
      level: options.level,
      known: options.known,
      carried: options.carried,
      input,
      output,
      capacity,
      outputCapacity: outCapacity,
    },
  });
  const pending = new Map<number, Pending>();
  let failure: unknown;
  let nextId = 0;
  const failAll = (error: unknown) => {
    failure ??= error;
    for (const entry of pending.values()) entry.reject(failure);
    pending.clear();
  };
  const knownPacks = await new Promise<KnownPack[]>((resolve, reject) => {
    const onMessage = (message: WorkerMessage) => {
      if (message.type !== 'ready') return;
      stop();
      resolve(message.knownPacks);
    };
    const onError = (error: Error) => {
      stop();
      reject(new OperationError(`the chunk worker failed while starting: ${error.message}`, { cause: error }));
    };
    const onExit = (code: number) => {
      stop();
      reject(new OperationError(`the chunk worker exited with code ${code} while starting`));
    };
    // Only our own listeners go: removeAllListeners() would also drop the Worker's internal ones.
    const stop = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
  const freeSlot = (): number | undefined => {
    const slot = state.indexOf(FREE);
    return slot < 0 ? undefined : slot;
  };
  const slotOf = (view: Uint8Array): number | undefined =>
    view.buffer === input ? Math.floor(view.byteOffset / capacity) : undefined;
  /** Sends a request (`send` posts it and says which slot it occupies); resolves with its reply. */
  const request = <T>(send: (id: number) => number | undefined) =>
    new Promise<T>((resolve, reject) => {
      if (failure !== undefined) {
        reject(failure);
        return;
      }
      const id = nextId;
      nextId += 1;
      pending.set(id, { slot: send(id), resolve: resolve as Pending['resolve'], reject });
    });
  worker.on('message', (message: WorkerMessage) => {
    if (message.type === 'ready') return;
    const entry = pending.get(message.id);
    pending.delete(message.id);
    if (message.type === 'digest') {
      entry?.resolve(message.digest);
      return;
    }
    if (message.input !== undefined) options.recycle?.(message.input);
    if (entry === undefined) return;
    const { slot } = entry;
    const compressed =
      message.compressed ?? new Uint8Array(output, (slot ?? 0) * outCapacity, message.compressedLength);
    let released = false;
    entry.resolve({
      hashes: message.hashes,
      kinds: message.kinds,
      refs: message.refs,
      compressed,
      release: () => {
        if (released || slot === undefined) return;
        released = true;
        state[slot] = FREE;
      },
    });
  });
  worker.on('error', (error) => failAll(new OperationError(`the chunk worker failed: ${error.message}`, { cause: error })));
  worker.on('exit', (code) => failAll(new OperationError(`the chunk worker stopped (exit code ${code})`)));
  return {
    knownPacks,
    buffers: {
      take: () => {
        const slot = freeSlot();
        if (slot === undefined) return undefined;
        state[slot] = LENT;
        return new Uint8Array(input, slot * capacity, capacity);
      },
      giveBack: (buffer) => {
        const slot = slotOf(buffer);
        if (slot !== undefined && state[slot] === LENT) state[slot] = FREE;
      },
    },
    process: (batch, stream) =>
      request<ProcessedBatch>((id) => {
        const { buffer, byteOffset, byteLength } = batch.data;
        let slot = slotOf(batch.data);
        if (slot === undefined && byteLength <= capacity) {
          slot = freeSlot();
          if (slot !== undefined) {
            copyInto(new Uint8Array(input, slot * capacity, byteLength), batch.data);
            options.recycle?.(buffer as ArrayBuffer);
          }
        }
        const { cuts, hashes } = batch;
        const moved = [cuts.buffer as ArrayBuffer];
        if (hashes !== undefined) moved.push(hashes.buffer as ArrayBuffer);
        if (slot !== undefined) {
          state[slot] = BUSY;
          worker.postMessage({ id, stream, slot, length: byteLength, cuts, hashes }, moved);
        } else {
          worker.postMessage({ id, stream, buffer, offset: byteOffset, length: byteLength, cuts, hashes }, [buffer as ArrayBuffer, ...moved]);
        }
        return slot;
      }),
    endStream: (stream) =>
      request<string>((id) => {
        worker.postMessage({ id, end: true, stream });
        return undefined;
      }),
    newChunks: () => {
      throw new Error('a worker processor never hands over');
    },
    close: async () => {
      failAll(new OperationError('the chunk worker was closed'));
      await worker.terminate();
    },
  };
}
