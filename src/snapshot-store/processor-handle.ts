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
import type { Batch } from './chunker.js';
import { type BatchResult, ChunkProcessor, type KnownPack, type KnownSnapshot, type ProcessorDeps } from './chunk-processor.js';

/** A running processor. Results come back in the order batches were given. */
export interface ProcessorHandle {
  readonly knownPacks: readonly KnownPack[];
  process(batch: Batch): Promise<BatchResult>;
  close(): Promise<void>;
}

export interface ProcessorOptions {
  level: number;
  known: KnownSnapshot[];
  /** Run in a worker thread (for streams larger than one batch). */
  worker: boolean;
  /** Receives each batch's buffer back once the batch is processed, for reuse. */
  recycle?: (buffer: ArrayBuffer) => void;
}

const require = createRequire(import.meta.url);
const BINDING_PATH = require.resolve('zstd-napi/binding');

/** Starts a processor; with `worker`, resolves once the worker has loaded the known chunks. */
export async function startProcessor(options: ProcessorOptions): Promise<ProcessorHandle> {
  return options.worker ? startWorker(options) : startInline(options);
}

function startInline(options: ProcessorOptions): ProcessorHandle {
  const deps: ProcessorDeps = { createHash, readFileSync, zstd: require(BINDING_PATH) as ProcessorDeps['zstd'] };
  const processor = new ChunkProcessor(deps, options.level, options.known);
  return {
    knownPacks: processor.knownPacks,
    process: async (batch) => {
      const result = processor.process(batch.data, batch.cuts);
      options.recycle?.(batch.data.buffer as ArrayBuffer);
      return result;
    },
    close: async () => {},
  };
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { readFileSync } = require('node:fs');
const zstd = require(workerData.bindingPath);
const ChunkProcessor = (${ChunkProcessor.toString()});
const processor = new ChunkProcessor({ createHash, readFileSync, zstd }, workerData.level, workerData.known);
parentPort.postMessage({ type: 'ready', knownPacks: processor.knownPacks });
parentPort.on('message', (message) => {
  const data = new Uint8Array(message.buffer, message.offset, message.length);
  const result = processor.process(data, message.cuts);
  parentPort.postMessage({ type: 'result', id: message.id, result, input: message.buffer },
    [result.hashes.buffer, result.kinds.buffer, result.refs.buffer, result.compressed.buffer, message.buffer]);
});
`;

interface Pending {
  resolve(result: BatchResult): void;
  reject(error: unknown): void;
}

type WorkerMessage =
  | { type: 'ready'; knownPacks: KnownPack[] }
  | { type: 'result'; id: number; result: BatchResult; input: ArrayBuffer };

async function startWorker(options: ProcessorOptions): Promise<ProcessorHandle> {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { bindingPath: BINDING_PATH, level: options.level, known: options.known },
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
  worker.on('message', (message: WorkerMessage) => {
    if (message.type !== 'result') return;
    const entry = pending.get(message.id);
    pending.delete(message.id);
    options.recycle?.(message.input);
    entry?.resolve(message.result);
  });
  worker.on('error', (error) => failAll(new OperationError(`the chunk worker failed: ${error.message}`, { cause: error })));
  worker.on('exit', (code) => failAll(new OperationError(`the chunk worker stopped (exit code ${code})`)));
  return {
    knownPacks,
    process: (batch) =>
      new Promise<BatchResult>((resolve, reject) => {
        if (failure !== undefined) {
          reject(failure);
          return;
        }
        const id = nextId;
        nextId += 1;
        pending.set(id, { resolve, reject });
        const { buffer, byteOffset, byteLength } = batch.data;
        worker.postMessage(
          { id, buffer, offset: byteOffset, length: byteLength, cuts: batch.cuts },
          [buffer as ArrayBuffer, batch.cuts.buffer as ArrayBuffer],
        );
      }),
    close: async () => {
      failAll(new OperationError('the chunk worker was closed'));
      await worker.terminate();
    },
  };
}
