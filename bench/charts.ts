/**
 * SVG charts of a bench run, beside its tables: throughput and p50/p99 latency against
 * concurrency (ours against the seed tutorial's protocol), the engines side by side per batch
 * size, and scale-out over workers and over shards. Vega-Lite specs rendered to SVG by Vega in
 * this process (no browser, no canvas, nothing fetched), from the run's JSON, so the charts of a
 * committed run can be drawn again (`npm run bench:charts`).
 *
 * @example
 * const charts = await drawCharts(report.sections);   // [{ file: 'e2e-throughput.svg', title, svg }, ...]
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

export interface Chart {
  file: string;
  title: string;
  svg: string;
}

interface LoadRowJson {
  concurrency: number;
  throughput: number;
  latencyMs: { p50: number; p99: number };
}

/** The JSON of a run's sections, keyed by title (bench.json `sections`). */
export type SectionsJson = Record<string, unknown>;

const section = <T>(sections: SectionsJson, prefix: string): T | undefined =>
  Object.entries(sections).find(([title]) => title.startsWith(prefix))?.[1] as T | undefined;

const WIDTH = 420;
const HEIGHT = 260;

async function render(spec: TopLevelSpec): Promise<string> {
  const view = new View(parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}

/** Lines of `y` against `x`, one per `series`, with points (a reader sees each measured level). */
/** `x.ticks`: the measured levels only (workers, shards: whole numbers). `dash`: a field told apart by dashes (p50, p99). */
const lines = (
  title: string,
  values: Record<string, unknown>[],
  x: { field: string; title: string; log?: boolean; ticks?: number[] },
  y: { field: string; title: string; log?: boolean },
  dash?: string,
): TopLevelSpec => ({
  $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
  title,
  width: WIDTH,
  height: HEIGHT,
  data: { values },
  mark: { type: 'line', point: true },
  config: { legend: { labelLimit: 320 } },
  encoding: {
    x: {
      field: x.field,
      type: 'quantitative',
      title: x.title,
      scale: x.log ? { type: 'log' } : { zero: false },
      ...(x.ticks && { axis: { values: x.ticks, format: 'd' } }),
    },
    y: { field: y.field, type: 'quantitative', title: y.title, ...(y.log && { scale: { type: 'log' } }) },
    color: { field: 'series', type: 'nominal', title: null },
    ...(dash && { strokeDash: { field: dash, type: 'nominal', title: null } }),
  },
});

export async function drawCharts(sections: SectionsJson): Promise<Chart[]> {
  const specs: { file: string; spec: TopLevelSpec }[] = [];
  const ours = section<{ rows: LoadRowJson[] }>(sections, 'End to end')?.rows ?? [];
  const seed = section<{ rows: LoadRowJson[] }>(sections, 'Seed-protocol baseline')?.rows ?? [];
  const loads = [
    ...ours.map((row) => ({ ...row, series: 'this pipeline' })),
    ...seed.map((row) => ({ ...row, series: "the seed's protocol" })),
  ];
  if (loads.length > 0) {
    specs.push({
      file: 'e2e-throughput.svg',
      spec: lines(
        'Throughput against concurrency (real ResNet50, same engine)',
        loads,
        { field: 'concurrency', title: 'requests in flight', log: true },
        { field: 'throughput', title: 'requests/s' },
      ),
    });
    const latency = loads.flatMap((row) => [
      { concurrency: row.concurrency, ms: row.latencyMs.p50, series: row.series, percentile: 'p50' },
      { concurrency: row.concurrency, ms: row.latencyMs.p99, series: row.series, percentile: 'p99' },
    ]);
    specs.push({
      file: 'e2e-latency.svg',
      spec: lines(
        'Latency against concurrency',
        latency,
        { field: 'concurrency', title: 'requests in flight', log: true },
        { field: 'ms', title: 'ms', log: true },
        'percentile',
      ),
    });
  }
  const engines = section<{ results: { setup: string; batchSize: number; aggregateImgPerSec: number }[] }>(
    sections,
    'Bare engines',
  )?.results;
  if (engines?.length) {
    specs.push({
      file: 'engines.svg',
      spec: lines(
        'Bare engines: images/s by batch size',
        engines.map((r) => ({ batch: r.batchSize, imgPerSec: r.aggregateImgPerSec, series: r.setup })),
        { field: 'batch', title: 'batch size', log: true, ticks: [...new Set(engines.map((r) => r.batchSize))] },
        { field: 'imgPerSec', title: 'images/s (all replicas)' },
      ),
    });
  }
  const workers = section<{ rows: (LoadRowJson & { workers: number })[] }>(sections, 'Scale-out')?.rows;
  const shards = section<{ rows: (LoadRowJson & { shards: number; redisMsPerRequest: number[] })[] }>(sections, 'Shards')?.rows;
  const scale = [
    ...(workers ?? []).map((row) => ({ n: row.workers, throughput: row.throughput, series: 'workers (50 ms timer model)' })),
    ...(shards ?? []).map((row) => ({ n: row.shards, throughput: row.throughput, series: 'shards (instant model)' })),
  ];
  if (scale.length > 0) {
    specs.push({
      file: 'scale-out.svg',
      spec: lines(
        'Scale-out: requests/s against workers and shards',
        scale,
        { field: 'n', title: 'workers or shards' },
        { field: 'throughput', title: 'requests/s' },
      ),
    });
  }
  if (shards?.length) {
    specs.push({
      file: 'shards-redis-cpu.svg',
      spec: lines(
        'Redis CPU per request of the busiest shard',
        shards.map((row) => ({ n: row.shards, ms: Math.max(...row.redisMsPerRequest), series: 'busiest shard' })),
        { field: 'n', title: 'shards', ticks: shards.map((row) => row.shards) },
        { field: 'ms', title: 'Redis CPU ms per request' },
      ),
    });
  }
  return Promise.all(specs.map(async ({ file, spec }) => ({ file, title: String(spec.title), svg: await render(spec) })));
}

/** The last section of bench.md: the charts, by file name. */
export const CHARTS_HEADING = '## Charts';

/** Draw the charts into `dir`; returns the markdown section that shows them. */
export async function writeCharts(dir: string, sections: SectionsJson): Promise<string> {
  const charts = await drawCharts(sections);
  for (const chart of charts) writeFileSync(join(dir, chart.file), chart.svg);
  return [CHARTS_HEADING, '', ...charts.flatMap((chart) => [`![${chart.title}](${chart.file})`, ''])].join('\n');
}

// `npm run bench:charts [-- DIR]`: the charts of a run already written (default bench/results),
// and bench.md's charts section, replaced or added.
if (import.meta.url === `file://${process.argv[1]}`) {
  const dir = process.argv[2] ?? 'bench/results';
  const { sections } = JSON.parse(readFileSync(join(dir, 'bench.json'), 'utf8')) as { sections: SectionsJson };
  const markdown = readFileSync(join(dir, 'bench.md'), 'utf8');
  const at = markdown.indexOf(`\n${CHARTS_HEADING}\n`);
  const tables = at < 0 ? markdown.trimEnd() : markdown.slice(0, at).trimEnd();
  writeFileSync(join(dir, 'bench.md'), `${tables}\n\n${await writeCharts(dir, sections)}`);
  console.log(`wrote the charts of ${join(dir, 'bench.json')} and their section of bench.md`);
}
