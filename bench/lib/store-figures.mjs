/**
 * The snapshot store's own figures (issue 3: write throughput, growth per chunk size, 10,000
 * generations) come from the store engineer's bench/store-bench.mjs.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from './dysnomia.mjs';

/** Runs bench/store-bench.mjs, or says why the store figures were not measured. */
export async function storeFigures() {
  const script = path.join(ROOT, 'bench', 'store-bench.mjs');
  if (!existsSync(script)) return { skipped: 'the snapshot store figures: bench/store-bench.mjs is not there yet' };
  throw new Error('bench/store-bench.mjs exists but the harness does not read its output yet');
}
