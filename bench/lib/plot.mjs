/**
 * The store-growth chart: total bytes kept after each night, ours against a full copy per night
 * (Dysnomia's xz copy, and a plain dump), one panel per database. Vega-Lite lays it out as SVG;
 * resvg renders the PNG (both plain npm packages: no browser, no native build).
 */
import { writeFile } from 'node:fs/promises';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import { compile } from 'vega-lite';

const SERIES = {
  ours: 'dysnomia (this project): its store',
  xz: 'Dysnomia: an xz copy per night',
  plain: 'a plain dump per night',
  restic: 'restic: its repository',
};
const COLORS = { [SERIES.ours]: '#2ca02c', [SERIES.xz]: '#d62728', [SERIES.plain]: '#7f7f7f', [SERIES.restic]: '#1f77b4' };

/** Rows of the chart: one per database, night and series, in MB kept so far. */
export function growthSeries(databases) {
  const rows = [];
  for (const db of databases) {
    let xz = 0;
    let plain = 0;
    for (const night of db.growth.nights) {
      const push = (series, bytes) => rows.push({ database: db.engine, night: night.night, series, MB: Math.round(bytes / 1e5) / 10 });
      plain += night.dumpBytes;
      push(SERIES.plain, plain);
      if (night.xzBytes !== undefined) {
        xz += night.xzBytes;
        push(SERIES.xz, xz);
      }
      if (night.resticBytes !== undefined) push(SERIES.restic, night.resticBytes);
      push(SERIES.ours, night.storeBytes);
    }
  }
  return rows;
}

/** Writes the chart of `databases` (results.databases) as a PNG file. */
export async function plotGrowth(databases, file) {
  const rows = growthSeries(databases);
  const present = Object.values(SERIES).filter((series) => rows.some((row) => row.series === series));
  const estimated = databases.some((db) => db.growth.nights.some((night) => night.xzMeasured === false));
  const spec = compile({
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: {
      text: 'Total size of the snapshots kept, night after night',
      subtitle: `shared benchmark data and nightly churn${estimated ? "; xz sizes after night 0 estimated from night 0's ratio" : ''}`,
      fontSize: 15,
    },
    data: { values: rows },
    facet: { column: { field: 'database', type: 'nominal', title: null, header: { labelFontSize: 14 } } },
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 380,
      height: 280,
      mark: { type: 'line', point: true, strokeWidth: 2.5 },
      encoding: {
        x: { field: 'night', type: 'quantitative', title: 'night', axis: { tickMinStep: 1 } },
        y: { field: 'MB', type: 'quantitative', title: 'total stored (MB)', scale: { zero: true } },
        color: {
          field: 'series',
          type: 'nominal',
          title: null,
          scale: { domain: present, range: present.map((series) => COLORS[series]) },
          legend: { orient: 'bottom', direction: 'vertical', labelFontSize: 12, labelLimit: 0 },
        },
      },
    },
    config: { background: 'white', font: 'DejaVu Sans' },
  }).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' } }).render().asPng();
  await writeFile(file, png);
}
