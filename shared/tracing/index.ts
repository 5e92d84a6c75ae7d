/**
 * Traces (OpenTelemetry), one per request across both tiers: the edge's spans (receive, decode,
 * enqueue, wait) and, under its enqueue span, the worker's (dequeue, batch, inference, write). The
 * edge writes the enqueue span's W3C `traceparent` into the job's fields (shared/protocol.ts); the
 * worker continues the trace from it.
 *
 * Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (config.ts): then no SDK is loaded, no span is made
 * and no field is written: the code paths take `Tracing | undefined` and skip when undefined. On,
 * spans go in batches over OTLP/HTTP JSON: the exporter posts with node:http on Node and with
 * fetch on Cloudflare Workers (the bundler picks the package's browser build). Nothing depends on
 * a context manager (AsyncLocalStorage): every span names its parent context.
 *
 * @example
 * const tracing = settings && (await startTracing(settings));
 * const span = tracing?.tracer.startSpan('decode', {}, parent);
 * await tracing?.shutdown(); // flushes
 */
import {
  type Context,
  DiagLogLevel,
  diag,
  ROOT_CONTEXT,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import { maskedUrl } from '../config.ts';
import type { Logger } from '../log.ts';
import { withTimeout } from '../timeout.ts';
import type { TracingSettings } from './config.ts';

export type { TracingSettings } from './config.ts';

/** The instrumentation scope of every span of this project, both tiers (the package's name). */
export const TRACER_NAME = 'resnet-edge';
/** The job field (and HTTP header) that carries a span's context: W3C Trace Context. */
export const TRACEPARENT = 'traceparent';
/** How long a flush or shutdown waits for the collector. */
const EXPORT_WAIT_MS = 3_000;
const TRACEPARENT_FORMAT = /^[\da-f]{2}-[\da-f]{32}-[\da-f]{16}-[\da-f]{2}$/;

export interface Tracing {
  tracer: Tracer;
  /** The `traceparent` of `context`'s span (undefined for a span not sampled). */
  traceparent(context: Context): string | undefined;
  /** The context a `traceparent` continues (a malformed one: a new trace). */
  parent(traceparent: string | undefined): Context;
  /** Export what is buffered now (Workers: before the isolate may be frozen); never rejects. */
  flush(): Promise<void>;
  /** Flush and stop; idempotent, never rejects. */
  shutdown(): Promise<void>;
}

/** Whether `value` is a well-formed traceparent (version 00 layout), for values from outside. */
export const isTraceparent = (value: string | undefined): value is string =>
  value !== undefined && value.length === 55 && TRACEPARENT_FORMAT.test(value);

export interface TracingOptions {
  /** Where spans go instead of OTLP to `settings.url` (tests: the SDK's InMemorySpanExporter). */
  exporter?: SpanExporter;
  /** Told when spans cannot be exported (a collector down or refusing): a warning, never a failure. */
  log?: Logger;
  /**
   * Export only on flush(), each export one attempt (no retry): Cloudflare Workers, where every
   * export is a subrequest of the request that makes it and the edge keeps one per request for it.
   */
  onFlushOnly?: boolean;
}

/** Below the exporter's first retry backoff (800 ms at least): one attempt per export. */
const ONE_ATTEMPT_MS = 750;
/** The longest timer: the batch processor never exports on its own. */
const NEVER_MS = 2 ** 31 - 1;
/** Spans held for export (the SDK's default); more are dropped. */
const QUEUE_SPANS = 2048;
/** A collector that stays down is reported once, then at most this often. */
const WARN_EVERY_MS = 60_000;

/** Start the SDK (imported here, so a process without tracing never loads it). */
export async function startTracing(settings: TracingSettings, { exporter, log, onFlushOnly }: TracingOptions = {}): Promise<Tracing> {
  const [{ W3CTraceContextPropagator }, { resourceFromAttributes }, sdk, { OTLPTraceExporter }] = await Promise.all([
    import('@opentelemetry/core'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace'),
    import('@opentelemetry/exporter-trace-otlp-http'),
  ]);
  const ratio = new sdk.TraceIdRatioBasedSampler(settings.ratio);
  const root = {
    always_on: new sdk.AlwaysOnSampler(),
    always_off: new sdk.AlwaysOffSampler(),
    traceidratio: ratio,
  }[settings.sampler.replace('parentbased_', '') as 'always_on' | 'always_off' | 'traceidratio'];
  const provider = new sdk.TracerProvider({
    resource: resourceFromAttributes({ 'service.name': settings.serviceName }),
    sampler: settings.sampler.startsWith('parentbased_') ? new sdk.ParentBasedSampler({ root }) : root,
    spanProcessors: [
      new sdk.BatchSpanProcessor({
        exporter:
          exporter ??
          new OTLPTraceExporter({ url: settings.url, headers: settings.headers, ...(onFlushOnly && { timeoutMillis: ONE_ATTEMPT_MS }) }),
        // Nor when a batch fills: a flush exports the whole queue at once.
        ...(onFlushOnly && { scheduledDelayMillis: NEVER_MS, maxExportBatchSize: QUEUE_SPANS, maxQueueSize: QUEUE_SPANS }),
      }),
    ],
  });
  // The SDK reports a failed export on its global diag logger; a request never waits for one.
  let warnedAt = Number.NEGATIVE_INFINITY;
  let unsaid = 0;
  const warn = (message: string, what: unknown[]) => {
    if (Date.now() - warnedAt < WARN_EVERY_MS) return void unsaid++;
    const detail = what.map((part) => (part instanceof Error ? part.message : String(part))).join('; ');
    log?.warn({ detail, ...(unsaid > 0 && { warningsSinceLast: unsaid }) }, `tracing: ${message}`);
    warnedAt = Date.now();
    unsaid = 0;
  };
  const sdkSaid = (message: string, ...args: unknown[]) => warn(message, args);
  diag.setLogger(
    { error: sdkSaid, warn: sdkSaid, info: () => {}, debug: () => {}, verbose: () => {} },
    { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
  );
  // Bounded: a process stopping waits this long at most for a collector that does not answer.
  const exported = (done: Promise<void>) =>
    withTimeout(done, EXPORT_WAIT_MS, `no answer from ${maskedUrl(settings.url)} within ${EXPORT_WAIT_MS} ms`).catch((error: unknown) =>
      warn('spans could not be exported', [error]),
    );
  const propagator = new W3CTraceContextPropagator();
  const getter = { get: (carrier: Record<string, string>, key: string) => carrier[key], keys: Object.keys };
  let stopped: Promise<void> | undefined;
  return {
    tracer: provider.getTracer(TRACER_NAME),
    traceparent(context) {
      // An unsampled span is recorded nowhere: its children need not be made either.
      if (!((trace.getSpanContext(context)?.traceFlags ?? 0) & TraceFlags.SAMPLED)) return undefined;
      const carrier: Record<string, string> = {};
      propagator.inject(context, carrier, { set: (to, key, value) => void (to[key] = value) });
      return carrier[TRACEPARENT];
    },
    parent: (traceparent) =>
      isTraceparent(traceparent) ? propagator.extract(ROOT_CONTEXT, { [TRACEPARENT]: traceparent }, getter) : ROOT_CONTEXT,
    flush: () => exported(provider.forceFlush()),
    shutdown: () => (stopped ??= exported(provider.shutdown())),
  };
}

/**
 * Run `work` in a span named `name`, a child of `parent`, ending it when `work` settles (an error
 * sets the span's status and is rethrown). Without tracing (`tracing` undefined) just runs `work`.
 */
export async function inSpan<T>(
  tracing: Tracing | undefined,
  parent: Context | undefined,
  name: string,
  work: (span?: Span) => Promise<T>,
  options?: SpanOptions,
): Promise<T> {
  if (!tracing || !parent) return work();
  const span = tracing.tracer.startSpan(name, options, parent);
  try {
    return await work(span);
  } catch (error) {
    failSpan(span, error);
    throw error;
  } finally {
    span.end();
  }
}

/** Mark `span` failed by `error` (an ApiError's code becomes its `error.type`). */
export function failSpan(span: Span, error: unknown): void {
  const code = (error as { code?: unknown })?.code;
  span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error)?.message ?? String(error) });
  span.setAttribute('error.type', typeof code === 'string' ? code : ((error as Error)?.name ?? 'Error'));
}

/** The context whose current span is `span`: the parent to give its children. */
export const contextWith = (parent: Context, span: Span): Context => trace.setSpan(parent, span);
