/**
 * The ONNX engine's classifier: one ONNX Runtime session, created once per process, fed the
 * batch's wire tensors as one uint8 [batch, 224, 224, 3] tensor (the graph preprocesses them, see
 * convert.ts) and read back as probabilities; the top k per image are picked here.
 *
 * onnxruntime-node runs a session on the calling thread (with its own intra-op pool beside it),
 * so a run keeps the event loop busy for its length, as a tfjs wasm run does.
 *
 * @example
 * const classifier = new OnnxClassifier(session, ort, { name, labels, engine });
 * const { predictions, inferenceMs } = await classifier.classifyWithStats([tensorBytes], 5);
 */
import type * as Ort from 'onnxruntime-node';
import { MAX_TOP_K, type Prediction } from '../../../shared/protocol.ts';
import { CHANNELS, IMAGE_SIZE, TENSOR_BYTES } from '../../../shared/tensor.ts';
import type { ClassifyRun, EngineInfo, ImageClassifier } from '../image-classifier.ts';

export interface OnnxClassifierInfo {
  name: string;
  labels: readonly string[];
  engine: EngineInfo;
}

export class OnnxClassifier implements ImageClassifier {
  readonly name: string;
  readonly labels: readonly string[];
  readonly engine: EngineInfo;
  private readonly inputName: string;
  private readonly outputName: string;

  constructor(
    private readonly session: Ort.InferenceSession,
    private readonly ort: typeof Ort,
    info: OnnxClassifierInfo,
  ) {
    this.name = info.name;
    this.labels = info.labels;
    this.engine = info.engine;
    this.inputName = session.inputNames[0]!;
    this.outputName = session.outputNames[0]!;
  }

  async classifyWithStats(tensors: Uint8Array[], topK: number = MAX_TOP_K): Promise<ClassifyRun> {
    if (tensors.length === 0) return { predictions: [], inferenceMs: 0, tensorsBefore: 0, tensorsAfter: 0 };
    tensors.forEach((bytes, i) => {
      if (bytes.length !== TENSOR_BYTES) throw new RangeError(`image ${i}: expected ${TENSOR_BYTES} bytes, got ${bytes.length}`);
    });
    const classes = this.labels.length;
    const k = Math.max(1, Math.min(topK, MAX_TOP_K, classes));
    const batch = new Uint8Array(tensors.length * TENSOR_BYTES);
    tensors.forEach((bytes, i) => batch.set(bytes, i * TENSOR_BYTES));

    const started = performance.now();
    const input = new this.ort.Tensor('uint8', batch, [tensors.length, IMAGE_SIZE, IMAGE_SIZE, CHANNELS]);
    const outputs = await this.session.run({ [this.inputName]: input });
    const inferenceMs = performance.now() - started;
    const output = outputs[this.outputName]!;
    try {
      const probabilities = output.data as Float32Array;
      if (probabilities.length !== tensors.length * classes) {
        throw new Error(`the model answered ${probabilities.length} values for ${tensors.length} image(s) of ${classes} classes`);
      }
      const predictions = tensors.map((_, image) => this.top(probabilities.subarray(image * classes, (image + 1) * classes), k));
      return { predictions, inferenceMs, tensorsBefore: 0, tensorsAfter: 0 };
    } finally {
      output.dispose();
    }
  }

  async warmUp(batchSize = 1): Promise<number> {
    const started = performance.now();
    await this.classifyWithStats(
      Array.from({ length: batchSize }, () => new Uint8Array(TENSOR_BYTES)),
      1,
    );
    return performance.now() - started;
  }

  dispose(): void {
    void this.session.release();
  }

  /** The k largest, in order; on a tie the lower class index first (as tf.topk does). */
  private top(probabilities: Float32Array, k: number): Prediction[] {
    const best: number[] = []; // class indices, most probable first
    for (let cls = 0; cls < probabilities.length; cls++) {
      const p = probabilities[cls]!;
      if (best.length === k && !(p > probabilities[best[k - 1]!]!)) continue;
      let at = best.length;
      while (at > 0 && probabilities[best[at - 1]!]! < p) at--;
      best.splice(at, 0, cls);
      if (best.length > k) best.pop();
    }
    return best.map((cls) => ({ label: this.labels[cls] ?? String(cls), probability: probabilities[cls]! }));
  }
}
