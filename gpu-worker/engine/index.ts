/**
 * Which engine computes, chosen once at start (ENGINE, EXECUTION_PROVIDER, BACKEND):
 *
 *   ENGINE=auto: the fastest that loads on this host, in this order (measured: docs/engines.md)
 *     1. ONNX Runtime on a GPU: TensorRT, then CUDA              (onnx/)
 *     2. TensorFlow.js on a GPU: tfjs-node-gpu                   (tfjs/)
 *     3. ONNX Runtime on the CPU                                 (onnx/)
 *     4. TensorFlow.js on the CPU: tfjs-node, wasm, cpu          (tfjs/)
 *   ENGINE=onnx / ENGINE=tfjs: that engine's steps only, and a worker that cannot start it exits 2.
 *
 * EXECUTION_PROVIDER names ONNX Runtime's provider and BACKEND the tfjs backend; naming one (not
 * `auto`) picks its engine (config.ts). Every step skipped is logged with its reason, then the
 * choice with its provider and threads. Both engines start from the same files (model/files.ts),
 * read once; the synthetic model loads no engine at all.
 *
 * @example
 * const classifier = await loadClassifier(config, { log, onDownloadProgress });
 * classifier.engine // { name: 'onnx', provider: 'cpu', threads: 2, gpu: false, detail: '...' }
 */
import type { Logger } from '../../shared/log.ts';
import { PROVIDER_CHOICES, type WorkerConfig } from '../config.ts';
import type { DownloadProgress } from '../model/fetch.ts';
import { readModelFiles, type ModelFiles } from '../model/files.ts';
import type { ExecutionProvider } from './onnx/index.ts';
import { EngineError, EngineUnavailableError, type EngineName, type ImageClassifier } from './image-classifier.ts';
import { SyntheticClassifier } from './synthetic.ts';

export {
  EngineError,
  EngineUnavailableError,
  ENGINE_NAMES,
  type EngineInfo,
  type EngineName,
  type ImageClassifier,
} from './image-classifier.ts';

export interface LoadClassifierOptions {
  log: Logger;
  onDownloadProgress?: (progress: DownloadProgress) => void;
}

type EngineSettings = Pick<
  WorkerConfig,
  'engine' | 'executionProvider' | 'backend' | 'model' | 'labels' | 'preprocess' | 'modelName' | 'modelCacheDir' | 'inferenceThreads'
>;

interface Step {
  engine: EngineName;
  what: string;
  load(files: ModelFiles): Promise<ImageClassifier>;
}

export async function loadClassifier(config: EngineSettings, { log, onDownloadProgress }: LoadClassifierOptions): Promise<ImageClassifier> {
  if (config.model.kind === 'synthetic') {
    const classifier = new SyntheticClassifier({ name: config.modelName, delayMs: config.model.delayMs });
    log.warn(
      { model: classifier.name, delayMs: config.model.delayMs },
      'synthetic model: fake predictions, no engine or weights loaded; for benchmarks only',
    );
    return classifier;
  }
  const files = await readModelFiles(config, { onProgress: onDownloadProgress });
  const skipped: { step: string; message: string }[] = [];
  for (const step of engineSteps(config, log)) {
    try {
      const classifier = await step.load(files);
      const { name, provider, threads, detail } = classifier.engine;
      log.info({ engine: name, provider, threads, detail, skipped: skipped.map((s) => s.step) }, 'engine selected');
      return classifier;
    } catch (error) {
      if (!(error instanceof EngineUnavailableError)) throw error;
      skipped.push({ step: step.what, message: error.message });
      log.info({ step: step.what, reason: error.reason, ...(error.details.length > 0 && { details: error.details }) }, 'engine skipped');
    }
  }
  throw new EngineError(`${forcedBy(config)}: nothing could start here: ${describeSkipped(skipped)}`);
}

/**
 * Everything a start needs on disk, made ahead: the builtin model downloaded, and its ONNX graph
 * converted unless ENGINE=tfjs (npm run worker:prefetch; the supervisor, before its children start
 * at once). Returns what was done, for one summary line. A model ONNX cannot take fails here only
 * when ONNX Runtime is forced; with ENGINE=auto the workers will run it on tfjs.
 */
export async function prepareModel(config: EngineSettings, { log, onDownloadProgress }: LoadClassifierOptions): Promise<string> {
  if (config.model.kind === 'synthetic') return 'a synthetic model: nothing to prepare';
  const files = await readModelFiles(config, { onProgress: onDownloadProgress });
  if (config.engine === 'tfjs') return `${files.where}: ready (ENGINE=tfjs: no ONNX graph needed)`;
  const { prepareOnnxModel } = await import('./onnx/index.ts');
  try {
    const onnx = await prepareOnnxModel(files, config, log);
    return `${files.where}: ready; ONNX graph ${onnx.converted ? `converted in ${onnx.entry.convertMs} ms` : 'already cached'}: ${onnx.path}`;
  } catch (error) {
    if (!(error instanceof EngineUnavailableError)) throw error;
    if (config.engine === 'onnx') throw new EngineError(`${forcedBy(config)}: ${error.message}`, { cause: error });
    log.warn({ reason: error.message }, 'no ONNX graph for this model: ENGINE=auto will run it on tfjs');
    return `${files.where}: ready for tfjs only (${error.message})`;
  }
}

/** The steps of ENGINE=auto (see the header) that the configuration allows. */
function engineSteps(config: EngineSettings, log: Logger): Step[] {
  const providers = config.executionProvider === 'auto' ? PROVIDER_CHOICES.filter((p) => p !== 'auto') : [config.executionProvider];
  const gpuProviders = providers.filter((p) => p !== 'cpu');
  // One conversion (or cache read) for both ONNX steps; a model that cannot be converted skips both.
  let onnxModel: Promise<import('./onnx/cache.ts').CachedOnnxModel> | undefined;
  const onnxStep = (what: string, list: readonly ExecutionProvider[]): Step => ({
    engine: 'onnx',
    what,
    async load(files) {
      const onnx = await import('./onnx/index.ts');
      // Not even converted when none of these providers is installed (a CPU host, or a GPU host
      // running tfjs-node-gpu without ONNX Runtime's GPU libraries).
      const missing = list.map((p) => [p, onnx.missingLibrary(p)] as const).filter(([, why]) => why);
      if (missing.length === list.length) {
        throw new EngineUnavailableError(`no execution provider of ${list.join(', ')} is installed`, {
          details: missing.map(([p, why]) => `${p}: ${why}`),
        });
      }
      onnxModel ??= onnx.prepareOnnxModel(files, config, log);
      return onnx.loadOnnxClassifier(await onnxModel, files, config, list);
    },
  });
  const tfjsStep = (what: string, gpuOnly: boolean): Step => ({
    engine: 'tfjs',
    what,
    async load(files) {
      const { loadTfjsClassifier } = await import('./tfjs/index.ts');
      return loadTfjsClassifier(files, config, { backend: gpuOnly ? 'tensorflow' : config.backend, gpuOnly }, log);
    },
  });
  const steps: Step[] = [];
  const onnx = config.engine !== 'tfjs';
  const tfjs = config.engine !== 'onnx';
  if (onnx && gpuProviders.length > 0) steps.push(onnxStep(`onnx (${gpuProviders.join(', ')})`, gpuProviders));
  // ENGINE=auto means no backend was named (config.ts), so the GPU backend may be tried.
  if (config.engine === 'auto') steps.push(tfjsStep('tfjs on a GPU (tfjs-node-gpu)', true));
  if (onnx && providers.includes('cpu')) steps.push(onnxStep('onnx (cpu)', ['cpu']));
  if (tfjs) steps.push(tfjsStep(`tfjs (${config.backend === 'auto' ? 'tfjs-node, wasm, cpu' : config.backend})`, false));
  return steps;
}

/** Steps that failed alike (both ONNX steps, on a model that cannot be converted) are named together. */
function describeSkipped(skipped: { step: string; message: string }[]): string {
  const byMessage = new Map<string, string[]>();
  for (const { step, message } of skipped) byMessage.set(message, [...(byMessage.get(message) ?? []), step]);
  return [...byMessage].map(([message, steps]) => `${steps.join(', ')}: ${message}`).join('; ');
}

function forcedBy(config: EngineSettings): string {
  if (config.executionProvider !== 'auto') return `EXECUTION_PROVIDER=${config.executionProvider}`;
  if (config.backend !== 'auto') return `BACKEND=${config.backend}`;
  return `ENGINE=${config.engine}`;
}
