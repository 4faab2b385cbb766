/**
 * Filters on a dump's way to the store (a line taken out, a line measured), written once for two
 * kinds of source: a Node stream (as a Transform, {@link FilterTransform}) and a tool's output read
 * into reused buffers (tool-output.ts), where a filter runs synchronously on each piece.
 */
import { Transform, type TransformCallback } from 'node:stream';

/**
 * A synchronous, byte-exact stage between a dump tool and the store.
 *
 * The rule that lets a source reuse memory: `write` returns the bytes to pass on for `piece`, as
 * views of it or as copies, and must copy anything it keeps after it returns. Once the bytes it
 * returned are consumed, the memory behind `piece` is overwritten with the next read.
 */
export interface PieceFilter {
  write(piece: Buffer): Buffer[];
  /** The bytes still held back when the stream ends. */
  end(): Buffer[];
}

/** Runs `piece` through `filters` in order; the bytes to pass on. */
export function filterPiece(filters: readonly PieceFilter[], piece: Buffer): Buffer[] {
  let pieces = [piece];
  for (const filter of filters) pieces = pieces.flatMap((each) => filter.write(each));
  return pieces;
}

/** Ends `filters` in order (what one holds back still goes through the ones after it). */
export function endFilters(filters: readonly PieceFilter[]): Buffer[] {
  let pieces: Buffer[] = [];
  for (const filter of filters) pieces = [...pieces.flatMap((each) => filter.write(each)), ...filter.end()];
  return pieces.filter((piece) => piece.length > 0);
}

/** A filter as a stream stage. */
export class FilterTransform extends Transform {
  constructor(private readonly stage: PieceFilter) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pass(() => this.stage.write(chunk), callback);
  }

  override _flush(callback: TransformCallback): void {
    this.pass(() => this.stage.end(), callback);
  }

  /** Pushes what the filter passes on; a filter that throws fails the stream, not the process. */
  private pass(filter: () => Buffer[], callback: TransformCallback): void {
    let pieces: Buffer[];
    try {
      pieces = filter();
    } catch (error) {
      callback(error as Error);
      return;
    }
    for (const piece of pieces) if (piece.length > 0) this.push(piece);
    callback();
  }
}
