/**
 * `npm run worker`: one inference worker process (or a supervisor of several).
 *
 * Reads its settings from the environment (see config.ts), picks the engine (engine/index.ts:
 * ONNX Runtime or TensorFlow.js, GPU before CPU), loads and warms up the model (the builtin
 * ResNet50 is downloaded on first start into MODEL_CACHE_DIR, and converted to ONNX once), then
 * serves jobs until SIGTERM/SIGINT, which finish the batch in hand first.
 *
 * Readiness: one JSON log line on stdout with "msg":"worker ready" per worker process.
 * Metrics and health: Prometheus text on http://METRICS_HOST:METRICS_PORT/metrics, and GET /livez
 * and /readyz for probes (metrics.ts, health.ts; METRICS_PORT=0: none).
 * Exit codes: 0 stopped, 1 failed, 2 bad configuration (the message names the variable) or an
 * engine that was asked for and cannot start here.
 *
 * INFERENCE_PROCESSES: ONNX Runtime computes on every core from one process, so keep 1. The tfjs
 * wasm backend computes on a single thread in Node, so a CPU deployment on it runs one process per
 * core (INFERENCE_PROCESSES=auto); this process then only supervises the children (supervisor.ts).
 * On a GPU keep 1: the GPU is the shared resource and one process with larger batches uses it best.
 */
import { CONFIG_EXIT_CODE, ConfigError, configOrExit, maskedUrl } from '../shared/config.ts';
import { createLogger, type Logger } from '../shared/log.ts';
import { startTracing } from '../shared/tracing/index.ts';
import { parseWorkerConfig, type WorkerConfig } from './config.ts';
import { EngineError } from './engine/image-classifier.ts';
import { progressPrinter } from './model/fetch.ts';
import { SUPERVISED_ENV, superviseProcesses, type ChildReadyMessage } from './supervisor.ts';

const config: WorkerConfig = configOrExit(() => parseWorkerConfig(process.env));

const log = createLogger('gpu-worker', config.logLevel);
installProcessHandlers(log);

if (config.inferenceProcesses > 1) {
  // Download and convert once here rather than in N children at the same time.
  const { prepareModel } = await import('./engine/index.ts');
  try {
    await prepareModel(config, { log, onDownloadProgress: progressPrinter() });
  } catch (error) {
    log.fatal({ err: error }, 'could not prepare the model');
    exitOnStartError(error);
  }
  process.exit(await superviseProcesses(config, log));
} else {
  await runWorker(config, log);
}

async function runWorker(config: WorkerConfig, log: Logger): Promise<void> {
  // Loaded here, not at the top: a supervisor serves no jobs.
  const [{ startWorker }, { WorkerMetrics, serveWorkerMetrics }] = await Promise.all([import('./worker.ts'), import('./metrics.ts')]);
  // Served from the start: process metrics are useful during a long model download too.
  const metrics = config.metricsPort > 0 ? new WorkerMetrics({ defaultMetrics: true, log }) : undefined;
  // The SDK loads only with tracing on (shared/tracing).
  const tracing = config.tracing && (await startTracing(config.tracing, { log }));
  if (config.tracing) log.info({ traces: maskedUrl(config.tracing.url), service: config.tracing.serviceName }, 'tracing on');
  const worker = startWorker(config, { logger: log, onDownloadProgress: progressPrinter(), metrics, tracing });
  const metricsServer =
    metrics && (await serveWorkerMetrics(metrics, { port: config.metricsPort, host: config.metricsHost, log, health: worker.health }));
  const supervised = process.env[SUPERVISED_ENV] === '1' && typeof process.send === 'function';

  let signals = 0;
  const shutdown = (reason: string) => {
    signals++;
    if (signals > 1) {
      log.warn({ reason }, 'stopping now, without finishing the batch');
      process.exit(1);
    }
    log.info({ reason }, 'stopping after the batch in hand');
    void worker.stop();
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  // Under a supervisor, Ctrl-C reaches every process of the group; the supervisor forwards SIGTERM.
  process.on('SIGINT', () => (supervised ? undefined : shutdown('SIGINT')));
  if (supervised) process.on('disconnect', () => shutdown('supervisor gone'));

  try {
    await worker.ready;
    if (supervised) process.send!({ type: 'ready', consumer: worker.consumer } satisfies ChildReadyMessage);
    await worker.done;
    await metricsServer?.close();
    await tracing?.shutdown();
    process.exit(0);
  } catch (error) {
    log.fatal({ err: error }, 'worker failed');
    exitOnStartError(error);
  }
}

/**
 * An engine that was asked for and cannot start, or a Redis certificate or password that cannot
 * work, is a configuration problem: said plainly on stderr, exit 2.
 */
function exitOnStartError(error: unknown): never {
  if (!(error instanceof EngineError || error instanceof ConfigError)) process.exit(1);
  console.error(error.message);
  process.exit(CONFIG_EXIT_CODE);
}

/**
 * Log instead of dying on a stray rejection (ioredis can reject a command during a reconnect);
 * an uncaught exception leaves the process in an unknown state, so that one still exits.
 */
function installProcessHandlers(log: Logger): void {
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled promise rejection'));
  process.on('uncaughtException', (error) => {
    log.fatal({ err: error }, 'uncaught exception');
    process.exit(1);
  });
}
