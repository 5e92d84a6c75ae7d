/**
 * The sections of `npm run bench` after the bare engines and the conversion: each one function
 * that measures, then returns its markdown and its JSON (see run.ts for the order and the header).
 *
 *   preprocessSection  the edge's bare preprocessing rate (sharp), no HTTP, no Redis
 *   e2eSection         the full pipeline with the real model on the fastest engine, closed loop at
 *                      several concurrencies; the same stack saturated on the other engine
 *   seedSection        the seed tutorial's protocol (bench/seed/) on the same model and engine, under the same loads
 *   capacitySection    the pipeline with the instant synthetic model (what the queue path carries)
 *   scaleOutSection    1, 2, 4 workers with a 50 ms timer model (no CPU), batch 1
 *   shardsSection      the instant model through 1, 2 and 4 shards (each its own redis-server): Redis CPU per request per shard
 *   targetsSection     the ratios of the issue's targets, from the rows above
 */
import { availableParallelism } from 'node:os';
import type { StressOptions } from '../dev/stress.ts';
import { benchPreprocess, type PreprocessResult } from './preprocess.ts';
import { HOUSEKEEPING_COMMANDS, measureLoad, startPipeline, type LoadRow, type LoadTarget, type PipelineOptions } from './pipeline.ts';
import type { ConversionResult } from './conversion.ts';
import { benchEngine, setupEnv, type EngineResult, type EngineSetup } from './engine.ts';
import { median, round } from './stats.ts';
import type { ModelUnderTest, RunSettings, Section } from './run.ts';
import { pipelineBytesPerJob, type BytesPerJob } from './bytes.ts';
import { startCollector } from '../dev/otlp-collector.ts';
import { WIRE_FORMATS, type WireFormat } from '../shared/protocol.ts';
import { seedBytesPerJob, startSeedStack } from './seed/stack.ts';
import { BATCH_SIZE as SEED_BATCH_SIZE, CLIENT_SLEEP_MS, SERVER_SLEEP_MS } from './seed/protocol.ts';

type Images = StressOptions['images'];
type Log = (line: string) => void;

/** `--quick`, or the tiny test model (CI's smoke run): fewer requests and repeats everywhere. */
const shortRun = (settings: RunSettings) => settings.quick || settings.model === 'tiny';

/** The setup an engine result was measured with, its provider as it loaded (so workers get exactly that). */
const setupOf = (r: EngineResult): EngineSetup => ({
  engine: r.engine.name as EngineSetup['engine'],
  provider: r.engine.provider,
  replicas: r.replicas,
});

/** Worker settings that run `model` the way the engine section ran `setup`. */
function workerEnv(model: ModelUnderTest, setup: EngineSetup): Record<string, string | undefined> {
  return { MODEL: model.spec, PREPROCESS: model.preprocess, ...setupEnv(setup) };
}

/** The e2e batch size: 32 on a GPU (a batch costs about one image there), 8 on the CPU, 4 for the tiny model. */
function e2eBatchSize(settings: RunSettings, engine: EngineResult[]): number {
  if (settings.model === 'tiny') return 4;
  return engine.some((r) => r.engine.gpu) ? 32 : 8;
}

/** The setup with the highest aggregate at `batchSize`: what the e2e and seed sections run. */
export function fastestSetup(engine: EngineResult[], batchSize: number): EngineResult {
  const rows = engine.filter((r) => r.batchSize === batchSize);
  return (rows.length ? rows : engine).reduce((best, r) => (r.aggregateImgPerSec > best.aggregateImgPerSec ? r : best));
}

/** tfjs with one process per core: what the engines are compared with (the issue's baseline). */
const tfjsPerCore = (engine: EngineResult[], cores: number, batchSize?: number) =>
  engine.filter(
    (r) => r.engine.name === 'tfjs' && r.replicas === Math.max(2, cores) && (batchSize === undefined || r.batchSize === batchSize),
  );

/** Requests per load level: enough for a p99 at high concurrency, few in quick mode. */
function requestsFor(settings: RunSettings, concurrency: number, imgPerSec: number): number {
  if (settings.model === 'tiny') return Math.max(16, concurrency * 2);
  const perLevelSeconds = settings.quick ? 8 : 20;
  return Math.max(concurrency * (settings.quick ? 2 : 3), Math.ceil(imgPerSec * perLevelSeconds));
}

export const CONCURRENCIES = [1, 8, 32, 64];

const cpuText = (row: LoadRow) =>
  row.cpuMsPerRequest
    ? Object.entries(row.cpuMsPerRequest)
        .map(([name, ms]) => `${name} ${ms}`)
        .join(' · ')
    : '-';

function loadTable(rows: LoadRow[], withTimings: boolean): string[] {
  return [
    `| concurrency | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | Redis commands/request | CPU ms/request by process${withTimings ? ' | server split (median ms): preprocess / queue wait / inference / total / overhead' : ''} |`,
    `|---:|---:|---:|---:|---:|---:|---:|---:|---:|---${withTimings ? '|---' : ''}|`,
    ...rows.map(
      (r) =>
        `| ${r.concurrency} | ${r.requests} | ${r.errors}${
          r.errors
            ? ` (${Object.entries(r.byErrorCode)
                .map(([k, v]) => `${k} x${v}`)
                .join(', ')})`
            : ''
        } | ${r.throughput} | ${r.latencyMs.p50} | ${r.latencyMs.p90} | ${r.latencyMs.p99} | ${r.latencyMs.max} | ${commandsText(r)} | ${cpuText(r)}` +
        (withTimings
          ? ` | ${r.timingsMs ? `${r.timingsMs.preprocess} / ${r.timingsMs.queue ?? '-'} / ${r.timingsMs.inference} / ${r.timingsMs.total} / ${r.timingsMs.overhead}` : '-'}`
          : '') +
        ' |',
    ),
  ];
}

/** Request-path commands, then housekeeping (heartbeats, reclaim scans, health PINGs) in parentheses. */
const commandsText = (row: LoadRow) => `${row.commandsPerRequest}${row.housekeepingPerRequest ? ` (+${row.housekeepingPerRequest})` : ''}`;

const breakdownText = (row: LoadRow) =>
  Object.entries(row.commandBreakdown)
    .map(([command, perRequest]) => `${command.toUpperCase()} ${perRequest}`)
    .join(', ');

async function runLevels(target: LoadTarget, images: Images, levels: number[], requests: (c: number) => number, log: Log, label: string) {
  const rows: LoadRow[] = [];
  for (const concurrency of levels) {
    const n = requests(concurrency);
    log(`  ${label}: concurrency ${concurrency}, ${n} requests`);
    const row = await measureLoad(target, images, {
      concurrency,
      requests: n,
      warmup: Math.min(concurrency, 8),
      progress: process.stdout.isTTY,
    });
    log(
      `    ${row.throughput} req/s, p50 ${row.latencyMs.p50} ms, p99 ${row.latencyMs.p99} ms, ${row.errors} errors, ${commandsText(row)} Redis commands/request`,
    );
    rows.push(row);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------

export async function preprocessSection(images: Images, settings: RunSettings, log: Log): Promise<Section & { result: PreprocessResult }> {
  log('  sharp decode + resize, 8 in flight');
  const result = await benchPreprocess(images, { seconds: shortRun(settings) ? 2 : 6, inFlight: 8 });
  const markdown = [
    `What the Node edge does to an upload before it touches the queue (probe, sharp decode, orientation, squash resize to 224x224 uint8), in one process with 8 images in flight, no HTTP, no Redis: **${result.imgPerSec} img/s** (${result.images} images in ${result.seconds} s, cycling through the fixture photos).`,
    '',
    '| photo | median ms alone |',
    '|---|---:|',
    ...Object.entries(result.perImageMs).map(([name, ms]) => `| ${name} | ${ms} |`),
  ].join('\n');
  return { title: 'Edge preprocessing alone (sharp)', markdown, json: result, result };
}

export interface E2eSectionResult {
  /** setupLabel() of the engine setup the pipeline ran (the fastest in the engine section). */
  setup: string;
  rows: LoadRow[];
  /** Concurrency 1 again with the edge on the direct path (TCP, ioredis): the queue's own floor. */
  directRow: LoadRow;
  /** The bare engine at the e2e batch size, measured again right after the saturated levels. */
  bareAfter: EngineResult;
  /** Concurrency 1 with synthetic models, per broker: where the serving overhead goes. */
  anatomy: AnatomyRow[];
  /** The same stack saturated (one level) on tfjs with one process per core, when the run has both engines. */
  compared?: { setup: string; row: LoadRow; bareAggregate: number };
  batchSize: number;
  workers: number;
}

export async function e2eSection(
  settings: RunSettings,
  model: ModelUnderTest,
  images: Images,
  engine: EngineResult[],
  log: Log,
): Promise<Section & E2eSectionResult> {
  const batchSize = e2eBatchSize(settings, engine);
  const workers = 1;
  const bare = fastestSetup(engine, batchSize);
  const setup = setupOf(bare);
  const env = { ...workerEnv(model, setup), BATCH_SIZE: String(batchSize) };
  log(
    `  on ${bare.setup} (${bare.engine.provider}), the fastest at batch ${batchSize}: redis-server, the Upstash REST server, the edge and ${workers} worker (BATCH_SIZE ${batchSize})`,
  );
  const stack = await startPipeline({ workers, workerEnv: env, edgeEnv: { DEADLINE_MS: '300000' }, log });
  let rows: LoadRow[];
  try {
    rows = await runLevels(stack, images, CONCURRENCIES, (c) => requestsFor(settings, c, bare.aggregateImgPerSec), log, 'pipeline');
  } finally {
    await stack.stop();
  }
  // This machine's speed drifts over minutes (shared VM): the bare engine again, right after the
  // saturated levels, so the throughput ratio is also taken side by side in time.
  log(`  the bare engine again (${bare.setup}, batch ${batchSize}), right after the saturated levels`);
  const [bareAfter] = await benchEngine({
    model: model.spec,
    preprocess: model.preprocess,
    setups: [setup],
    batchSizes: [batchSize],
    repeats: shortRun(settings) ? 2 : Math.max(3, Math.ceil(48 / batchSize)),
    warmup: 1,
  });
  log(`    ${bareAfter!.aggregateImgPerSec} img/s (at the start of the run: ${bare.aggregateImgPerSec})`);
  log('  the same at concurrency 1 with the edge over TCP (ioredis)');
  const direct = await startPipeline({ broker: 'ioredis', workers, workerEnv: env, edgeEnv: { DEADLINE_MS: '300000' }, log });
  let directRow: LoadRow;
  try {
    directRow = (await runLevels(direct, images, [1], (c) => requestsFor(settings, c, bare.aggregateImgPerSec), log, 'direct'))[0]!;
  } finally {
    await direct.stop();
  }
  // The same stack on the other engine, saturated: the end-to-end ratio between engines.
  let compared: E2eSectionResult['compared'];
  const other = bare.engine.name === 'onnx' ? tfjsPerCore(engine, availableParallelism(), batchSize)[0] : undefined;
  if (other) {
    const concurrency = 32;
    log(`  the same stack on ${other.setup} (${other.engine.provider}, INFERENCE_PROCESSES=${other.replicas}), saturated`);
    const otherStack = await startPipeline({
      workers,
      workerEnv: { ...workerEnv(model, setupOf(other)), BATCH_SIZE: String(batchSize) },
      edgeEnv: { DEADLINE_MS: '300000' },
      log,
    });
    try {
      const [row] = await runLevels(
        otherStack,
        images,
        [concurrency],
        (c) => requestsFor(settings, c, other.aggregateImgPerSec),
        log,
        other.setup,
      );
      compared = { setup: other.setup, row: row!, bareAggregate: other.aggregateImgPerSec };
    } finally {
      await otherStack.stop();
    }
  }
  const batch1 = engine.find((r) => r.setup === bare.setup && r.batchSize === 1);
  const anatomy = await latencyAnatomy(settings, images, Math.round(batch1?.medianMs ?? 300), log);
  const markdown = [
    `Edge on Node (sharp, Upstash REST broker) -> local Upstash REST server -> redis-server -> ${workers} gpu-worker on **${bare.setup}** (${bare.engine.provider}, ${bare.engine.threads} thread(s); BATCH_SIZE ${batchSize}, MAX_BATCH_DELAY_MS 5), each its own process; closed-loop load from this process (autocannon), cycling through the ${images.length} fixture photos; each level after ${'min(concurrency, 8)'} warm-up requests.`,
    '',
    ...loadTable(rows, true),
    '',
    `The bare engine measured again right after these levels (${bare.setup}, batch ${batchSize}, ${bareAfter!.repeats} batches): ${bareAfter!.aggregateImgPerSec} img/s, against ${bare.aggregateImgPerSec} img/s at the start of the run.`,
    '',
    'The edge on the direct path instead (TCP, ioredis: what a self-hosted Node edge can use), concurrency 1:',
    '',
    ...loadTable([directRow], true),
    ...(compared
      ? [
          '',
          `The same stack on **${compared.setup}** (its best CPU setting: one inference process per core), saturated at concurrency ${compared.row.concurrency}: ${compared.row.throughput} req/s against ${Math.max(...rows.map((r) => r.throughput))} on ${bare.setup}.`,
          '',
          ...loadTable([compared.row], true),
        ]
      : []),
    '',
    anatomy.markdown,
    '',
    `- Redis commands per request are every command Redis executed during the level (\`INFO commandstats\` before and after, script-internal calls included, the inspector's INFO left out) over the successful requests; in parentheses, the share of housekeeping that runs on a clock whatever the traffic (${[...HOUSEKEEPING_COMMANDS].map((c) => c.toUpperCase()).join(', ')}, and the XLENs of the edge's status reads: worker heartbeats, reclaim scans, the edge's admission reads, its health PING while a request has waited over a second). At concurrency 1: ${breakdownText(rows[0]!)}.`,
    '- CPU ms/request by process: user + system time of each process (a worker with its inference processes) during the level, from /proc, per successful request; `load` is this load generator.',
    "- The server split is the edge's own `timings` in each answer: preprocess (read, probe, decode, resize), queue wait (enqueue to a worker reading it), inference (the worker's batch), total; overhead is the median over requests of total - inference: what serving a request added to its batch's inference (decode included, the client's own HTTP time not).",
  ].join('\n');
  return {
    title: 'End to end (edge + Upstash REST + Redis + worker)',
    markdown,
    json: { setup: bare.setup, batchSize, workers, rows, directRow, bareAfter, compared, anatomy: anatomy.rows },
    setup: bare.setup,
    rows,
    directRow,
    bareAfter: bareAfter!,
    anatomy: anatomy.rows,
    compared,
    batchSize,
    workers,
  };
}

export interface AnatomyRow {
  broker: 'upstash' | 'ioredis';
  model: string;
  requests: number;
  /** Medians of the edge's split, ms (overhead: total - inference, per request). */
  preprocess: number;
  queue: number;
  overhead: number;
  p50: number;
}

/**
 * Concurrency 1 with synthetic models, over each broker: the instant model (requests back to back,
 * the machine never idles) and a timer as long as the bare batch-1 inference (the same rhythm as
 * ResNet50, no CPU). Same photos, same pipeline: what is left of the overhead is decode and hops,
 * and what the timer adds is the cost of waking idle processes and cores after each long wait.
 */
async function latencyAnatomy(
  settings: RunSettings,
  images: Images,
  inferenceMs: number,
  log: Log,
): Promise<{ rows: AnatomyRow[]; markdown: string }> {
  const rows: AnatomyRow[] = [];
  const requests = shortRun(settings) ? 16 : 48;
  for (const broker of ['upstash', 'ioredis'] as const) {
    for (const model of ['synthetic:instant', `synthetic:timer:${inferenceMs}`]) {
      log(`  concurrency 1, ${model}, edge over ${broker}: ${requests} requests`);
      const stack = await startPipeline({ broker, workers: 1, workerEnv: { MODEL: model, BATCH_SIZE: '8' }, log });
      try {
        const row = await measureLoad(stack, images, { concurrency: 1, requests, warmup: 8 });
        const t = row.timingsMs!;
        rows.push({
          broker,
          model,
          requests: row.requests,
          preprocess: t.preprocess,
          queue: t.queue ?? NaN,
          overhead: t.overhead,
          p50: row.latencyMs.p50,
        });
      } finally {
        await stack.stop();
      }
    }
  }
  const markdown = [
    `Where the time of one request goes at concurrency 1: the same pipeline and photos with synthetic models (no tf), the instant one (requests back to back) and a ${inferenceMs} ms timer (the bare batch-1 inference's length, no CPU), ${requests} requests each; medians of the edge's split, ms.`,
    '',
    '| edge reaches Redis over | model | preprocess | queue wait | overhead (total - inference) | client p50 - model time |',
    '|---|---|---:|---:|---:|---:|',
    ...rows.map((r) => {
      const modelMs = r.model.startsWith('synthetic:timer:') ? inferenceMs : 0;
      return `| ${r.broker === 'upstash' ? 'Upstash REST (local server)' : 'TCP (ioredis)'} | ${r.model} | ${r.preprocess} | ${r.queue} | ${r.overhead} | ${round(r.p50 - modelMs, 1)} |`;
    }),
  ].join('\n');
  return { rows, markdown };
}

export interface SeedSectionResult {
  rows: LoadRow[];
  bytes: BytesPerJob;
}

export async function seedSection(
  settings: RunSettings,
  model: ModelUnderTest,
  images: Images,
  engine: EngineResult[],
  log: Log,
): Promise<Section & SeedSectionResult> {
  // The engine our pipeline ran (the seed protocol is compared on the same one), at batch 1.
  const chosen = fastestSetup(engine, e2eBatchSize(settings, engine));
  const bare = engine.find((r) => r.setup === chosen.setup && r.batchSize === 1) ?? chosen;
  log('  bytes per queued job: a seed web server without model server, one upload');
  const bytes = await seedBytesPerJob(images[0]!, log);
  log(`    ${bytes.payloadBytes} bytes of payload, MEMORY USAGE ${bytes.memoryUsage}`);
  log(`  starting redis-server, the seed web server and 1 seed model server (LRANGE batches of ${SEED_BATCH_SIZE})`);
  const stack = await startSeedStack({ workers: 1, workerEnv: workerEnv(model, { ...setupOf(chosen), replicas: 1 }), log });
  let rows: LoadRow[];
  try {
    // The seed answers a request no sooner than its two sleeps allow, whatever the engine: size
    // each level by the rate it can reach, not by the engine's (minutes at concurrency 1 otherwise).
    const seedRate = (c: number) => Math.min(bare.aggregateImgPerSec, (c * 1000) / (SERVER_SLEEP_MS + CLIENT_SLEEP_MS));
    rows = await runLevels(stack, images, CONCURRENCIES, (c) => requestsFor(settings, c, seedRate(c)), log, 'seed');
  } finally {
    await stack.stop();
  }
  const markdown = [
    `The seed tutorial's protocol, rebuilt in bench/seed/ on the same model, engine (${chosen.engine.name}, ${chosen.engine.provider}) and image decode (sharp): web server on Hono + Node, one Redis list, the image as base64 of the caffe-preprocessed float32 tensor, the model server reading \`LRANGE 0 ${SEED_BATCH_SIZE - 1}\` + \`LTRIM\` and sleeping ${SERVER_SLEEP_MS} ms after every round, the web server polling \`GET\` every ${CLIENT_SLEEP_MS} ms. 1 model server (a second would read the same batch: the race the tutorial has). Same closed-loop loads as the end-to-end section.`,
    '',
    ...loadTable(rows, true),
    '',
    "- The server split: the seed web server measures preprocess and total as our edge does, and the model server's batch inference time travels with each result (the tutorial stores predictions only); it has no queue-wait measure.",
    `- Redis commands per request include the model server's polls while idle (one LRANGE per ${SERVER_SLEEP_MS} ms) and the web server's GET polls. At concurrency 1: ${breakdownText(rows[0]!)}.`,
    `- Bytes per queued job: ${bytes.payloadBytes.toLocaleString('en-US')} bytes of list entry (MEMORY USAGE of the list holding it: ${bytes.memoryUsage.toLocaleString('en-US')}).`,
  ].join('\n');
  return { title: 'Seed-protocol baseline (LRANGE/LTRIM, 0.25 s sleeps, float32 base64)', markdown, json: { rows, bytes }, rows, bytes };
}

const INSTANT_WARMUP = 64;

/**
 * The load of the capacity and shards sections, alike so their rows compare: the instant model,
 * 1 worker, BATCH_SIZE 32, closed loop at concurrency 64, on a stack of its own.
 */
async function instantLoad(
  settings: RunSettings,
  images: Images,
  pipeline: Pick<PipelineOptions, 'broker' | 'shards'> & { env?: Record<string, string> },
  log: Log,
): Promise<LoadRow> {
  const stack = await startPipeline({
    ...pipeline,
    workers: 1,
    workerEnv: { MODEL: 'synthetic:instant', BATCH_SIZE: '32', ...pipeline.env },
    edgeEnv: pipeline.env,
    log,
  });
  try {
    return await measureLoad(stack, images, {
      concurrency: 64,
      requests: shortRun(settings) ? 400 : 3000,
      warmup: INSTANT_WARMUP,
      progress: process.stdout.isTTY,
    });
  } finally {
    await stack.stop();
  }
}

export interface CapacityResult {
  /** The direct path (Node edge over TCP): what the target is computed on. */
  row: LoadRow;
  /** The same load through the local Upstash REST server (the Node edge over Upstash REST). */
  restRow: LoadRow;
  /** The direct path with tracing on: both tiers export every request's spans to a local collector. */
  tracedRow: LoadRow;
  /** Spans the collector received during `tracedRow`, per successful request. */
  spansPerRequest: number;
  /** Per WIRE_FORMAT. */
  bytes: Record<WireFormat, BytesPerJob>;
}

export async function capacitySection(settings: RunSettings, images: Images, log: Log): Promise<Section & CapacityResult> {
  const quick = shortRun(settings);
  const bytes = {} as Record<WireFormat, BytesPerJob>;
  for (const format of WIRE_FORMATS) {
    log(`  bytes per queued job, WIRE_FORMAT=${format}: an edge without workers, one upload`);
    bytes[format] = await pipelineBytesPerJob(images[0]!, format, log);
    log(`    ${bytes[format].payloadBytes} bytes of payload, MEMORY USAGE ${bytes[format].memoryUsage}`);
  }
  const measure = async (what: string, pipeline: Parameters<typeof instantLoad>[2]) => {
    log(`  MODEL=synthetic:instant, 1 worker, BATCH_SIZE 32, ${what}: concurrency 64, ${quick ? 400 : 3000} requests`);
    const measured = await instantLoad(settings, images, pipeline, log);
    log(
      `    ${measured.throughput} req/s, p50 ${measured.latencyMs.p50} ms, p99 ${measured.latencyMs.p99} ms, ${measured.errors} errors; CPU ms/request: ${cpuText(measured)}`,
    );
    return measured;
  };
  const row = await measure('edge broker ioredis', { broker: 'ioredis' });
  // Right after the row it is compared with (this machine drifts over minutes). The collector runs
  // in this process, beside the load generator.
  const collector = await startCollector();
  let tracedRow: LoadRow;
  try {
    tracedRow = await measure('edge broker ioredis, tracing on', {
      broker: 'ioredis',
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url },
    });
  } finally {
    await collector.close();
  }
  const spansPerRequest = round(collector.spans.length / (tracedRow.requests + INSTANT_WARMUP), 1);
  log(`    ${spansPerRequest} spans/request exported`);
  const restRow = await measure('edge broker upstash', { broker: 'upstash' });
  const line = (name: string, r: LoadRow) =>
    `| ${name} | ${r.throughput} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.errors} | ${commandsText(r)} | ${cpuText(r)} |`;
  const markdown = [
    "The whole pipeline with `MODEL=synthetic:instant` (answers at once, no tf), 1 worker, BATCH_SIZE 32, closed loop at concurrency 64, cycling through the fixture photos: what the path carries when the model costs nothing. Every process shares this machine's cores with the others and with the load generator; the CPU column says where each request's CPU time goes (from /proc, per successful request; `load` is the load generator).",
    '',
    '| edge reaches Redis over | req/s | p50 ms | p99 ms | errors | Redis commands/request | CPU ms/request by process |',
    '|---|---:|---:|---:|---:|---:|---|',
    line('TCP (ioredis; self-hosted Node edge)', row),
    line('Upstash REST (local REST server; Node edge, one shared subscription)', restRow),
    line('TCP, tracing on (both tiers export OTLP to a local collector)', tracedRow),
    '',
    `Tracing (docs/operations.md#traces) is off in every other row, as by default: no span is made and no field is queued. On, it carried ${round(tracedRow.throughput / row.throughput, 2)}x the throughput off, p50 ${tracedRow.latencyMs.p50} vs ${row.latencyMs.p50} ms, exporting ${spansPerRequest} spans per request.`,
    '',
    `Bytes per queued job (${images[0]!.name}, the edge over Upstash REST: Z85 text), by WIRE_FORMAT (accuracy of each: docs/performance.md#wire-format):`,
    '',
    '| WIRE_FORMAT | payload bytes | vs raw | MEMORY USAGE of the stream with one job |',
    '|---|---:|---:|---:|',
    ...WIRE_FORMATS.map(
      (format) =>
        `| ${format} | ${bytes[format].payloadBytes.toLocaleString('en-US')} | ${round(bytes[format].payloadBytes / bytes.raw.payloadBytes, 3)}x | ${bytes[format].memoryUsage.toLocaleString('en-US')} |`,
    ),
  ].join('\n');
  return {
    title: 'Pipeline capacity (instant synthetic model)',
    markdown,
    json: { row, restRow, tracedRow, spansPerRequest, bytes },
    row,
    restRow,
    tracedRow,
    spansPerRequest,
    bytes,
  };
}

export async function scaleOutSection(
  settings: RunSettings,
  images: Images,
  log: Log,
): Promise<Section & { rows: (LoadRow & { workers: number })[] }> {
  const quick = shortRun(settings);
  const delayMs = 50;
  // The smallest photo: 4 workers want 80 req/s, and the edge's decode of big photos shares the
  // same two cores; this section measures the workers and the queue, not the decode.
  const smallest = [...images].sort((a, b) => a.bytes.length - b.bytes.length).slice(0, 1);
  const rows: (LoadRow & { workers: number })[] = [];
  for (const workers of [1, 2, 4]) {
    log(`  ${workers} worker(s) with MODEL=synthetic:timer:${delayMs}, BATCH_SIZE 1, edge over TCP, ${smallest[0]!.name}`);
    const stack = await startPipeline({
      broker: 'ioredis',
      workers,
      workerEnv: { MODEL: `synthetic:timer:${delayMs}`, BATCH_SIZE: '1' },
      log,
    });
    try {
      const expected = (workers * 1000) / delayMs;
      const row = await measureLoad(stack, smallest, {
        concurrency: 32,
        requests: Math.ceil(expected * (quick ? 3 : 10)),
        warmup: 16,
        progress: process.stdout.isTTY,
      });
      log(`    ${row.throughput} req/s (ideal ${expected}), p50 ${row.latencyMs.p50} ms, ${row.errors} errors`);
      rows.push({ ...row, workers });
    } finally {
      await stack.stop();
    }
  }
  const one = rows[0]!.throughput;
  const markdown = [
    `Workers whose model takes a fixed ${delayMs} ms per batch on a timer (\`MODEL=synthetic:timer:${delayMs}\`: no CPU, so the workers do not compete with each other or the edge on this machine), BATCH_SIZE 1, closed loop at concurrency 32; the edge on Node over TCP (ioredis), posting the smallest fixture photo (${smallest[0]!.name}, ${smallest[0]!.bytes.length.toLocaleString('en-US')} bytes), so that the one edge process, which shares this machine's cores with the workers, is not what limits the rate (see the capacity section for what it carries).`,
    '',
    '| workers | req/s | ideal req/s | vs 1 worker | p50 ms | p99 ms | errors | CPU ms/request by process |',
    '|---:|---:|---:|---:|---:|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.workers} | ${r.throughput} | ${(r.workers * 1000) / delayMs} | ${round(r.throughput / one, 2)}x | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.errors} | ${cpuText(r)} |`,
    ),
  ].join('\n');
  return { title: 'Scale-out (50 ms timer model)', markdown, json: { delayMs, rows }, rows };
}

export interface ShardsRow extends LoadRow {
  shards: number;
  /** Redis CPU ms per successful request, each shard's process. */
  redisMsPerRequest: number[];
  /** Requests/s of the whole service the busiest shard allows on a core of its own (1000 / its CPU ms per request of the service): the brokers' ceiling. */
  ceiling: number;
}

/**
 * The instant model through 1, 2 and 4 shards, each its own redis-server: the CPU each Redis
 * spends per request falls as 1/N (each carries 1/N of the requests), while the requests the
 * service carries must not fall. One edge (over TCP, QUEUES) and one worker reading every shard.
 */
export async function shardsSection(settings: RunSettings, images: Images, log: Log): Promise<Section & { rows: ShardsRow[] }> {
  const quick = shortRun(settings);
  const rows: ShardsRow[] = [];
  for (const shards of [1, 2, 4]) {
    log(
      `  ${shards} shard(s), MODEL=synthetic:instant, 1 worker, BATCH_SIZE 32, edge over TCP: concurrency 64, ${quick ? 400 : 3000} requests`,
    );
    const row = await instantLoad(settings, images, { broker: 'ioredis', shards }, log);
    const cpu = row.cpuMsPerRequest ?? {};
    const redisMsPerRequest = shards === 1 ? [cpu.redis ?? NaN] : Array.from({ length: shards }, (_, i) => cpu[`redis-${i + 1}`] ?? NaN);
    const ceiling = Math.round(1000 / Math.max(...redisMsPerRequest));
    log(`    ${row.throughput} req/s, Redis CPU ms/request per shard ${redisMsPerRequest.join(', ')}; CPU ms/request: ${cpuText(row)}`);
    rows.push({ ...row, shards, redisMsPerRequest, ceiling });
  }
  const one = rows[0]!;
  const markdown = [
    "The whole pipeline with `MODEL=synthetic:instant`, one worker reading every shard (BATCH_SIZE 32), one Node edge over TCP given the shards as `QUEUES` (power of two choices by backlog), closed loop at concurrency 64, cycling through the fixture photos; each shard its own redis-server process. Redis CPU per request per shard is that process's CPU time over the run's successful requests (/proc). The brokers' ceiling is the service's requests/s at which the busiest shard would fill a core of its own (1000 / its ms per request): where the brokers, not the edge, would limit. The edge, the worker, the load generator and the Redis processes share this machine's 2 cores, so the req/s column is the edge's limit here (its CPU per request is in the last column), not the brokers'.",
    '',
    "| shards | req/s | p50 ms | p99 ms | errors | Redis CPU ms/request, each shard | busiest shard vs 1 shard | brokers' ceiling req/s | CPU ms/request by process |",
    '|---:|---:|---:|---:|---:|---|---:|---:|---|',
    ...rows.map(
      (r) =>
        `| ${r.shards} | ${r.throughput} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.errors} | ${r.redisMsPerRequest.join(' · ')} | ${round(Math.max(...r.redisMsPerRequest) / one.redisMsPerRequest[0]!, 2)}x | ${r.ceiling.toLocaleString('en-US')} | ${cpuText(r)} |`,
    ),
  ].join('\n');
  return { title: 'Shards (instant synthetic model, 1, 2, 4 redis-servers)', markdown, json: { rows }, rows };
}

// ---------------------------------------------------------------------------------------------

export interface TargetInputs {
  engine: EngineResult[];
  /** The ONNX conversion on a cold cache, when measured. */
  conversion?: ConversionResult;
  preprocess: PreprocessResult;
  e2e: E2eSectionResult;
  /** The seed-protocol baseline, when measured. */
  seed?: SeedSectionResult;
  capacity: CapacityResult;
  scaleOut: { rows: (LoadRow & { workers: number })[] };
  /** The shards section, when measured. */
  shards?: { rows: ShardsRow[] };
  cores: number;
}

export interface Target {
  what: string;
  target: string;
  measured: string;
  /** null: reported, not a pass/fail target, or not measured in this run. */
  met: boolean | null;
}

export function computeTargets(inputs: TargetInputs): Target[] {
  const { engine, e2e, seed, capacity, scaleOut, preprocess, conversion, shards } = inputs;
  const shardRow = (n: number) => shards?.rows.find((r) => r.shards === n);
  const busiest = (n: number) => Math.max(...(shardRow(n)?.redisMsPerRequest ?? [NaN]));
  const bareSame = engine.find((r) => r.setup === e2e.setup && r.batchSize === e2e.batchSize);
  const bare1 = engine.find((r) => r.setup === e2e.setup && r.batchSize === 1);
  const saturatedRow = e2e.rows.reduce((best, r) => (r.throughput > best.throughput ? r : best));
  const saturated = saturatedRow.throughput;
  // The better of the bare engine's two measurements (at the start of the run, right after the
  // saturated levels): a slow spell of this shared VM during one of them must not flatter the ratio.
  const bareRate = bareSame ? Math.max(bareSame.aggregateImgPerSec, e2e.bareAfter.aggregateImgPerSec) : NaN;
  const bareCpu = bareSame ? Math.min(bareSame.cpuMsPerImage, e2e.bareAfter.cpuMsPerImage) : NaN;
  const added = e2e.rows[0]!.latencyMs.p50 - (bare1?.medianMs ?? 0);
  const seedAdded = seed ? seed.rows[0]!.latencyMs.p50 - (bare1?.medianMs ?? 0) : NaN;
  const oneWorker = scaleOut.rows.find((r) => r.workers === 1)!.throughput;
  const fourWorkers = scaleOut.rows.find((r) => r.workers === 4)!.throughput;
  const ratioPerBatch = (of: EngineResult[], to: (r: EngineResult) => EngineResult | undefined) =>
    of.map((r) => r.aggregateImgPerSec / (to(r)?.aggregateImgPerSec ?? Infinity));
  // Per batch size, then the median: one row measured in a slow spell of this VM (a 1-replica row
  // slowed by a third has been seen) would otherwise decide a ratio alone.
  const perCore = tfjsPerCore(engine, inputs.cores);
  const replicaRatios = ratioPerBatch(perCore, (r) =>
    engine.find((one) => one.engine.name === 'tfjs' && one.replicas === 1 && one.batchSize === r.batchSize),
  );
  const replicaRatio = median(replicaRatios);
  const onnxOne = engine.filter((r) => r.engine.name === 'onnx' && r.replicas === 1);
  const engineRatios = ratioPerBatch(onnxOne, (r) => perCore.find((t) => t.batchSize === r.batchSize));
  const engineRatio = median(engineRatios);
  const commands = Math.max(...e2e.rows.map((r) => r.commandsPerRequest));
  const preprocessMs = e2e.rows[0]!.timingsMs?.preprocess;
  const addedDirect = e2e.directRow.latencyMs.p50 - (bare1?.medianMs ?? 0);
  const overhead = e2e.rows[0]!.timingsMs?.overhead ?? NaN;
  const seedOverhead = seed?.rows[0]?.timingsMs?.overhead;
  const overheadDirect = e2e.directRow.timingsMs?.overhead ?? NaN;
  const workerCpu = saturatedRow.cpuMsPerRequest?.workers ?? NaN;
  const ratio = (x: number) => `${round(x, 2)}x`;
  // Every request pays its own decode, so an added latency below the preprocessing time is the
  // two separately measured medians' noise (a few percent of the inference), not a measurement of it.
  const plausible = added >= (preprocessMs ?? 0);
  const noise = plausible
    ? ''
    : ': below the preprocessing alone, so this difference of two medians measured minutes apart is noise here (see the per-request rows)';
  const notMeasured = (why: string) => ({ measured: `not measured (${why})`, met: null });
  return [
    {
      what: 'Bare ONNX Runtime (one process, all cores) vs tfjs wasm (one process per core), median over batch sizes',
      target: '>= 5x',
      ...(onnxOne.length && perCore.length
        ? {
            measured: `${ratio(engineRatio)} (per batch size: ${onnxOne.map((r, i) => `${r.batchSize}: ${r.aggregateImgPerSec} / ${perCore.find((t) => t.batchSize === r.batchSize)?.aggregateImgPerSec} = ${ratio(engineRatios[i]!)}`).join('; ')})`,
            met: engineRatio >= 5,
          }
        : notMeasured('needs both engines: --engine auto')),
    },
    {
      what: `Worker CPU per image in the saturated end-to-end run (${e2e.setup}, concurrency ${saturatedRow.concurrency}) vs the bare engine's at batch ${e2e.batchSize}`,
      target: '<= 1.1x',
      measured: `${workerCpu} / ${bareCpu} ms = ${ratio(workerCpu / bareCpu)} (bare: the lower of the two measurements); every process, ms per request: ${cpuText(saturatedRow)}`,
      met: workerCpu / bareCpu <= 1.1,
    },
    {
      what: `Saturated end-to-end throughput vs the bare engine (${e2e.setup}, batch ${e2e.batchSize})`,
      target: 'reported',
      measured: `${saturated} / ${bareRate} img/s = ${ratio(saturated / bareRate)} (bare, the better of ${bareSame?.aggregateImgPerSec} at the start of the run and ${e2e.bareAfter.aggregateImgPerSec} right after the saturated levels); the edge, REST server, Redis and load generator share the engine's cores (see the CPU row above)`,
      met: null,
    },
    {
      what: 'End-to-end throughput through the whole local stack: ONNX Runtime vs tfjs wasm (one process per core)',
      target: '>= 4x',
      ...(e2e.compared
        ? {
            measured: `${saturated} / ${e2e.compared.row.throughput} req/s = ${ratio(saturated / e2e.compared.row.throughput)}`,
            met: saturated / e2e.compared.row.throughput >= 4,
          }
        : notMeasured('needs both engines: --engine auto')),
    },
    {
      what: 'ONNX conversion of the model on a cold cache (read, convert, write)',
      target: '< 20 s',
      ...(conversion
        ? {
            measured: `${round((conversion.readMs + conversion.convertMs) / 1000, 2)} s (read ${conversion.readMs} ms, convert and write ${conversion.convertMs} ms)`,
            met: conversion.readMs + conversion.convertMs < 20_000,
          }
        : notMeasured('no ONNX engine in this run')),
    },
    {
      what: "The converted model's first inference vs a warm one (batch 1)",
      target: '<= 2x',
      ...(conversion
        ? {
            measured: `${conversion.firstMs} / ${conversion.warmMedianMs} ms = ${ratio(conversion.firstMs / conversion.warmMedianMs)}`,
            met: conversion.firstMs / conversion.warmMedianMs <= 2,
          }
        : notMeasured('no ONNX engine in this run')),
    },
    {
      what: 'Added latency at concurrency 1 (e2e p50 - bare batch-1 median)',
      target: '<= 5 ms',
      measured: `${e2e.rows[0]!.latencyMs.p50} - ${bare1?.medianMs} = ${round(added, 1)} ms${preprocessMs !== undefined ? ` (of which edge preprocessing ${preprocessMs} ms)` : ''}; edge over TCP: ${round(addedDirect, 1)} ms (preprocessing ${e2e.directRow.timingsMs?.preprocess} ms)${noise}`,
      met: plausible && added <= 5,
    },
    {
      what: "Serving overhead at concurrency 1, per request (median of the edge's total - its batch's inference; a second measure of the row above, free of the bare run's noise)",
      target: '<= 5 ms',
      measured: `${overhead} ms over Upstash REST (of which preprocessing ${preprocessMs} ms); edge over TCP: ${overheadDirect} ms`,
      met: overhead <= 5,
    },
    {
      what: "Added latency vs the seed baseline's added latency",
      target: '>= 20x smaller',
      ...(seed
        ? {
            measured: `${round(seedAdded, 1)} ms / ${round(added, 1)} ms = ${ratio(seedAdded / Math.max(added, 0.1))}${noise}; edge over TCP: ${ratio(seedAdded / Math.max(addedDirect, 0.1))}`,
            met: plausible && seedAdded / Math.max(added, 0.1) >= 20,
          }
        : notMeasured('no seed baseline in this run')),
    },
    {
      what: "Serving overhead vs the seed baseline's (the per-request measure, both sides)",
      target: '>= 20x smaller',
      ...(seedOverhead !== undefined
        ? {
            measured: `${seedOverhead} ms / ${overhead} ms = ${ratio(seedOverhead / Math.max(overhead, 0.1))}; edge over TCP: ${seedOverhead} / ${overheadDirect} ms = ${ratio(seedOverhead / Math.max(overheadDirect, 0.1))}`,
            met: seedOverhead / Math.max(overhead, 0.1) >= 20,
          }
        : notMeasured('no seed baseline in this run')),
    },
    {
      what: 'Capacity with the instant model (edge over TCP) vs edge preprocessing alone',
      target: '>= 0.7x',
      measured: `${capacity.row.throughput} / ${preprocess.imgPerSec} = ${ratio(capacity.row.throughput / preprocess.imgPerSec)} (over Upstash REST: ${ratio(capacity.restRow.throughput / preprocess.imgPerSec)})`,
      met: capacity.row.throughput / preprocess.imgPerSec >= 0.7,
    },
    {
      what: 'Scale-out, 50 ms timer model, 4 workers vs 1',
      target: '>= 3.6x',
      measured: `${fourWorkers} / ${oneWorker} req/s = ${ratio(fourWorkers / oneWorker)}`,
      met: fourWorkers / oneWorker >= 3.6,
    },
    {
      what: 'Bytes per queued job vs the seed baseline (payload)',
      target: '<= 0.25x',
      ...(seed
        ? {
            measured: `${capacity.bytes.raw.payloadBytes.toLocaleString('en-US')} / ${seed.bytes.payloadBytes.toLocaleString('en-US')} = ${round(capacity.bytes.raw.payloadBytes / seed.bytes.payloadBytes, 4)}x (MEMORY USAGE: ${round(capacity.bytes.raw.memoryUsage / seed.bytes.memoryUsage, 4)}x)`,
            met: capacity.bytes.raw.payloadBytes / seed.bytes.payloadBytes <= 0.25,
          }
        : notMeasured('no seed baseline in this run')),
    },
    {
      what: 'Bytes per queued job, WIRE_FORMAT=jpeg vs raw (payload; webp beside it; every top-1 kept: test/wire-format.test.ts)',
      target: '<= 0.3x',
      measured: `${capacity.bytes.jpeg.payloadBytes.toLocaleString('en-US')} / ${capacity.bytes.raw.payloadBytes.toLocaleString('en-US')} = ${round(capacity.bytes.jpeg.payloadBytes / capacity.bytes.raw.payloadBytes, 3)}x (webp: ${round(capacity.bytes.webp.payloadBytes / capacity.bytes.raw.payloadBytes, 3)}x)`,
      met: capacity.bytes.jpeg.payloadBytes / capacity.bytes.raw.payloadBytes <= 0.3,
    },
    {
      what: `tfjs wasm: inference replicas = cores (${Math.max(2, inputs.cores)}) vs 1 replica (bare engine, median over the batch sizes)`,
      target: '>= 1.8x',
      ...(perCore.length
        ? { measured: `${ratio(replicaRatio)} (per batch size: ${replicaRatios.map(ratio).join(', ')})`, met: replicaRatio >= 1.8 }
        : notMeasured('no tfjs engine in this run')),
    },
    {
      what: 'Redis commands executed per request (end to end, worst level; housekeeping apart; sent by the clients: 1 per request + 2 per batch, test/commands-per-image.test.ts)',
      target: "<= 9.1 (9 at batch 1, plus an idle worker's read a second, which INFO cannot tell from a batch's)",
      measured: `${commands} (concurrency 1: ${commandsText(e2e.rows[0]!)})`,
      met: commands <= 9.1,
    },
    {
      what: 'Shards, instant model: Redis CPU per request of the busiest of 4 shards vs 1 shard',
      target: '<= 0.4x (1/4, with slack for the fixed costs per second of each Redis and the uneven split of two random choices)',
      ...(shards
        ? {
            measured: `${busiest(4)} / ${busiest(1)} ms = ${ratio(busiest(4) / busiest(1))} (2 shards: ${ratio(busiest(2) / busiest(1))})`,
            met: busiest(4) / busiest(1) <= 0.4,
          }
        : notMeasured('no shards section in this run')),
    },
    {
      what: 'Shards, instant model: requests carried with 4 shards vs 1 (the edge limits here)',
      target: '>= 0.9x',
      ...(shards
        ? {
            measured: `${shardRow(4)!.throughput} / ${shardRow(1)!.throughput} req/s = ${ratio(shardRow(4)!.throughput / shardRow(1)!.throughput)}`,
            met: shardRow(4)!.throughput / shardRow(1)!.throughput >= 0.9,
          }
        : notMeasured('no shards section in this run')),
    },
  ];
}

export function targetsSection(targets: Target[]): Section {
  const markdown = [
    '| What | Target | Measured (this run) | Met |',
    '|---|---|---|---|',
    ...targets.map((t) => `| ${t.what} | ${t.target} | ${t.measured} | ${t.met === null ? '-' : t.met ? 'yes' : '**no**'} |`),
  ].join('\n');
  return { title: 'Targets (ratios from this run)', markdown, json: targets };
}
