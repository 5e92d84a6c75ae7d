/**
 * Traces across the tiers (OTEL_EXPORTER_OTLP_ENDPOINT): `npm start` (dev/stack.ts: redis-server,
 * the local Upstash REST server, a worker process) with the edge on Node and inside workerd, both
 * tiers exporting OTLP/HTTP JSON to a collector of the test's own. One request yields one trace: the
 * edge's server span at its root, the edge's receive, decode, enqueue and wait spans, and under the
 * enqueue span the worker's dequeue, batch, inference and write, every span's parent in the trace.
 * With tracing off (the default) a job carries no traceparent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TierProcess } from '../dev/processes.ts';
import { freePort } from '../dev/redis-server.ts';
import { redisKeys } from '../shared/keys.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, predict, streamEntries, waitFor } from './helpers/faults.ts';
import { startLocalEdge, startStack, useRedisServer, viaTcp } from './helpers/fixtures.ts';
import { type CollectedSpan, type Collector, startCollector } from '../dev/otlp-collector.ts';

const EDGE_SPANS = ['POST /predict', 'receive', 'decode', 'enqueue', 'wait'];
const WORKER_SPANS = ['dequeue', 'batch', 'inference', 'write'];
const SERVER = 2;
const PRODUCER = 4;
const CONSUMER = 5;

/** The spans of `traceId`, once every expected one has arrived (exports come in batches). */
const traceOf = (collector: Collector, traceId: () => string | undefined) =>
  waitFor(
    () => {
      const spans = collector.spans.filter((span) => span.traceId === traceId());
      return spans.length >= EDGE_SPANS.length + WORKER_SPANS.length ? spans : undefined;
    },
    20_000,
    'the edge and the worker to export the spans of the request',
    100,
  );

const byName = (spans: CollectedSpan[], name: string) => spans.find((span) => span.name === name)!;

describe.each([
  ['Node', []],
  ['workerd', ['--workers']],
])('one trace per request, edge on %s', (_runtime, args) => {
  let collector: Collector;
  let stack: TierProcess;
  let url: string;
  const output: string[] = [];

  beforeAll(async () => {
    collector = await startCollector();
    ({ stack, url } = await startStack(
      { WORKERS: '1', MODEL: 'synthetic:instant', METRICS_PORT: '0', REDIS_URL: undefined, OTEL_EXPORTER_OTLP_ENDPOINT: collector.url },
      output,
      { args },
    ));
  }, 240_000);
  afterAll(async () => {
    await stack?.stop();
    await collector?.close();
  });

  it('connects the edge and the worker spans of a request into one tree', async () => {
    const reply = await predict(url, await colourPng(5));
    expect(reply.status).toBe(200);
    const id = reply.body.id;
    const rootOf = () => collector.spans.find((span) => span.attributes['request.id'] === id)?.traceId;
    const spans = await traceOf(collector, rootOf);

    expect(spans.map((span) => span.name).sort()).toEqual([...EDGE_SPANS, ...WORKER_SPANS].sort());
    const services = new Map(spans.map((span) => [span.name, span.service]));
    for (const name of EDGE_SPANS) expect(services.get(name)).toBe('resnet-edge');
    for (const name of WORKER_SPANS) expect(services.get(name)).toBe('resnet-gpu-worker');

    const root = byName(spans, 'POST /predict');
    expect(root).toMatchObject({ kind: SERVER, parentSpanId: undefined });
    expect(root.attributes['http.response.status_code']).toBe(200);
    const ids = new Set(spans.map((span) => span.spanId));
    expect(spans.filter((span) => span !== root).every((span) => span.parentSpanId && ids.has(span.parentSpanId))).toBe(true);

    const parentOf = (name: string) => spans.find((span) => span.spanId === byName(spans, name).parentSpanId)!.name;
    for (const name of ['receive', 'decode', 'enqueue', 'wait']) expect(parentOf(name)).toBe('POST /predict');
    for (const name of ['dequeue', 'batch']) expect(parentOf(name)).toBe('enqueue');
    for (const name of ['inference', 'write']) expect(parentOf(name)).toBe('batch');

    const enqueue = byName(spans, 'enqueue');
    const dequeue = byName(spans, 'dequeue');
    expect(enqueue.kind).toBe(PRODUCER);
    expect(dequeue.kind).toBe(CONSUMER);
    expect(dequeue.attributes['messaging.message.id']).toBe(enqueue.attributes['messaging.message.id']);
    expect(dequeue.attributes['job.id']).toBe(id);
    expect(byName(spans, 'write').attributes['write.status']).toBe('answered');
    expect(spans.every((span) => span.endNs >= span.startNs)).toBe(true);
  });

  it("continues the caller's trace (a traceparent header), and ignores a malformed one", async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const response = await predict(url, await colourPng(6), { traceparent: `00-${traceId}-b7ad6b7169203331-01` });
    expect(response.status).toBe(200);
    const spans = await traceOf(collector, () => traceId);
    expect(byName(spans, 'POST /predict').parentSpanId).toBe('b7ad6b7169203331');

    const malformed = await predict(url, await colourPng(7), { traceparent: '00-not-a-trace' });
    expect(malformed.status).toBe(200);
    const id = malformed.body.id;
    const fresh = await traceOf(collector, () => collector.spans.find((span) => span.attributes['request.id'] === id)?.traceId);
    expect(byName(fresh, 'POST /predict').parentSpanId).toBeUndefined();
  });
});

describe('the job a traced edge enqueues', () => {
  const db = useRedisServer();
  const logger = createLogger('tracing-test', 'silent');

  it.each([
    ['off (the default): no traceparent field', false],
    ['on: the traceparent of its enqueue span', true],
  ])('tracing %s', async (_name, on) => {
    const collector = await startCollector();
    const prefix = on ? 'tron' : 'troff';
    // No worker: the job stays in the stream for the test to read; the request ends at its deadline.
    const edge = await startLocalEdge(viaTcp(db.url), logger, {
      KEY_PREFIX: prefix,
      DEADLINE_MS: '500',
      ADMISSION: 'queue-max',
      ...(on && { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url }),
    });
    let entry: { fields: Record<string, string> } | undefined;
    try {
      expect((await predict(edge.url, await colourPng(8))).status).toBe(504);
      [entry] = await streamEntries(db.redis, redisKeys(prefix).stream);
    } finally {
      await edge.close(); // flushes its spans
      await collector.close();
    }
    expect(entry).toBeDefined();
    if (!on) {
      expect(Object.keys(entry!.fields)).not.toContain('traceparent');
      return;
    }
    const enqueue = collector.spans.find((span) => span.name === 'enqueue')!;
    expect(entry!.fields.traceparent).toBe(`00-${enqueue.traceId}-${enqueue.spanId}-01`);
    expect(collector.spans.find((span) => span.name === 'wait')!.attributes['error.type']).toBe('deadline_exceeded');
  });

  it('traces no request refused by API_KEYS (a caller without the key costs no trace)', async () => {
    const collector = await startCollector();
    const key = 'k'.repeat(24);
    const edge = await startLocalEdge(viaTcp(db.url), logger, {
      KEY_PREFIX: 'trkey',
      DEADLINE_MS: '500',
      API_KEYS: key,
      ADMISSION: 'queue-max',
      OTEL_EXPORTER_OTLP_ENDPOINT: collector.url,
    });
    try {
      expect((await predict(edge.url, await colourPng(10))).status).toBe(401);
      expect((await predict(edge.url, await colourPng(11), { authorization: `Bearer ${key}` })).status).toBe(504); // no worker
    } finally {
      await edge.close();
      await collector.close();
    }
    const roots = collector.spans.filter((span) => span.name === 'POST /predict');
    expect(roots.map((span) => span.attributes['http.response.status_code'])).toEqual([504]);
  });

  it('a collector that is down costs a warning, never a request or the shutdown', async () => {
    const lines: string[] = [];
    const warnings = createLogger('tracing-test', 'warn', { write: (line: string) => void lines.push(line) });
    const edge = await startLocalEdge(viaTcp(db.url), warnings, {
      KEY_PREFIX: 'trdown',
      DEADLINE_MS: '500',
      ADMISSION: 'queue-max',
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${await freePort()}`,
    });
    try {
      expect((await predict(edge.url, await colourPng(9))).status).toBe(504);
    } finally {
      await edge.close(); // flushes: the export fails
    }
    expect(lines.map((line) => JSON.parse(line).msg)).toContain('tracing: spans could not be exported');
  });
});
