/** Medians and the A B A B comparison every figure uses. */

/** The median of a non-empty list of numbers. */
export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/**
 * Runs the reference and our command alternately, `pairs` times (reference first in every pair),
 * after `before()` when given (untimed set-up, e.g. a fresh state dir). Each side is a function
 * resolving to `{ seconds, ... }`. The ratio is ours / reference per pair; its median is the figure.
 */
export async function alternate({ pairs, reference, ours, before, log }) {
  const referenceRuns = [];
  const ourRuns = [];
  for (let pair = 0; pair < pairs; pair++) {
    if (before) await before('reference', pair);
    referenceRuns.push(await reference(pair));
    if (before) await before('ours', pair);
    ourRuns.push(await ours(pair));
    const a = referenceRuns.at(-1).seconds;
    const b = ourRuns.at(-1).seconds;
    log?.(`  pair ${pair + 1}/${pairs}: reference ${a.toFixed(2)} s, ours ${b.toFixed(2)} s, ratio ${(b / a).toFixed(2)}`);
  }
  const ratios = ourRuns.map((run, i) => run.seconds / referenceRuns[i].seconds);
  return {
    reference: summary(referenceRuns),
    ours: summary(ourRuns),
    ratios: ratios.map(round3),
    medianRatio: round3(median(ratios)),
  };
}

function summary(runs) {
  const seconds = runs.map((run) => run.seconds);
  const out = { seconds: seconds.map(round3), medianSeconds: round3(median(seconds)) };
  const rss = runs.map((run) => run.maxRssKiB).filter((value) => value !== undefined);
  if (rss.length > 0) out.maxRssKiB = Math.max(...rss);
  return out;
}

/** Rounds to 3 decimals (the JSON stays readable). */
export function round3(value) {
  return Math.round(value * 1000) / 1000;
}

/** Bytes as MB (10^6), 1 decimal. */
export function mb(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}
