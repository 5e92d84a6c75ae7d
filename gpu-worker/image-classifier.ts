/**
 * What the worker loop needs from a model, so that it runs the same with the real tfjs classifier
 * (classifier.ts) and with a synthetic one (model/synthetic.ts, for benchmarks of the queue alone).
 * This module imports no tfjs: a worker with a synthetic model never loads a backend.
 *
 * @example
 * const classifier: ImageClassifier = new SyntheticClassifier({ delayMs: 50 });
 * await classifier.warmUp();
 * const { predictions, inferenceMs } = await classifier.classifyWithStats([tensorBytes], 5);
 */
import type { Prediction } from '../shared/protocol.ts';

export interface ClassifyRun {
  predictions: Prediction[][];
  /** From building the input tensor to having the top-k values on the CPU. */
  inferenceMs: number;
  /** tf.memory().numTensors before and after: equal unless something leaked (0 and 0 without tfjs). */
  tensorsBefore: number;
  tensorsAfter: number;
}

export interface ImageClassifier {
  /** Reported in every result's `model` field. */
  readonly name: string;
  readonly labels: readonly string[];
  /** What computes: the tfjs backend ('tensorflow', 'wasm', 'cpu'), or 'synthetic'. Picks the default batch size. */
  readonly backend: string;
  /** Top `topK` (at most MAX_TOP_K and the class count) predictions for each TENSOR_BYTES image, in one batch. */
  classifyWithStats(tensors: Uint8Array[], topK?: number): Promise<ClassifyRun>;
  /** One dummy batch, so the first real request does not pay for setup. Returns its ms. */
  warmUp(batchSize?: number): Promise<number>;
  dispose(): void;
}
