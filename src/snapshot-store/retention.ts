/**
 * Which generations gc keeps: the newest N (`--keep`, Dysnomia's rule) and, as restic's `forget`
 * does, the newest generation of each of the last N days, ISO weeks and months that have one
 * (`--keep-daily`, `--keep-weekly`, `--keep-monthly`). The policies add up: a generation survives
 * when any of them keeps it. Days, weeks and months are in local time.
 */
import { UsageError } from '../core/errors.js';
import type { TimedGeneration } from './generations.js';

/** A retention policy; every count must be a whole number >= 0. */
export interface RetentionPolicy {
  /** Keep the newest N generations. */
  last: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
}

/** True when the policy needs the generations' times. */
export function needsTimes(policy: RetentionPolicy): boolean {
  return (policy.daily ?? 0) > 0 || (policy.weekly ?? 0) > 0 || (policy.monthly ?? 0) > 0;
}

/** Checks a policy: every count a whole number >= 0, named in the error. */
export function validatePolicy(policy: RetentionPolicy): RetentionPolicy {
  const counts: [string, number | undefined][] = [
    ['--keep', policy.last],
    ['--keep-daily', policy.daily],
    ['--keep-weekly', policy.weekly],
    ['--keep-monthly', policy.monthly],
  ];
  for (const [option, value] of counts) {
    if (value !== undefined && (!Number.isSafeInteger(value) || value < 0)) {
      throw new UsageError(`${option} ${value}: expected a whole number of generations >= 0`);
    }
  }
  return policy;
}

/**
 * The numbers of the generations to keep. `generations` may be in any order.
 *
 * `--keep` counts generation numbers, as Dysnomia does. The time buckets go by time: numbers and
 * times disagree once an older snapshot is imported again (to restore it, it becomes the latest
 * generation with its old date) or a history arrives newest first, and walked by number a
 * `--keep-daily 1` then kept that old snapshot as "today's" and removed today's. The latest
 * generation by number is kept whenever a time bucket is asked for: it is what a restore takes.
 */
export function generationsToKeep(generations: readonly TimedGeneration[], policy: RetentionPolicy): Set<number> {
  const byNumber = [...generations].sort((a, b) => b.number - a.number);
  const kept = new Set<number>(byNumber.slice(0, policy.last).map((g) => g.number));
  if (needsTimes(policy) && byNumber.length > 0) kept.add(byNumber[0]!.number);
  const byTime = [...generations].sort((a, b) => b.time.getTime() - a.time.getTime() || b.number - a.number);
  const buckets: [number | undefined, (time: Date) => string][] = [
    [policy.daily, dayOf],
    [policy.weekly, weekOf],
    [policy.monthly, monthOf],
  ];
  for (const [count, bucketOf] of buckets) {
    if (count === undefined || count <= 0) continue;
    const seen = new Set<string>();
    for (const generation of byTime) {
      if (seen.size >= count) break;
      const bucket = bucketOf(generation.time);
      if (seen.has(bucket)) continue;
      seen.add(bucket);
      kept.add(generation.number);
    }
  }
  return kept;
}

function pad(value: number): string {
  return String(value).padStart(2, '0');
}

function dayOf(time: Date): string {
  return `${time.getFullYear()}-${pad(time.getMonth() + 1)}-${pad(time.getDate())}`;
}

function monthOf(time: Date): string {
  return `${time.getFullYear()}-${pad(time.getMonth() + 1)}`;
}

/** The ISO 8601 week (`2024-W05`) of a local date. */
function weekOf(time: Date): string {
  const date = new Date(Date.UTC(time.getFullYear(), time.getMonth(), time.getDate()));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday);
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${date.getUTCFullYear()}-W${pad(week)}`;
}
