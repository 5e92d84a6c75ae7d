/**
 * A model that does no inference, for benchmarks of everything around it (edge, queue, batching,
 * answers) without the model's cost or its noise: `MODEL=synthetic:instant` answers at once,
 * `MODEL=synthetic:timer:<ms>` waits <ms> per batch on a timer (no CPU used, like a GPU busy
 * elsewhere), whatever the batch size. No engine or weights are loaded.
 *
 * Predictions are fake but deterministic: the same tensor always gets the same top-k over
 * SYNTHETIC_CLASSES labels `class_0`.., derived from 64 of its bytes (cheap, and different images
 * almost always differ there).
 *
 * @example
 * const classifier = new SyntheticClassifier({ name: 'synthetic:timer:50', delayMs: 50 });
 * const { predictions, inferenceMs } = await classifier.classifyWithStats([tensorBytes], 5); // ~50 ms
 */
import { setTimeout as delay } from 'node:timers/promises';
import { MAX_TOP_K, type Prediction } from '../../shared/protocol.ts';
import { TENSOR_BYTES } from '../../shared/tensor.ts';
import type { ClassifyRun, EngineInfo, ImageClassifier } from './image-classifier.ts';

export const SYNTHETIC_CLASSES = 1000;
/** Bytes of the tensor that pick its predictions, spread evenly over the image. */
const SAMPLES = 64;
const SAMPLE_STEP = Math.floor(TENSOR_BYTES / SAMPLES);

export interface SyntheticOptions {
  /** Reported in results; default `synthetic:instant` or `synthetic:timer:<ms>`. */
  name?: string;
  /** Wait per batch; 0 answers at once. */
  delayMs: number;
}

export class SyntheticClassifier implements ImageClassifier {
  readonly name: string;
  readonly labels: readonly string[] = Array.from({ length: SYNTHETIC_CLASSES }, (_, i) => `class_${i}`);
  readonly engine: EngineInfo;
  readonly delayMs: number;

  constructor(options: SyntheticOptions) {
    this.delayMs = options.delayMs;
    this.name = options.name ?? (options.delayMs > 0 ? `synthetic:timer:${options.delayMs}` : 'synthetic:instant');
    const detail = options.delayMs > 0 ? `fake answers after ${options.delayMs} ms per batch` : 'fake answers at once';
    this.engine = { name: 'synthetic', provider: 'none', threads: 0, gpu: false, detail };
  }

  async classifyWithStats(tensors: Uint8Array[], topK: number = MAX_TOP_K): Promise<ClassifyRun> {
    if (tensors.length === 0) return { predictions: [], inferenceMs: 0, tensorsBefore: 0, tensorsAfter: 0 };
    // Same contract as the real engines, so a bad input fails here too (the worker's retry-alone path).
    tensors.forEach((bytes, i) => {
      if (bytes.length !== TENSOR_BYTES) throw new RangeError(`image ${i}: expected ${TENSOR_BYTES} bytes, got ${bytes.length}`);
    });
    const started = performance.now();
    if (this.delayMs > 0) await delay(this.delayMs);
    const k = Math.max(1, Math.min(topK, MAX_TOP_K, SYNTHETIC_CLASSES));
    const predictions = tensors.map((bytes) => this.predict(bytes, k));
    return { predictions, inferenceMs: performance.now() - started, tensorsBefore: 0, tensorsAfter: 0 };
  }

  /** Nothing to prepare, so no wait: returns what a batch costs (the worker's first throughput estimate). */
  async warmUp(): Promise<number> {
    return this.delayMs;
  }

  dispose(): void {}

  /** Top-k from an FNV-1a hash of a few bytes: distinct classes, probabilities halving from 0.5. */
  private predict(bytes: Uint8Array, k: number): Prediction[] {
    let hash = 0x811c9dc5;
    for (let i = 0; i < SAMPLES; i++) hash = Math.imul(hash ^ bytes[i * SAMPLE_STEP]!, 0x01000193);
    hash >>>= 0;
    const first = hash % SYNTHETIC_CLASSES;
    // A step coprime with 1000 (odd, not a multiple of 5), so the k classes are distinct.
    let step = 2 * ((hash >>> 10) % 499) + 1;
    if (step % 5 === 0) step += 2;
    return Array.from({ length: k }, (_, rank) => ({
      label: this.labels[(first + rank * step) % SYNTHETIC_CLASSES]!,
      probability: 0.5 ** (rank + 1),
    }));
  }
}
