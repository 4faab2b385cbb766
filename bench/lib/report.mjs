/** The targets (PASS/MISS, never asserted anywhere), the markdown table and the JSON results. */
import { mb, median } from './stats.mjs';

const RSS_LIMIT_BYTES = 256e6;

const x = (value) => (value === undefined ? '–' : `${value.toFixed(2)}x`);
const s = (value) => (value === undefined ? '–' : `${value.toFixed(2)} s`);

/** The performance targets of issues 3, 4 and 5, evaluated on the results. */
export function evaluateTargets(results) {
  const targets = [];
  const add = (name, measured, limit, pass) => targets.push({ name, measured, limit, result: pass ? 'PASS' : 'MISS' });
  for (const db of results.databases ?? []) {
    const e = db.engine;
    add(`${e}: snapshot vs bare dump`, x(db.snapshot.medianRatio), '≤ 1.50x', db.snapshot.medianRatio <= 1.5);
    for (const [what, figure] of [
      ['unchanged snapshot', db.unchanged],
      ['unchanged snapshot, dumped all the same,', db.unchangedDumped],
    ]) {
      if (!figure) continue;
      add(`${e}: ${what} vs bare dump`, x(figure.medianRatio), '≤ 1.20x', figure.medianRatio <= 1.2);
      add(
        `${e}: ${what} stores nothing`,
        `${figure.newBytesStored} bytes, ${figure.newGenerations} new generations`,
        '0 bytes, 0 generations',
        figure.newBytesStored === 0 && figure.newGenerations === 0,
      );
    }
    add(`${e}: restore vs bare load`, x(db.restore.medianRatio), '≤ 1.50x', db.restore.medianRatio <= 1.5);
    if (db.growth.firstNightGrowthPercent !== undefined) {
      add(`${e}: store growth after one night`, `${db.growth.firstNightGrowthPercent.toFixed(1)}%`, '≤ 30% of the first snapshot', db.growth.firstNightGrowthPercent <= 30);
    }
    add(`${e}: peak RSS (snapshot, restore)`, mb(db.maxRssKiB * 1024), '< 256 MB', db.maxRssKiB * 1024 < RSS_LIMIT_BYTES);
  }
  const git = results.git;
  if (git) {
    add('git: snapshot vs git bundle --all', x(git.changed.medianRatio), '≤ 1.30x', git.changed.medianRatio <= 1.3);
    add(
      'git: unchanged snapshot beyond node start-up',
      s(git.unchanged.beyondNodeStartSeconds),
      '< 0.30 s',
      git.unchanged.beyondNodeStartSeconds < 0.3,
    );
  }
  for (const target of results.store?.targets ?? []) add(target.name, target.measured, target.limit, target.pass);
  return targets;
}

function table(header, rows) {
  const line = (cells) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

function databaseSection(db, pairs) {
  const lines = [];
  lines.push(`## ${db.engine} ${db.serverVersion}`, '');
  lines.push(
    `Database \`${db.database}\`: the shared dataset at scale ${db.scale} (${db.dataset}), ${mb(db.snapshot.logicalBytes)} as our logical dump, ` +
      `${mb(db.plainDumpBytes)} as a plain \`${db.referenceDump.replace(' > /dev/null', '')}\`. ` +
      `Times are medians of ${pairs} pairs, run alternately (reference, ours); the ratio is the median of the per-pair ratios.`,
    '',
  );
  const rows = [
    ['snapshot into an empty store', s(db.snapshot.ours.medianSeconds), `\`${db.referenceDump}\``, s(db.snapshot.reference.medianSeconds), x(db.snapshot.medianRatio)],
  ];
  if (db.xz) {
    rows.push([
      "Dysnomia's pipeline, timed once (for comparison)",
      s(db.xz.seconds),
      `\`${db.referenceDump}\` (median above)`,
      s(db.snapshot.reference.medianSeconds),
      x(db.xz.ratioToBareDump),
    ]);
  }
  const spared = db.unchanged.byFingerprint ? ` (the fingerprint spared the dump in ${db.unchanged.byFingerprint} of ${pairs} runs)` : '';
  rows.push(
    [`snapshot of the unchanged database${spared}`, s(db.unchanged.ours.medianSeconds), `\`${db.referenceDump}\``, s(db.unchanged.reference.medianSeconds), x(db.unchanged.medianRatio)],
  );
  if (db.unchangedDumped) {
    const dumped = db.unchangedDumped;
    rows.push([
      'snapshot of the unchanged database, dumped all the same (as after a change elsewhere on the server)',
      s(dumped.ours.medianSeconds),
      `\`${db.referenceDump}\``,
      s(dumped.reference.medianSeconds),
      x(dumped.medianRatio),
    ]);
  }
  if (db.floor) {
    rows.push([
      'floor, no target: the dump read and hashed once by `sha256sum`',
      s(db.floor.ours.medianSeconds),
      `\`${db.referenceDump}\``,
      s(db.floor.reference.medianSeconds),
      x(db.floor.medianRatio),
    ]);
  }
  for (const [key, how] of [
    ['nodeFloor', 'a fresh buffer per read, as our snapshot reads'],
    ['nodeFloorReused', 'one reused buffer'],
  ]) {
    if (!db[key]) continue;
    rows.push([
      `floor, no target: the dump read and hashed once by Node (${how})`,
      s(db[key].ours.medianSeconds),
      `\`${db.referenceDump}\``,
      s(db[key].reference.medianSeconds),
      x(db[key].medianRatio),
    ]);
  }
  rows.push(
    ['restore (staging load, check, swap)', s(db.restore.ours.medianSeconds), `\`${db.referenceLoad}\` into an empty database`, s(db.restore.reference.medianSeconds), x(db.restore.medianRatio)],
  );
  if (db.growth.nightlySnapshotRatio !== undefined) {
    const later = db.growth.nights.slice(1);
    const med = (key) => [...later.map((n) => n[key])].sort((a, b) => a - b)[Math.floor(later.length / 2)];
    rows.push([
      `nightly snapshot after churn (median of ${later.length} nights)`,
      s(med('snapshotSeconds')),
      `that night's \`${db.referenceDump.replace(' > /dev/null', '')} \\| wc -c\``,
      s(med('dumpSeconds')),
      x(db.growth.nightlySnapshotRatio),
    ]);
  }
  lines.push(table(['figure', 'ours', 'reference', 'reference time', 'ratio'], rows), '');
  lines.push(
    `Our snapshot: ${mb(db.snapshot.logicalBytes)} logical in, ${mb(db.snapshot.storeSizeBytes)} on disk ` +
      `(${db.snapshot.writeMBps.toFixed(0)} MB/s of logical input end to end, dump tool included). ` +
      `Unchanged snapshot: ${db.unchanged.newBytesStored} bytes newly stored, ${db.unchanged.newGenerations} new generations. ` +
      `Peak RSS of our process tree: snapshot ${mb(db.snapshot.ours.maxRssKiB * 1024)}, restore ${mb(db.restore.ours.maxRssKiB * 1024)}, ` +
      `nightly snapshots ${mb(db.growth.maxRssKiB * 1024)} (the bare tools: dump ${mb(db.snapshot.reference.maxRssKiB * 1024)}, load ${mb(db.restore.reference.maxRssKiB * 1024)}).`,
    '',
  );
  lines.push(`### ${db.engine}: store size over ${db.growth.nights.length - 1} nights of churn`, '');
  let xzTotal = 0;
  let plainTotal = 0;
  let resticNote = false;
  const growthRows = db.growth.nights.map((night) => {
    xzTotal += night.xzBytes ?? 0;
    plainTotal += night.dumpBytes;
    if (night.resticBytes !== undefined) resticNote = true;
    const row = [
      String(night.night),
      mb(night.dumpBytes),
      `+${mb(night.bytesStored)}`,
      mb(night.storeBytes),
      night.xzBytes === undefined ? '–' : `${mb(xzTotal)}${night.xzMeasured ? '' : ' (est.)'}`,
      mb(plainTotal),
    ];
    if (resticNote) row.push(mb(night.resticBytes));
    return row;
  });
  const header = ['night', 'logical dump', 'ours: newly stored', 'ours: store size', "Dysnomia: an xz copy per night (total)", 'a plain dump per night (total)'];
  if (resticNote) header.push('restic repository');
  lines.push(table(header, growthRows), '');
  const notes = [];
  if (db.growth.firstNightGrowthPercent !== undefined) {
    notes.push(`Growth after one night: ${db.growth.firstNightGrowthPercent.toFixed(1)}% of the first snapshot's size on disk.`);
  }
  if (db.growth.nights.some((night) => night.xzMeasured === false)) {
    notes.push(
      "(est.): xz was run on night 0 only (it takes minutes); later nights apply night 0's xz ratio to that night's dump size. `--xz-every-night` measures each night.",
    );
  }
  notes.push(`restic: ${db.growth.restic}.`);
  lines.push(notes.join(' '), '');
  return lines.join('\n');
}

/** The whole results file as markdown. */
export function markdown(results, { plotFile } = {}) {
  const lines = ['# dysnomia benchmarks', ''];
  const m = results.machine;
  lines.push(
    `Run ${results.started} on \`${m.kind}\`: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.tools.join(', ')}. ` +
      `Load average at start ${m.loadAtStart.join(' / ')}, at the end ${m.loadAtEnd.join(' / ')}.` +
      (results.noisy ? ' **Noisy: the machine was busy during this run; ratios are rough.**' : ''),
    '',
    `Command: \`${results.command}\``,
    '',
  );
  lines.push('## Targets', '', table(['target', 'measured', 'limit', 'result'], results.targets.map((t) => [t.name, t.measured, t.limit, `**${t.result}**`])), '');
  for (const db of results.databases ?? []) lines.push(databaseSection(db, results.options.pairs));
  if (plotFile && (results.databases ?? []).length > 0) lines.push(`![store size over the nights, ours vs a full copy per night](${plotFile})`, '');
  if (results.git) {
    const g = results.git;
    const med = (values) => (values ? s(median(values)) : '–');
    const pairs = (figure) => `${x(figure.medianRatio)} (pairs: ${figure.ratios.map((r) => r.toFixed(2)).join(', ')})`;
    const rows = [
      [`snapshot of a ${g.repositoryMiB} MiB repository into an empty store`, med(g.changed.snapshotSeconds), '`git bundle create - --all > /dev/null`', med(g.changed.bundleSeconds), pairs(g.changed)],
    ];
    if (g.nightly) {
      rows.push(['snapshot after one new commit (previous snapshot in the store)', med(g.nightly.snapshotSeconds), '`git bundle create - --all > /dev/null`', med(g.nightly.bundleSeconds), pairs(g.nightly)]);
    }
    rows.push(['snapshot of the unchanged repository', s(g.unchanged.snapshotSeconds), '`node -e 0`', s(g.unchanged.nodeStartSeconds), `${s(g.unchanged.beyondNodeStartSeconds)} beyond node start-up`]);
    lines.push('## git-repository (bench/git-bench.mjs)', '', table(['figure', 'ours', 'reference', 'reference time', 'ratio / cost'], rows), '');
  }
  if (results.store) lines.push('## Snapshot store (bench/store-bench.mjs)', '', results.store.markdown ?? '', '');
  for (const skipped of results.skipped ?? []) lines.push(`Not measured: ${skipped}`, '');
  for (const failed of results.failed ?? []) lines.push(`**Failed:** ${failed}`, '');
  return `${lines.join('\n').trimEnd()}\n`;
}
