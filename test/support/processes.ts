/** Waiting on processes the tests start, read from /proc as a user would with ps. */
import { readFileSync } from 'node:fs';

/**
 * True once the process has ended: its pid is free, or it is a zombie, which nothing may ever
 * reap where an orphan's parent is gone and there is no init.
 */
export function hasEnded(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return /^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!);
  } catch {
    return true;
  }
}

/** Waits until `check` holds, checking every 20 ms; throws, naming `what`, after `ms`. */
export async function until(what: string, check: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  for (const started = Date.now(); !(await check()); ) {
    if (Date.now() - started > ms) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
