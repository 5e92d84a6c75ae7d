/**
 * The tfjs engine's classifier: N wire tensors in, one `predict` call, top-k labels out.
 *
 * @example
 * const classifier = new TfjsClassifier(await loadModel(config), await selectBackend('auto'));
 * await classifier.warmUp();
 * const [predictions] = await classifier.classify([tensorBytes], 5); // [{ label, probability }]
 */
import * as tf from '@tensorflow/tfjs-core';
import { MAX_TOP_K, type Prediction } from '../../../shared/protocol.ts';
import { CHANNELS, IMAGE_SIZE, TENSOR_BYTES } from '../../../shared/tensor.ts';
import type { ClassifyRun, EngineInfo, ImageClassifier } from '../image-classifier.ts';
import type { SelectedBackend } from './backend.ts';
import type { LoadedModel } from './load.ts';
import { preprocess } from './preprocess.ts';

export type { ClassifyRun } from '../image-classifier.ts';

/**
 * tfjs has one engine per process, shared by every model in it. Runs are serialised through this
 * chain so they cannot interleave at an `await` (one backend runs one batch at a time anyway), and
 * so the tensor counts around a run are exact.
 */
let engineQueue: Promise<unknown> = Promise.resolve();
function exclusive<T>(run: () => Promise<T>): Promise<T> {
  const result = engineQueue.then(run, run);
  engineQueue = result.catch(() => {});
  return result;
}

export class TfjsClassifier implements ImageClassifier {
  readonly name: string;
  readonly labels: readonly string[];
  readonly engine: EngineInfo;

  /** `backend`: what selectBackend chose; without it, the process's current tfjs backend is named. */
  constructor(
    readonly loaded: LoadedModel,
    backend?: SelectedBackend,
  ) {
    this.name = loaded.name;
    this.labels = loaded.labels;
    const name = backend?.name ?? tf.getBackend();
    this.engine = {
      name: 'tfjs',
      provider: name,
      threads: backend?.threads ?? 1,
      gpu: backend?.gpu ?? false,
      detail: backend ? `${backend.package}: ${backend.detail}` : `tfjs backend ${name}`,
    };
  }

  /** Top `topK` (at most MAX_TOP_K and the class count) predictions for each image. */
  async classify(tensors: Uint8Array[], topK: number = MAX_TOP_K): Promise<Prediction[][]> {
    return (await this.classifyWithStats(tensors, topK)).predictions;
  }

  async classifyWithStats(tensors: Uint8Array[], topK: number = MAX_TOP_K): Promise<ClassifyRun> {
    if (tensors.length === 0) return { predictions: [], inferenceMs: 0, tensorsBefore: 0, tensorsAfter: 0 };
    tensors.forEach((bytes, i) => {
      if (bytes.length !== TENSOR_BYTES) throw new RangeError(`image ${i}: expected ${TENSOR_BYTES} bytes, got ${bytes.length}`);
    });
    const k = Math.max(1, Math.min(topK, MAX_TOP_K, this.labels.length));
    const batch = new Uint8Array(tensors.length * TENSOR_BYTES);
    tensors.forEach((bytes, i) => batch.set(bytes, i * TENSOR_BYTES));

    return exclusive(async () => {
      const tensorsBefore = tf.memory().numTensors;
      const started = performance.now();
      const [values, indices] = tf.tidy((): [tf.Tensor, tf.Tensor] => {
        // uint8 in, float32 for the model: the cast happens once, for the whole batch.
        const x = tf.tensor4d(batch, [tensors.length, IMAGE_SIZE, IMAGE_SIZE, CHANNELS], 'float32');
        let y = this.loaded.model.predict(preprocess(x, this.loaded.preprocess)) as tf.Tensor2D;
        if (!this.loaded.outputsProbabilities) y = tf.softmax(y);
        const top = tf.topk(y, k);
        return [top.values, top.indices];
      });
      let predictions: Prediction[][];
      let inferenceMs: number;
      try {
        // Reading the values is when GPU backends actually finish the work, so it is inside the timing.
        const [probabilities, classes] = await Promise.all([values.data(), indices.data()]);
        inferenceMs = performance.now() - started;
        predictions = tensors.map((_, image) =>
          Array.from({ length: k }, (_, rank) => {
            const at = image * k + rank;
            const cls = classes[at] ?? 0;
            return { label: this.labels[cls] ?? String(cls), probability: probabilities[at] ?? 0 };
          }),
        );
      } finally {
        values.dispose();
        indices.dispose();
      }
      return { predictions, inferenceMs, tensorsBefore, tensorsAfter: tf.memory().numTensors };
    });
  }

  /** One dummy batch at start, so the first real request does not pay for kernel setup. */
  async warmUp(batchSize = 1): Promise<number> {
    const started = performance.now();
    await this.classify(
      Array.from({ length: batchSize }, () => new Uint8Array(TENSOR_BYTES)),
      1,
    );
    return performance.now() - started;
  }

  dispose(): void {
    this.loaded.model.dispose();
  }
}
