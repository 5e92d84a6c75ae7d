/**
 * The ONNX Runtime engine (`onnxruntime-node`): the model converted to ONNX once (convert.ts,
 * cached by cache.ts), one session per process on the first execution provider that loads.
 *
 * Providers: `tensorrt` (with CUDA for what TensorRT leaves), `cuda`, `cpu`. onnxruntime-node ships
 * the CPU provider for every platform; the CUDA 12 and TensorRT providers are separate libraries on
 * Linux x64 that its install script downloads from NuGet, which this project's installs skip
 * (.npmrc): `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install` adds
 * them on a GPU host (docs/engines.md). A provider whose library is missing is skipped without
 * trying; one that is present but cannot start (no GPU, no CUDA 12 / cuDNN 9 / TensorRT libraries)
 * fails its session and is skipped with ONNX Runtime's reason.
 *
 * @example
 * const model = await prepareOnnxModel(files, config, log);            // converted or cached
 * const classifier = await loadOnnxClassifier(model, files, config, ['cuda', 'cpu']);
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import type { Logger } from '../../../shared/log.ts';
import type { ProviderChoice, WorkerConfig } from '../../config.ts';
import type { ModelFiles } from '../../model/files.ts';
import { EngineUnavailableError } from '../image-classifier.ts';
import { cachedOnnxModel, type CachedOnnxModel } from './cache.ts';
import { OnnxClassifier } from './classifier.ts';
import { ConversionError } from './layers.ts';

export type ExecutionProvider = Exclude<ProviderChoice, 'auto'>;

/** The one command that adds the GPU providers (they are not in the npm package). */
export const GPU_INSTALL_COMMAND = 'ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install';

type OnnxSettings = Pick<WorkerConfig, 'modelCacheDir' | 'modelName' | 'preprocess' | 'inferenceThreads'>;

/**
 * The model's ONNX graph: from the cache, or converted now (loading the tfjs model on whatever tfjs
 * backend the process has, cpu if none). A layer without a conversion, or any other failure of the
 * converter, makes the engine unavailable (ENGINE=auto then runs tfjs); bad model files (a
 * ModelLoadError from building the tfjs model) do not: no engine could serve them.
 */
export async function prepareOnnxModel(files: ModelFiles, config: OnnxSettings, log: Logger): Promise<CachedOnnxModel> {
  const model = await cachedOnnxModel(files, config, log, async () => {
    const [{ buildModel }, { convertLayersModel, ensureTfjsBackend }] = await Promise.all([
      import('../tfjs/load.ts'),
      import('./convert.ts'),
    ]);
    log.info({ model: config.modelName, source: files.where }, 'converting the model to ONNX (once; cached for later starts)');
    await ensureTfjsBackend();
    const loaded = await buildModel(files, config);
    try {
      return convertLayersModel(loaded);
    } catch (error) {
      if (error instanceof ConversionError) {
        throw new EngineUnavailableError(`the model cannot be converted to ONNX: ${error.message}`, { cause: error });
      }
      log.error({ err: error }, 'the ONNX conversion failed unexpectedly');
      throw new EngineUnavailableError(`the ONNX conversion failed: ${firstLine(error)}`, { cause: error });
    } finally {
      loaded.model.dispose();
    }
  });
  const { entry } = model;
  if (model.converted)
    log.info({ path: model.path, convertMs: entry.convertMs, nodes: entry.nodes, mb: round(entry.bytes / 1e6) }, 'model converted to ONNX');
  else log.debug({ path: model.path }, 'ONNX model from the cache');
  if (entry.classes !== files.labels.length) {
    throw new EngineUnavailableError(`the converted model outputs ${entry.classes} classes but there are ${files.labels.length} labels`);
  }
  return model;
}

/** A session on the first of `providers` that loads; the error of none names each one's reason. */
export async function loadOnnxClassifier(
  model: CachedOnnxModel,
  files: ModelFiles,
  config: OnnxSettings,
  providers: readonly ExecutionProvider[],
): Promise<OnnxClassifier> {
  const ort = await importOrt();
  const reasons: string[] = [];
  for (const provider of providers) {
    const missing = missingLibrary(provider);
    if (missing) {
      reasons.push(`${provider}: ${missing}`);
      continue;
    }
    const started = performance.now();
    try {
      const session = await ort.InferenceSession.create(model.bytes, {
        // TensorRT takes what it can; CUDA, not the CPU, gets the rest.
        executionProviders: provider === 'tensorrt' ? ['tensorrt', 'cuda'] : [provider],
        intraOpNumThreads: config.inferenceThreads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
        logSeverityLevel: 3,
      });
      const threads = config.inferenceThreads;
      return new OnnxClassifier(session, ort, {
        name: config.modelName,
        labels: files.labels,
        engine: {
          name: 'onnx',
          provider,
          threads,
          gpu: provider !== 'cpu',
          detail: `onnxruntime-node ${ort.env.versions.node ?? ''}, ${provider} execution provider, ${threads} intra-op thread${threads === 1 ? '' : 's'}; session in ${Math.round(performance.now() - started)} ms`,
        },
      });
    } catch (error) {
      reasons.push(`${provider}: ${firstLine(error)}`);
    }
  }
  throw new EngineUnavailableError(`no execution provider of ${providers.join(', ')} could start`, { details: reasons });
}

async function importOrt(): Promise<typeof Ort> {
  try {
    // A CommonJS package: its exports are the default export's properties under ESM.
    const module = (await import('onnxruntime-node')) as typeof Ort & { default?: typeof Ort };
    return module.default ?? module;
  } catch (error) {
    throw new EngineUnavailableError(`onnxruntime-node does not load here: ${firstLine(error)}`, { cause: error });
  }
}

/** Why a GPU provider cannot be tried at all; undefined when its library is there (or for cpu). */
export function missingLibrary(provider: ExecutionProvider): string | undefined {
  if (provider === 'cpu') return undefined;
  const platform = `${process.platform}/${process.arch}`;
  if (platform !== 'linux/x64') return `onnxruntime-node has no ${provider} provider for ${platform} (Linux x64 only)`;
  const binding = join(
    dirname(createRequire(import.meta.url).resolve('onnxruntime-node')),
    '..',
    'bin',
    'napi-v6',
    process.platform,
    process.arch,
  );
  const library = join(binding, `libonnxruntime_providers_${provider}.so`);
  return existsSync(library)
    ? undefined
    : `not installed (onnxruntime-node has no ${basename(library)}; on a GPU host: ${GPU_INSTALL_COMMAND})`;
}

const firstLine = (error: unknown) =>
  String((error as Error)?.message ?? error)
    .split('\n')[0]!
    .trim();
const round = (n: number) => Math.round(n * 10) / 10;
