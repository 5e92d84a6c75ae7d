/**
 * The bare engine: a model through the worker's own engines (gpu-worker/engine: ONNX Runtime,
 * TensorFlow.js), no HTTP, no Redis. For each engine setup (an engine, its provider or backend, and
 * a replica count) and batch size: the median time of one `classifyWithStats` call, the throughput
 * of its N replicas (N child processes, one model each, as INFERENCE_PROCESSES runs them) working
 * at the same time, and the CPU time they spend per image.
 *
 * Every replica, the single one included, is a child process (`node --import tsx bench/engine.ts
 * --child <json>`) that loads its engine exactly as a worker does (loadClassifier, so ONNX Runtime
 * reads the converted graph from MODEL_CACHE_DIR), so each measurement starts from the same clean
 * process and the parent never competes for a core. One group of children per setup, all loaded
 * at the start:
 *
 *   spawn N -> each loads the engine and model, reports 'ready' (engine, provider, threads)
 *   per batch size: 'warm' (warm-up batches of that shape) -> all 'warmed'; then in each round,
 *   group by group: 'go' to all its children at once -> each runs its share of `repeats` batches
 *   of seeded random uint8 tensors -> 'done' with its timings and CPU time
 *
 * Aggregate img/s = all images of all replicas / wall time from 'go' to the last 'done' (parent
 * clock, summed over the rounds). Children are killed when the run ends, on any error, and when
 * the parent exits; a child also exits by itself when its IPC channel closes (the parent died).
 *
 * @example
 * const results = await benchEngine({
 *   model: 'resnet50',
 *   setups: [{ engine: 'onnx', provider: 'cpu', replicas: 1 }, { engine: 'tfjs', provider: 'wasm', replicas: 2 }],
 *   batchSizes: [1, 8, 32], repeats: 6, warmup: 1, rounds: 3,
 * });
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mulberry32 } from '../dev/random.ts';
import type { EngineInfo } from '../gpu-worker/engine/image-classifier.ts';
import type { PreprocessMode } from '../gpu-worker/model/preprocess.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { median, round } from './stats.ts';

const ENGINE_FILE = fileURLToPath(import.meta.url);
const REPO_ROOT = resolve(ENGINE_FILE, '../..');

/** One engine configuration to measure. */
export interface EngineSetup {
  engine: 'onnx' | 'tfjs';
  /** ONNX Runtime's EXECUTION_PROVIDER or tfjs' BACKEND ('auto': the worker's own order). */
  provider: string;
  /** Processes running it at once (INFERENCE_PROCESSES); each ONNX Runtime one gets cores / replicas threads. */
  replicas: number;
}

/** 'onnx', 'tfjs x2': how tables and progress lines name a setup. */
export const setupLabel = (setup: Pick<EngineSetup, 'engine' | 'replicas'>) =>
  `${setup.engine}${setup.replicas > 1 ? ` x${setup.replicas}` : ''}`;

/**
 * The worker settings that run `setup` (the bench's workers get the same); ONNX Runtime's threads
 * follow from INFERENCE_PROCESSES as in a worker (cores / processes).
 */
export function setupEnv(setup: EngineSetup): Record<string, string | undefined> {
  const provider = setup.provider === 'auto' ? undefined : setup.provider;
  return {
    ENGINE: setup.engine,
    EXECUTION_PROVIDER: setup.engine === 'onnx' ? provider : undefined,
    BACKEND: setup.engine === 'tfjs' ? provider : undefined,
    INFERENCE_PROCESSES: String(setup.replicas),
  };
}

export interface EngineBenchOptions {
  /** 'resnet50' (the builtin model) or a directory holding model.json (+ labels.json). */
  model: 'resnet50' | (string & {});
  /** Required for a directory model (see PREPROCESS in gpu-worker/config.ts). */
  preprocess?: PreprocessMode;
  setups: EngineSetup[];
  batchSizes: number[];
  /** Timed batches per replica and batch size: one number, or per batch size (fewer for big batches). */
  repeats: number | ((batchSize: number) => number);
  /** Untimed batches per replica before each batch size's timed ones. */
  warmup: number;
  /**
   * The timed batches of each batch size split into this many rounds, in which the setups take
   * turns (default 1: each setup's batches in one go). Use 2 or more on a machine whose speed
   * drifts: the ratio between setups is then measured side by side in time.
   */
  rounds?: number;
  /** Seed of the random input tensors (content does not matter for speed). */
  seed?: number;
  /** Most a child may take for one step (load, warm-up, run) before the group is killed. */
  stepTimeoutMs?: number;
  onProgress?: (event: EngineProgress) => void;
}

export type EngineProgress =
  | { kind: 'loading'; setup: string; replicas: number }
  | { kind: 'warming'; setup: string; replicas: number; batchSize: number }
  /** done/total: this setup's batches at this batch size so far; roundEnd: the last of this round's turn. */
  | {
      kind: 'batch';
      setup: string;
      replicas: number;
      batchSize: number;
      done: number;
      total: number;
      round: number;
      rounds: number;
      roundEnd: boolean;
    };

/** What a child reports once its engine and model are loaded. */
export interface ReplicaInfo {
  engine: EngineInfo;
  model: string;
  /** From the start of the child's loading to a warm engine. */
  loadMs: number;
}

export interface EngineResult extends ReplicaInfo {
  /** setupLabel() of the setup measured. */
  setup: string;
  batchSize: number;
  replicas: number;
  /** Timed batches per replica. */
  repeats: number;
  /** Rounds the batches were split into, taking turns with the other replica counts. */
  rounds: number;
  /** All timed images, all replicas. */
  images: number;
  /** Median wall time of one classify call (tensor build, predict, top-k read back), over all replicas' batches. */
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Median of the classifier's own inferenceMs (same call without copying the batch and mapping labels). */
  medianInferenceMs: number;
  medianMsPerImage: number;
  /** One replica's throughput from the median batch: batchSize / medianMs. */
  imgPerSec: number;
  /** From the parent's 'go' to the last replica's 'done', summed over the rounds. */
  wallMs: number;
  /** images / wallMs: what all replicas together deliver. */
  aggregateImgPerSec: number;
  /** CPU time (user + system, all threads) the replicas spent per image while timed. */
  cpuMsPerImage: number;
}

// ---------------------------------------------------------------------------------------------
// IPC messages

interface ChildOptions {
  model: string;
  preprocess?: PreprocessMode;
  /** setupEnv() of the setup: ENGINE, EXECUTION_PROVIDER or BACKEND, INFERENCE_PROCESSES. */
  env: Record<string, string | undefined>;
  seed: number;
}

type ToChild = { type: 'warm'; batchSize: number; warmup: number } | { type: 'go'; batchSize: number; repeats: number } | { type: 'exit' };

type FromChild =
  | ({ type: 'ready' } & ReplicaInfo)
  | { type: 'warmed' }
  | { type: 'progress'; done: number }
  | { type: 'done'; callMs: number[]; inferenceMs: number[]; cpuMs: number }
  | { type: 'error'; message: string };

// ---------------------------------------------------------------------------------------------
// Parent

export async function benchEngine(options: EngineBenchOptions): Promise<EngineResult[]> {
  for (const [name, list] of [
    ['batchSizes', options.batchSizes],
    ['replicas', options.setups.map((s) => s.replicas)],
  ] as const) {
    if (list.length === 0 || list.some((n) => !Number.isInteger(n) || n < 1))
      throw new RangeError(`${name}: expected positive integers, got ${JSON.stringify(list)}`);
  }
  if (options.model !== 'resnet50' && !options.preprocess)
    throw new Error(`preprocess is required for a model directory (${options.model})`);

  const repeatsFor = (batchSize: number) => {
    const n = typeof options.repeats === 'function' ? options.repeats(batchSize) : options.repeats;
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`repeats for batch ${batchSize}: expected a positive integer, got ${n}`);
    return n;
  };
  const model = options.model === 'resnet50' ? 'resnet50' : resolve(options.model);
  // Downloaded and converted once, here, so the children do not race to fill the cache.
  await prepareModel(
    model,
    options.preprocess,
    options.setups.some((s) => s.engine === 'onnx'),
  );
  const progress = options.onProgress ?? (() => {});
  const timeoutMs = options.stepTimeoutMs ?? 10 * 60_000;

  const rounds = options.rounds ?? 1;
  if (!Number.isInteger(rounds) || rounds < 1) throw new RangeError(`rounds: expected a positive integer, got ${rounds}`);

  // Every setup's group is loaded once and kept for the whole run, so that the setups can take
  // turns: a slow spell of a shared machine then lands on all of them, not on one row.
  const groups: { setup: string; replicas: number; group: ReplicaGroup }[] = [];
  const results: EngineResult[] = [];
  try {
    for (const setup of options.setups) {
      const label = setupLabel(setup);
      progress({ kind: 'loading', setup: label, replicas: setup.replicas });
      const childOptions: ChildOptions = { model, preprocess: options.preprocess, env: setupEnv(setup), seed: options.seed ?? 1 };
      groups.push({ setup: label, replicas: setup.replicas, group: await ReplicaGroup.start(setup.replicas, childOptions, timeoutMs) });
    }
    for (const batchSize of options.batchSizes) {
      const repeats = repeatsFor(batchSize);
      const chunks = splitEvenly(repeats, Math.min(rounds, repeats));
      const measured = groups.map(() => ({ wallMs: 0, done: 0, reports: [] as Extract<FromChild, { type: 'done' }>[] }));
      for (const { setup, replicas, group } of groups) {
        progress({ kind: 'warming', setup, replicas, batchSize });
        await group.all({ type: 'warm', batchSize, warmup: options.warmup }, 'warmed');
      }
      for (const [round, chunk] of chunks.entries()) {
        // A-B, then B-A: a drift over the round's length weighs on both orders alike.
        const order = groups.map((_, i) => i);
        if (round % 2 === 1) order.reverse();
        for (const i of order) {
          const { setup, replicas, group } = groups[i]!;
          const m = measured[i]!;
          const turnEnd = m.done + chunk * replicas;
          const started = performance.now();
          const reports = await group.all({ type: 'go', batchSize, repeats: chunk }, 'done', (message) => {
            if (message.type !== 'progress') return;
            m.done++;
            progress({
              kind: 'batch',
              setup,
              replicas,
              batchSize,
              done: m.done,
              total: repeats * replicas,
              round: round + 1,
              rounds: chunks.length,
              roundEnd: m.done === turnEnd,
            });
          });
          m.wallMs += performance.now() - started;
          m.reports.push(...reports);
        }
      }
      for (const [i, { setup, replicas, group }] of groups.entries()) {
        results.push(summarise(group.info, setup, batchSize, replicas, repeats, chunks.length, measured[i]!.wallMs, measured[i]!.reports));
      }
    }
  } finally {
    await Promise.all(groups.map(({ group }) => group.stop()));
  }
  const order = groups.map((g) => g.setup);
  return results.sort(
    (a, b) =>
      order.indexOf(a.setup) - order.indexOf(b.setup) || options.batchSizes.indexOf(a.batchSize) - options.batchSizes.indexOf(b.batchSize),
  );
}

/** `total` as `parts` whole numbers that differ by at most one, larger first. */
function splitEvenly(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

function summarise(
  info: ReplicaInfo,
  setup: string,
  batchSize: number,
  replicas: number,
  repeats: number,
  rounds: number,
  wallMs: number,
  reports: Extract<FromChild, { type: 'done' }>[],
): EngineResult {
  const callMs = reports.flatMap((r) => r.callMs);
  const medianMs = median(callMs);
  const images = batchSize * repeats * replicas;
  return {
    ...info,
    setup,
    batchSize,
    replicas,
    repeats,
    rounds,
    images,
    medianMs: round(medianMs),
    minMs: round(Math.min(...callMs)),
    maxMs: round(Math.max(...callMs)),
    medianInferenceMs: round(median(reports.flatMap((r) => r.inferenceMs))),
    medianMsPerImage: round(medianMs / batchSize),
    imgPerSec: round((batchSize * 1000) / medianMs),
    wallMs: round(wallMs),
    aggregateImgPerSec: round((images * 1000) / wallMs),
    cpuMsPerImage: round(reports.reduce((sum, r) => sum + r.cpuMs, 0) / images),
  };
}

/** The model downloaded (the builtin one) and converted to ONNX (when an ONNX setup runs), as npm run worker:prefetch does. */
async function prepareModel(model: string, preprocess: PreprocessMode | undefined, onnx: boolean): Promise<void> {
  const [{ parseWorkerConfig }, engine, { progressPrinter }, { createLogger }] = await Promise.all([
    import('../gpu-worker/config.ts'),
    import('../gpu-worker/engine/index.ts'),
    import('../gpu-worker/model/fetch.ts'),
    import('../shared/log.ts'),
  ]);
  const config = parseWorkerConfig({
    MODEL: model,
    PREPROCESS: preprocess,
    MODEL_CACHE_DIR: process.env.MODEL_CACHE_DIR,
    ENGINE: onnx ? 'onnx' : 'tfjs',
  });
  await engine.prepareModel(config, { log: createLogger('bench', 'warn'), onDownloadProgress: progressPrinter() });
}

/**
 * Parameter count of a model directory from its weights manifest, without loading it: the same
 * number as LayersModel.countParams() (all weights, trainable or not).
 */
export async function countParamsInManifest(dir: string): Promise<number> {
  const json = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as { weightsManifest?: { weights: { shape: number[] }[] }[] };
  return (json.weightsManifest ?? []).flatMap((group) => group.weights).reduce((sum, w) => sum + w.shape.reduce((a, b) => a * b, 1), 0);
}

/** Children alive in this process, killed if it exits while they run. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
}

class ReplicaGroup {
  private constructor(
    private readonly children: ChildProcess[],
    private readonly stderr: string[][],
    private readonly timeoutMs: number,
    public info: ReplicaInfo,
  ) {}

  static async start(count: number, options: ChildOptions, timeoutMs: number): Promise<ReplicaGroup> {
    const children: ChildProcess[] = [];
    const stderr: string[][] = [];
    for (let i = 0; i < count; i++) {
      const child = fork(ENGINE_FILE, ['--child', JSON.stringify({ ...options, seed: options.seed + i })], {
        cwd: REPO_ROOT,
        execArgv: ['--import', 'tsx'],
        env: { ...process.env, NODE_ENV: process.env.NODE_ENV ?? 'production' },
        stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      });
      track(child);
      const tail: string[] = [];
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        tail.push(chunk);
        if (tail.length > 20) tail.shift();
      });
      children.push(child);
      stderr.push(tail);
    }
    const group = new ReplicaGroup(children, stderr, timeoutMs, undefined as unknown as ReplicaInfo);
    try {
      const ready = await group.collect('ready');
      const first = ready[0]!;
      const { type: _type, ...info } = first;
      group.info = info;
      const describe = (r: ReplicaInfo) => `${r.engine.name}/${r.engine.provider}`;
      const odd = ready.find((r) => describe(r) !== describe(first));
      if (odd) throw new Error(`replicas chose different engines: ${describe(first)} and ${describe(odd)}`);
      return group;
    } catch (error) {
      await group.stop();
      throw error;
    }
  }

  /** Send `message` to every child at once and wait for each one's `reply`. */
  async all<T extends FromChild['type']>(
    message: ToChild,
    reply: T,
    onMessage?: (m: FromChild) => void,
  ): Promise<Extract<FromChild, { type: T }>[]> {
    const waiting = this.collect(reply, onMessage);
    for (const child of this.children) child.send(message);
    return waiting;
  }

  private collect<T extends FromChild['type']>(reply: T, onMessage?: (m: FromChild) => void): Promise<Extract<FromChild, { type: T }>[]> {
    return Promise.all(
      this.children.map(
        (child, i) =>
          new Promise<Extract<FromChild, { type: T }>>((resolvePromise, reject) => {
            const cleanup = () => {
              clearTimeout(timer);
              child.off('message', onChildMessage);
              child.off('exit', onExit);
            };
            const fail = (why: string) => {
              cleanup();
              const tail = this.stderr[i]!.join('').trim().split('\n').slice(-8).join('\n');
              reject(new Error(`bench replica ${i + 1}: ${why}${tail ? `\n${tail}` : ''}`));
            };
            const timer = setTimeout(() => fail(`no '${reply}' within ${this.timeoutMs} ms`), this.timeoutMs);
            const onExit = (code: number | null, signal: string | null) =>
              fail(`exited (${signal ?? `code ${code}`}) while waiting for '${reply}'`);
            const onChildMessage = (raw: unknown) => {
              const message = raw as FromChild;
              if (message.type === 'error') return fail(message.message);
              onMessage?.(message);
              if (message.type === reply) {
                cleanup();
                resolvePromise(message as Extract<FromChild, { type: T }>);
              }
            };
            child.on('message', onChildMessage);
            child.once('exit', onExit);
          }),
      ),
    );
  }

  /** Ask politely, then SIGKILL whatever is still there after a second. */
  async stop(): Promise<void> {
    await Promise.all(
      this.children.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise<void>((done) => child.once('exit', () => done()));
        if (child.connected) child.send({ type: 'exit' } satisfies ToChild, () => {});
        const timer = setTimeout(() => child.kill('SIGKILL'), 1_000);
        await exited;
        clearTimeout(timer);
      }),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Child

async function runChild(options: ChildOptions): Promise<void> {
  const send = (message: FromChild) => process.send!(message);
  // The parent is gone (crash, Ctrl-C): nobody wants the numbers.
  process.on('disconnect', () => process.exit(1));
  try {
    const started = performance.now();
    const [{ parseWorkerConfig }, { loadClassifier }, { createLogger }] = await Promise.all([
      import('../gpu-worker/config.ts'),
      import('../gpu-worker/engine/index.ts'),
      import('../shared/log.ts'),
    ]);
    const config = parseWorkerConfig({
      MODEL: options.model,
      PREPROCESS: options.preprocess,
      MODEL_CACHE_DIR: process.env.MODEL_CACHE_DIR,
      ...options.env,
    });
    // Warnings on stderr (the parent shows its tail if this child fails).
    const classifier = await loadClassifier(config, { log: createLogger('bench-replica', 'warn', process.stderr) });
    await classifier.warmUp();
    const random = mulberry32(options.seed);
    const tensorsFor = (batchSize: number) =>
      Array.from({ length: batchSize }, () => {
        const bytes = new Uint8Array(TENSOR_BYTES);
        for (let i = 0; i < bytes.length; i++) bytes[i] = (random() * 256) | 0;
        return bytes;
      });
    let tensors: Uint8Array[] = [];

    process.on('message', (raw) => {
      const message = raw as ToChild;
      const step = async () => {
        if (message.type === 'exit') {
          classifier.dispose();
          process.exit(0);
        }
        if (message.type === 'warm') {
          tensors = tensorsFor(message.batchSize);
          for (let i = 0; i < message.warmup; i++) await classifier.classifyWithStats(tensors, 1);
          send({ type: 'warmed' });
          return;
        }
        if (tensors.length !== message.batchSize) tensors = tensorsFor(message.batchSize);
        const callMs: number[] = [];
        const inferenceMs: number[] = [];
        const cpuBefore = process.cpuUsage();
        for (let i = 0; i < message.repeats; i++) {
          const begun = performance.now();
          const run = await classifier.classifyWithStats(tensors, 5);
          callMs.push(performance.now() - begun);
          inferenceMs.push(run.inferenceMs);
          send({ type: 'progress', done: i + 1 });
        }
        const cpu = process.cpuUsage(cpuBefore);
        send({ type: 'done', callMs, inferenceMs, cpuMs: (cpu.user + cpu.system) / 1000 });
      };
      step().catch((error: unknown) => send({ type: 'error', message: String((error as Error)?.stack ?? error) }));
    });

    send({ type: 'ready', engine: classifier.engine, model: classifier.name, loadMs: Math.round(performance.now() - started) });
  } catch (error) {
    // Exit only once the report is out: the parent shows it instead of a bare exit code.
    process.send!({ type: 'error', message: String((error as Error)?.stack ?? error) } satisfies FromChild, () => process.exit(1));
  }
}

if (process.argv[2] === '--child' && process.argv[1] && resolve(process.argv[1]) === ENGINE_FILE) {
  if (!process.send) throw new Error('bench/engine.ts --child must be started by benchEngine (it needs an IPC channel)');
  await runChild(JSON.parse(process.argv[3] ?? '{}') as ChildOptions);
}
