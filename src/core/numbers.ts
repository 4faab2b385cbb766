/**
 * Numbers as users write them in options and container files: plain decimals only. `Number()`
 * alone also takes `0x10`, `1e3` and surrounding spaces, so a typo could pass as some other value.
 */

const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)$/;
const WHOLE = /^\d+$/;

/**
 * The longest wait in seconds that Node's timers can hold (2^31 - 1 ms, about 24.8 days): a longer
 * one fires at once, so a generous timeout would make every connection attempt time out.
 */
export const MAX_WAIT_SECONDS = Math.floor(0x7fffffff / 1000);

/** A plain decimal number >= 0 (`10`, `0.5`), or undefined when `value` is not one. */
export function parseDecimal(value: string): number | undefined {
  return DECIMAL.test(value) ? Number(value) : undefined;
}

/** A whole number >= 0 (`3`), or undefined when `value` is not one or too large to be exact. */
export function parseWhole(value: string): number | undefined {
  const number = Number(value);
  return WHOLE.test(value) && Number.isSafeInteger(number) ? number : undefined;
}
