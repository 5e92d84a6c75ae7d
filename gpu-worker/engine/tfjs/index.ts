/**
 * The TensorFlow.js engine: the tfjs layers model as it is, on the fastest tfjs backend that loads
 * (backend.ts: tfjs-node-gpu -> tfjs-node -> wasm -> cpu, or the one BACKEND names).
 *
 * @example
 * const classifier = await loadTfjsClassifier(files, config, { backend: 'auto' }, log);
 */
import type { Logger } from '../../../shared/log.ts';
import type { BackendChoice, WorkerConfig } from '../../config.ts';
import type { ModelFiles } from '../../model/files.ts';
import { EngineUnavailableError } from '../image-classifier.ts';
import { BackendError, selectBackend } from './backend.ts';
import { TfjsClassifier } from './classifier.ts';
import { buildModel } from './load.ts';

export interface TfjsChoice {
  backend: BackendChoice;
  /** Only tfjs-node-gpu on a GPU will do (ENGINE=auto ranks it above ONNX Runtime on the CPU). */
  gpuOnly?: boolean;
}

const GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';

export async function loadTfjsClassifier(
  files: ModelFiles,
  config: Pick<WorkerConfig, 'preprocess' | 'modelName'>,
  choice: TfjsChoice,
  log: Logger,
): Promise<TfjsClassifier> {
  let backend;
  try {
    backend = await selectBackend(choice.backend, choice.gpuOnly ? { nativePackages: [GPU_PACKAGE] } : {});
  } catch (error) {
    if (error instanceof BackendError) {
      const details = error.skipped.map((s) => `${s.package}: ${s.reason}`);
      throw new EngineUnavailableError(choice.gpuOnly ? 'no tfjs binding for the GPU' : error.message, {
        cause: error,
        details: choice.gpuOnly ? details : [],
      });
    }
    throw error;
  }
  for (const skipped of backend.skipped) log.debug(skipped, 'tfjs backend skipped');
  if (choice.gpuOnly && !backend.gpu) throw new EngineUnavailableError(`${backend.package} loaded, but on the CPU (${backend.detail})`);
  const loaded = await buildModel(files, config);
  log.info(
    { model: loaded.name, source: loaded.source, params: loaded.paramCount, classes: loaded.labels.length, loadMs: loaded.loadMs },
    'model loaded',
  );
  return new TfjsClassifier(loaded, backend);
}
