/** Running a dump filter (sql/piece-filter.ts) as the store's borrowed-piece reader runs it. */
import type { PieceFilter } from '../../src/plugins/sql/piece-filter.js';

/**
 * What `filter` passes on for `pieces` when every piece arrives in the same memory, which is
 * overwritten with 0xee once the pieces made of it are consumed, as tool-output.ts does with its
 * read buffers. A filter that kept a view of a piece instead of a copy passes on 0xee bytes.
 */
export function filterInReusedMemory(filter: PieceFilter, pieces: Buffer[]): Buffer {
  const size = Math.max(1, ...pieces.map((piece) => piece.length));
  const memory = Buffer.alloc(size);
  const out: Buffer[] = [];
  for (const piece of pieces) {
    piece.copy(memory);
    for (const passed of filter.write(memory.subarray(0, piece.length))) out.push(Buffer.from(passed));
    memory.fill(0xee);
  }
  for (const passed of filter.end()) out.push(Buffer.from(passed));
  return Buffer.concat(out);
}

/** `bytes` cut into pieces of `size` bytes (the last may be shorter). */
export function cut(bytes: Buffer, size: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) pieces.push(bytes.subarray(at, at + size));
  return pieces;
}
