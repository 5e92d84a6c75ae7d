/**
 * What the worker loop needs from an engine: batches of wire tensors in, top-k labels out. The ONNX
 * Runtime engine (onnx/), the TensorFlow.js engine (tfjs/) and the synthetic one (synthetic.ts, for
 * benchmarks of the queue alone) all implement it; engine/index.ts picks one. This module imports
 * no engine.
 *
 * @example
 * const classifier: ImageClassifier = new SyntheticClassifier({ delayMs: 50 });
 * await classifier.warmUp();
 * const { predictions, inferenceMs } = await classifier.classifyWithStats([tensorBytes], 5);
 */
import type { Prediction } from '../../shared/protocol.ts';

export interface ClassifyRun {
  predictions: Prediction[][];
  /** From building the input tensor to having the top-k values on the CPU. */
  inferenceMs: number;
  /** tf.memory().numTensors before and after: equal unless something leaked (0 and 0 without tfjs). */
  tensorsBefore: number;
  tensorsAfter: number;
}

export const ENGINE_NAMES = ['onnx', 'tfjs'] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

/** What computes, as the start log, the heartbeat (GET /v1/models) and the metrics name it. */
export interface EngineInfo {
  name: EngineName | 'synthetic';
  /** ONNX Runtime's execution provider ('tensorrt', 'cuda', 'cpu'), tfjs' backend ('tensorflow', 'wasm', 'cpu'), or 'none'. */
  provider: string;
  /** Threads one inference uses on the CPU (ORT's intra-op pool; 1 for tfjs wasm; 0: none). */
  threads: number;
  /** On a GPU (a GPU provider or backend that loaded). */
  gpu: boolean;
  /** Human-readable: package, version, device. */
  detail: string;
}

export interface ImageClassifier {
  /** Reported in every result's `model` field. */
  readonly name: string;
  readonly labels: readonly string[];
  readonly engine: EngineInfo;
  /** Top `topK` (at most MAX_TOP_K and the class count) predictions for each TENSOR_BYTES image, in one batch. */
  classifyWithStats(tensors: Uint8Array[], topK?: number): Promise<ClassifyRun>;
  /** One dummy batch, so the first real request does not pay for setup. Returns its ms. */
  warmUp(batchSize?: number): Promise<number>;
  dispose(): void;
}

/**
 * An engine (or one of its providers or backends) that cannot run on this host, with the reason:
 * ENGINE=auto tries the next one; a forced ENGINE, EXECUTION_PROVIDER or BACKEND stops the worker
 * (exit 2). Bad model files are a ModelLoadError instead: no engine can serve them.
 */
export class EngineUnavailableError extends Error {
  override name = 'EngineUnavailableError';

  constructor(message: string, options: { cause?: unknown; details?: string[] } = {}) {
    super(options.details?.length ? `${message} (${options.details.join('; ')})` : message, { cause: options.cause });
    this.reason = message;
    this.details = options.details ?? [];
  }

  /** The message without its details. */
  readonly reason: string;
  /** One line per thing tried (a provider, a package) and why it failed. */
  readonly details: string[];
}

/** The engine the configuration asks for cannot run on this host: the worker exits 2 with this message. */
export class EngineError extends Error {
  override name = 'EngineError';
}
