/**
 * `npm run bench` end to end on the tiny model (`--model tiny --quick`), as a user runs it: both
 * engines, every section against real processes (redis-server, the local Upstash REST server, the
 * edge, workers, the seed baseline) and the report is written. Speed is not asserted here (that is what
 * the bench itself reports); what is asserted is that every section measured something real:
 * answers without errors, Redis commands counted, bytes weighed, every target computed, the charts drawn.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LoadRow } from '../bench/pipeline.ts';
import type { Target } from '../bench/sections.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';

const run = promisify(execFile);

interface Report {
  header: string;
  sections: Record<string, unknown>;
}

describe('npm run bench -- --model tiny --quick', () => {
  let out: string;
  let stdout: string;
  let report: Report;
  let markdown: string;
  const section = <T>(prefix: string) => {
    const title = Object.keys(report.sections).find((t) => t.startsWith(prefix));
    expect(title, `section "${prefix}..." in ${Object.keys(report.sections).join(' | ')}`).toBeDefined();
    return report.sections[title!] as T;
  };

  beforeAll(async () => {
    out = await mkdtemp(join(tmpdir(), 'bench-run-'));
    // The tiny model's converted graph goes to a cache of this run's own.
    ({ stdout } = await run(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--model', 'tiny', '--quick', '--out', out], {
      timeout: 420_000,
      maxBuffer: 16 * 1024 * 1024,
      env: { ...process.env, MODEL_CACHE_DIR: join(out, 'models') },
    }));
    report = JSON.parse(await readFile(join(out, 'bench.json'), 'utf8')) as Report;
    markdown = await readFile(join(out, 'bench.md'), 'utf8');
  }, 450_000);

  afterAll(async () => {
    if (out) await rm(out, { recursive: true, force: true });
  });

  it('names the machine, the engines and the model in the first line: as asked when printed, as they loaded when written', () => {
    expect(stdout.split('\n')[0]).toMatch(
      /^Machine: .+ cores, .+; Node v\d+.*; engines onnx \(EXECUTION_PROVIDER=auto\), tfjs \(BACKEND=auto\); model tiny/,
    );
    expect(report.header).toMatch(
      /; engines onnx \(cpu, \d+ threads? per replica: onnxruntime-node \d+\.\d+\.\d+.*\), tfjs \(wasm, 1 thread per replica: .*\); model tiny/,
    );
    expect(markdown.split('\n')[0]).toBe(report.header);
  });

  it('writes the SVG charts beside the tables, shown at the end of bench.md', async () => {
    const files = [...markdown.slice(markdown.indexOf('\n## Charts\n')).matchAll(/!\[[^\]]+\]\(([\w.-]+\.svg)\)/g)].map((m) => m[1]!);
    expect(files).toEqual(['e2e-throughput.svg', 'e2e-latency.svg', 'engines.svg', 'scale-out.svg', 'shards-redis-cpu.svg']);
    for (const file of files)
      expect(await readFile(join(out, file), 'utf8'), file).toMatch(/^<svg[\s\S]*aria-roledescription="point"[\s\S]*<\/svg>$/);
  });

  it('measures both engines side by side and the ONNX conversion on a cold cache', () => {
    const { results } = section<{ results: { setup: string; batchSize: number; aggregateImgPerSec: number; cpuMsPerImage: number }[] }>(
      'Bare engines',
    );
    expect([...new Set(results.map((r) => r.setup))]).toEqual(['onnx', 'tfjs', `tfjs x${Math.max(2, availableParallelism())}`]);
    for (const r of results) {
      expect(r.aggregateImgPerSec).toBeGreaterThan(0);
      expect(r.cpuMsPerImage).toBeGreaterThan(0);
    }
    const conversion = section<{ convertMs: number; firstMs: number; warmMedianMs: number; nodes: number; provider: string }>(
      'ONNX conversion',
    );
    expect(conversion).toMatchObject({ provider: 'cpu', nodes: expect.any(Number) });
    expect(conversion.convertMs).toBeGreaterThan(0);
    expect(conversion.warmMedianMs).toBeGreaterThan(0);
  });

  it('runs the end-to-end and seed sections at concurrency 1, 8, 32, 64 without errors', () => {
    for (const prefix of ['End to end', 'Seed-protocol baseline']) {
      const rows = section<{ rows: LoadRow[] }>(prefix).rows;
      expect(rows.map((r) => r.concurrency)).toEqual([1, 8, 32, 64]);
      for (const row of rows) {
        expect(row.errors, `${prefix} c=${row.concurrency}: ${JSON.stringify(row.byStatus)}`).toBe(0);
        expect(row.ok).toBe(row.requests);
        expect(row.throughput).toBeGreaterThan(0);
        expect(row.latencyMs.p99).toBeGreaterThanOrEqual(row.latencyMs.p50);
        expect(row.commandsPerRequest).toBeGreaterThan(0);
      }
    }
    const direct = section<{ directRow: LoadRow }>('End to end').directRow;
    expect(direct.concurrency).toBe(1);
    expect(direct.errors).toBe(0);
    // Both report a server split; only ours measures the queue wait.
    const [ours, seed] = ['End to end', 'Seed-protocol baseline'].map((prefix) => section<{ rows: LoadRow[] }>(prefix).rows[0]!.timingsMs);
    for (const split of [ours, seed]) {
      expect(split?.inference).toBeGreaterThan(0);
      expect(split?.total).toBeGreaterThanOrEqual(split!.preprocess);
      expect(split?.overhead).toBeGreaterThan(0);
    }
    expect(ours?.queue).toBeGreaterThanOrEqual(0);
    // Concurrency 1 with the synthetic models, over both brokers.
    const anatomy = section<{ anatomy: { broker: string; model: string; overhead: number }[] }>('End to end').anatomy;
    expect(anatomy.map((r) => `${r.broker} ${r.model.replace(/\d+$/, 'N')}`)).toEqual([
      'upstash synthetic:instant',
      'upstash synthetic:timer:N',
      'ioredis synthetic:instant',
      'ioredis synthetic:timer:N',
    ]);
    for (const row of anatomy) expect(row.overhead).toBeGreaterThan(0);
    // The bare engine measured a second time, beside the saturated levels; the fastest engine ran
    // the pipeline, and the same stack ran saturated on tfjs.
    const e2e = section<{
      setup: string;
      bareAfter: { aggregateImgPerSec: number; batchSize: number };
      compared?: { setup: string; row: LoadRow };
    }>('End to end');
    expect(e2e.bareAfter).toMatchObject({ batchSize: 4, aggregateImgPerSec: expect.any(Number) });
    expect(e2e.setup).toBe('onnx');
    expect(e2e.compared?.setup).toBe(`tfjs x${Math.max(2, availableParallelism())}`);
    expect(e2e.compared?.row.errors).toBe(0);
    expect(e2e.compared?.row.cpuMsPerRequest?.workers).toBeGreaterThan(0);
    expect(seed?.queue).toBeUndefined();
  });

  it('counts the commands each protocol really sends', () => {
    const ours = section<{ rows: LoadRow[] }>('End to end').rows[0]!.commandBreakdown;
    const seed = section<{ rows: LoadRow[] }>('Seed-protocol baseline').rows[0]!.commandBreakdown;
    expect(Object.keys(ours)).toEqual(expect.arrayContaining(['xadd', 'xreadgroup', 'xack', 'publish']));
    expect(Object.keys(seed)).toEqual(expect.arrayContaining(['rpush', 'lrange', 'ltrim', 'get', 'set']));
    expect(seed).not.toHaveProperty('xadd');
  });

  it('weighs a queued job of each protocol (uint8 Z85 against float32 base64) and of each WIRE_FORMAT', () => {
    const bytes = section<{ bytes: Record<'raw' | 'jpeg' | 'webp', { payloadBytes: number }> }>('Pipeline capacity').bytes;
    const ours = bytes.raw.payloadBytes;
    expect(bytes.jpeg.payloadBytes).toBeLessThan(bytes.webp.payloadBytes);
    expect(bytes.webp.payloadBytes).toBeLessThan(ours);
    const seed = section<{ bytes: { payloadBytes: number } }>('Seed-protocol baseline').bytes.payloadBytes;
    expect(ours).toBeGreaterThan((TENSOR_BYTES * 5) / 4);
    expect(ours).toBeLessThan((TENSOR_BYTES * 5) / 4 + 1024);
    // base64 of the float32 tensor: ceil(4 * TENSOR_BYTES / 3) * 4 characters, plus the JSON around it.
    expect(seed).toBeGreaterThan(Math.ceil((TENSOR_BYTES * 4) / 3) * 4);
  });

  it('measures capacity over both brokers and with tracing on, with the CPU each process spends per request', () => {
    const capacity = section<{ row: LoadRow; restRow: LoadRow; tracedRow: LoadRow; spansPerRequest: number }>('Pipeline capacity');
    // Every request's 9 spans (5 at the edge, 4 at the worker) reached the collector, or nearly
    // (the SDK drops spans when its queue is full: a collector in the busy bench process may lag).
    expect(capacity.spansPerRequest).toBeGreaterThanOrEqual(8.5);
    expect(capacity.spansPerRequest).toBeLessThanOrEqual(9);
    for (const row of [capacity.row, capacity.restRow, capacity.tracedRow]) {
      expect(row.errors).toBe(0);
      expect(row.cpuMsPerRequest?.edge).toBeGreaterThan(0);
      expect(row.cpuMsPerRequest?.workers).toBeGreaterThan(0);
    }
    // Only the REST path has the REST server in it.
    expect(capacity.restRow.cpuMsPerRequest).toHaveProperty('rest');
    expect(capacity.row.cpuMsPerRequest).not.toHaveProperty('rest');
  });

  it('scales out over 1, 2 and 4 workers and over 1, 2 and 4 shards, and computes every target from this run', () => {
    expect(section<{ rows: { workers: number }[] }>('Scale-out').rows.map((r) => r.workers)).toEqual([1, 2, 4]);
    const shards = section<{ rows: (LoadRow & { shards: number; redisMsPerRequest: number[] })[] }>('Shards').rows;
    expect(shards.map((r) => [r.shards, r.redisMsPerRequest.length, r.errors])).toEqual([
      [1, 1, 0],
      [2, 2, 0],
      [4, 4, 0],
    ]);
    // Every shard carried a share: its Redis spent CPU on the run.
    for (const row of shards) for (const ms of row.redisMsPerRequest) expect(ms).toBeGreaterThan(0);
    const targets = section<Target[]>('Targets');
    expect(targets).toHaveLength(18);
    for (const target of targets) {
      expect(target.measured, target.what).not.toMatch(/NaN|undefined|Infinity|not measured/);
      // Pass or fail, but for the one row that is reported only.
      if (target.target === 'reported') expect(target.met).toBeNull();
      else expect(typeof target.met, target.what).toBe('boolean');
    }
    expect(markdown).toMatch(/## 1\. Targets/);
  });
});
