/**
 * Global set-up of the reliability suite: clears the results of the last run before, and prints
 * the totals of every area after (trials run, faults injected, data lost).
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const RESULTS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'results');

interface AreaResult {
  area: string;
  trials: number;
  faults: number;
  dataLost: number;
}

export function setup(): void {
  rmSync(RESULTS, { recursive: true, force: true });
}

export function teardown(): void {
  if (!existsSync(RESULTS)) return;
  const areas: AreaResult[] = readdirSync(RESULTS)
    .filter((name) => name.endsWith('.json') && name !== 'summary.json')
    .map((name) => JSON.parse(readFileSync(path.join(RESULTS, name), 'utf8')) as AreaResult)
    .sort((a, b) => a.area.localeCompare(b.area));
  const total = areas.reduce((sum, area) => ({ trials: sum.trials + area.trials, faults: sum.faults + area.faults, dataLost: sum.dataLost + area.dataLost }), {
    trials: 0,
    faults: 0,
    dataLost: 0,
  });
  writeFileSync(path.join(RESULTS, 'summary.json'), `${JSON.stringify({ finished: new Date().toISOString(), total, areas }, null, 2)}\n`);
  const lines = areas.map((a) => `  ${a.area.padEnd(28)} ${String(a.trials).padStart(6)} ${String(a.faults).padStart(7)} ${String(a.dataLost).padStart(10)}`);
  console.log(
    [
      '',
      'reliability summary (test/reliability/results/summary.json)',
      `  ${'area'.padEnd(28)} ${'trials'.padStart(6)} ${'faults'.padStart(7)} ${'data lost'.padStart(10)}`,
      ...lines,
      `  ${'total'.padEnd(28)} ${String(total.trials).padStart(6)} ${String(total.faults).padStart(7)} ${String(total.dataLost).padStart(10)}`,
    ].join('\n'),
  );
}
