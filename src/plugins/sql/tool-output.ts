/**
 * A dump tool's standard output, read into a few reused buffers and handed out as borrowed pieces.
 *
 * Node reads a child's stdout into a fresh 64 KiB buffer per read. On a VM where memory touched
 * for the first time costs about 3 ms per MB, reading pg_dump's 289 MB benchmark dump that way and
 * hashing it once took 1.24x the bare dump, against 1.05x when read into one reused buffer (the
 * Node floors of `npm run bench`, docs/benchmarks.md). Node reads into memory of ours only through
 * a net.Socket's `onread`, which a child's stdio pipe does not offer. So the tool writes into a
 * local stream socket instead: we listen in a private folder (mkdtemp makes it 0700), connect a
 * socket that reads with `onread`, hand the tool the accepted end, and remove the folder. Written
 * by hand: no library reads a child's output into reused memory.
 *
 * A piece is valid until the next one is asked for; then its memory may be overwritten by a
 * later read. The store's writer copies each piece into its batch before it asks for the next
 * (SnapshotSink.addStream), and the filters copy whatever they keep (piece-filter.ts).
 */
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ownedName } from '../../core/lock.js';
import { endFilters, filterPiece, type PieceFilter } from './piece-filter.js';
import { sweepDeadRuns } from './secret-file.js';

/** Bytes one read may take, and how many reads may wait for the consumer. */
const READ_SIZE = 1024 * 1024;
const BUFFERS = 4;
/**
 * The longest socket address Linux takes (sun_path, less its terminating zero). Node 20 cuts a
 * longer one short without a word (the socket would land outside the private folder); newer
 * versions refuse it. Either way, such an address is not tried.
 */
const MAX_ADDRESS_BYTES = 107;

/**
 * The output folders' names begin with this, then their maker (pid, start time, host tag: see
 * ownedName) and mkdtemp's random end, so that a later run can tell, and remove, the folder of a
 * run killed before it removed its own (secret-file.ts sweeps both kinds alike).
 */
const FOLDER_PREFIX = 'dysnomia-output-';

/** One read: the buffer it filled, and what the filters made of it (views of it, or copies). */
interface Read {
  owner: Buffer | undefined;
  pieces: Buffer[];
}

export class ToolOutput implements AsyncIterable<Buffer>, AsyncIterator<Buffer> {
  /** Buffers no read and no piece uses. */
  private readonly free: Buffer[] = [];
  /** Reads not yet handed out, in order. */
  private readonly reads: Read[] = [];
  /** The read whose pieces are being handed out: its buffer is the consumer's until the last. */
  private current: Read | undefined;
  private readonly socket: net.Socket;
  /** The socket's other end, for the tool; ours to close once the tool has its own (handedOver). */
  private theirEnd: net.Socket | undefined;
  private paused = false;
  private ended = false;
  private filtersEnded = false;
  /** True once the consumer has been told the output is done: it took every piece. */
  private delivered = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;

  private constructor(
    address: string,
    private readonly filters: readonly PieceFilter[],
  ) {
    for (let i = 0; i < BUFFERS; i++) this.free.push(Buffer.allocUnsafeSlow(READ_SIZE));
    this.socket = net.connect({
      path: address,
      onread: {
        // Called for the first read, then after each read for the next. The pool never runs dry
        // (see onRead); if it did, a fresh buffer is still correct, only slower.
        buffer: () => this.free.pop() ?? Buffer.allocUnsafeSlow(READ_SIZE),
        // The buffer is the one `buffer` gave.
        callback: (length, buffer) => this.onRead(length, buffer as Buffer),
      },
    });
    this.socket.on('end', () => {
      this.ended = true;
      this.notify();
    });
    this.socket.on('error', (error) => this.fail(error));
    this.socket.on('close', () => {
      if (!this.ended) this.fail(new Error('the output socket closed before the end of the output'));
    });
  }

  /**
   * A socket for a tool's output: give `theirs` to the tool as its stdout (see handedOver). Throws
   * when it cannot be made, before any tool runs (the caller then reads from a pipe).
   */
  static async open(filters: readonly PieceFilter[]): Promise<ToolOutput> {
    const tmp = os.tmpdir();
    // Not waited for: the dump need not wait for litter to go. It never fails (see there).
    sweepDeadRuns(tmp, FOLDER_PREFIX).catch(() => {});
    const folder = await mkdtemp(path.join(tmp, ownedName(FOLDER_PREFIX)));
    const server = net.createServer({ pauseOnConnect: true });
    let output: ToolOutput | undefined;
    let accepted: Promise<net.Socket> | undefined;
    try {
      const address = path.join(folder, 'socket');
      if (Buffer.byteLength(address) > MAX_ADDRESS_BYTES) {
        throw new Error(`the socket address ${address} is longer than ${MAX_ADDRESS_BYTES} bytes`);
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(address, () => {
          server.off('error', reject);
          resolve();
        });
      });
      // At once: a server error without a listener would end the process.
      accepted = new Promise<net.Socket>((resolve, reject) => {
        server.once('connection', resolve);
        server.once('error', reject);
      });
      // The folder already keeps others out; the socket itself is private too, as our other files.
      await chmod(address, 0o600);
      output = new ToolOutput(address, filters);
      output.theirEnd = await Promise.race([accepted, output.failed()]);
      return output;
    } catch (error) {
      output?.destroy();
      // A connection accepted after the failure is nobody's.
      accepted?.then((socket) => socket.destroy()).catch(() => {});
      throw error;
    } finally {
      server.close();
      // The socket is connected; its name is no longer needed. A folder left behind is only litter.
      await rm(folder, { recursive: true, force: true }).catch(() => {});
    }
  }

  /** The end the tool writes to: its stdout. */
  get theirs(): net.Socket {
    if (this.theirEnd === undefined) throw new Error('the output socket was already handed over');
    return this.theirEnd;
  }

  /**
   * Closes our copy of the tool's end. The output ends when every copy is closed: call this once
   * the tool has its own (it has exited, or has been started), or to stop.
   */
  handedOver(): void {
    this.theirEnd?.destroy();
    this.theirEnd = undefined;
  }

  /** True once the consumer has taken every piece, to the end of the tool's output. */
  get complete(): boolean {
    return this.delivered;
  }

  /** What failed in reading the output (the socket, or a filter), if anything did. */
  get readError(): Error | undefined {
    return this.failure;
  }

  /** Stops reading: the tool then fails to write (EPIPE) instead of waiting for us. */
  destroy(): void {
    this.handedOver();
    this.socket.destroy();
    this.notify();
  }

  private failed(): Promise<never> {
    return new Promise((_resolve, reject) => {
      this.socket.once('error', reject);
    });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.notify();
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /**
   * One read of `length` bytes into `buffer`. Returns false to pause the socket when at most one
   * buffer is free: Node takes the next read's buffer right after this returns, and must find one
   * that no piece uses. Reading resumes when a buffer comes back (release).
   */
  private onRead(length: number, buffer: Buffer): boolean {
    try {
      this.reads.push({ owner: buffer, pieces: filterPiece(this.filters, buffer.subarray(0, length)) });
    } catch (error) {
      this.fail(error as Error);
      this.socket.destroy();
      return false;
    }
    this.notify();
    if (this.free.length <= 1) {
      this.paused = true;
      return false;
    }
    return true;
  }

  private release(buffer: Buffer | undefined): void {
    if (buffer === undefined) return;
    this.free.push(buffer);
    if (this.paused && !this.socket.destroyed) {
      this.paused = false;
      this.socket.resume();
    }
  }

  /** One caller at a time, as `for await` calls it: a second waiting call would never wake. */
  async next(): Promise<IteratorResult<Buffer>> {
    for (;;) {
      // The pieces of the read being handed out, one by one; its buffer goes back after the last
      // (this call means the consumer is done with the piece before).
      const piece = this.current?.pieces.shift();
      if (piece !== undefined) {
        if (piece.length === 0) continue;
        return { value: piece, done: false };
      }
      if (this.current !== undefined) {
        this.release(this.current.owner);
        this.current = undefined;
      }
      if (this.failure !== undefined) throw this.failure;
      const read = this.reads.shift();
      if (read !== undefined) {
        this.current = read;
        continue;
      }
      if (this.ended) {
        if (this.filtersEnded) {
          this.delivered = true;
          return { value: undefined, done: true };
        }
        this.filtersEnded = true;
        this.current = { owner: undefined, pieces: endFilters(this.filters) };
        continue;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** The consumer stopped early (it failed, or was cancelled): stop reading. */
  async return(): Promise<IteratorResult<Buffer>> {
    this.destroy();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return this;
  }
}
