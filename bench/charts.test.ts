import { describe, expect, it } from 'vitest';
import { drawCharts } from './charts.ts';

const load = (concurrency: number, throughput: number, p50: number, p99: number) => ({ concurrency, throughput, latencyMs: { p50, p99 } });

describe('drawCharts', () => {
  it('draws each chart a run has the data for, as SVG with its axes, series and one point per measured level', async () => {
    const charts = await drawCharts({
      'End to end (edge + Upstash REST + Redis + worker)': { rows: [load(1, 20, 43, 89), load(8, 28, 280, 350), load(64, 29, 2200, 2600)] },
      'Seed-protocol baseline (LRANGE/LTRIM, 0.25 s sleeps, float32 base64)': { rows: [load(1, 3, 280, 560), load(64, 8, 3600, 6700)] },
      'Bare engines (no HTTP, no Redis)': {
        results: [
          { setup: 'onnx', batchSize: 1, aggregateImgPerSec: 33 },
          { setup: 'onnx', batchSize: 8, aggregateImgPerSec: 38 },
          { setup: 'tfjs', batchSize: 1, aggregateImgPerSec: 3 },
          { setup: 'tfjs', batchSize: 8, aggregateImgPerSec: 2 },
        ],
      },
      'Scale-out (50 ms timer model)': { rows: [1, 2, 4].map((workers) => ({ ...load(32, 18 * workers, 50, 60), workers })) },
      'Shards (instant synthetic model, 1, 2, 4 redis-servers)': {
        rows: [1, 2, 4].map((shards) => ({ ...load(64, 100, 600, 2000), shards, redisMsPerRequest: Array(shards).fill(0.6 / shards) })),
      },
    });
    expect(charts.map((chart) => chart.file)).toEqual([
      'e2e-throughput.svg',
      'e2e-latency.svg',
      'engines.svg',
      'scale-out.svg',
      'shards-redis-cpu.svg',
    ]);
    const byFile = Object.fromEntries(charts.map((chart) => [chart.file, chart.svg]));
    for (const svg of Object.values(byFile)) expect(svg).toMatch(/^<svg[\s\S]*<\/svg>$/);
    expect(byFile['e2e-throughput.svg']).toContain('requests in flight');
    expect(byFile['e2e-throughput.svg']).toContain("the seed's protocol");
    expect(byFile['e2e-latency.svg']).toContain('series: this pipeline; percentile: p99');
    expect(byFile['engines.svg']).toContain('tfjs');
    // One point per measured level (3 ours, 2 the seed's), each labelled with its values.
    expect(byFile['e2e-throughput.svg']!.match(/aria-roledescription="point"/g)).toHaveLength(5);
    expect(byFile['e2e-throughput.svg']).toContain('requests in flight: 64; requests/s: 29; series: this pipeline');
    expect(byFile['shards-redis-cpu.svg']).toContain('shards: 4; Redis CPU ms per request: 0.15');
  });

  it('draws nothing for a run without those sections (--only engine,conversion)', async () => {
    expect(await drawCharts({ 'ONNX conversion (cold cache)': {} })).toEqual([]);
  });
});
