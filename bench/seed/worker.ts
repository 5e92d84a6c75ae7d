/**
 * The seed tutorial's model server (bench baseline, see protocol.ts): LRANGE up to 32 jobs, one
 * predict on their float32 tensors, SET each result (with the batch's inference ms, for the bench),
 * LTRIM what was read, sleep 0.25 s; forever.
 *
 * The model comes from the same settings and loader as gpu-worker (MODEL, PREPROCESS,
 * MODEL_CACHE_DIR), on the engine the bench names (ENGINE=tfjs with BACKEND, or onnx with
 * EXECUTION_PROVIDER and INFERENCE_THREADS), so both protocols run the same engine. The input is
 * already preprocessed: tfjs predicts on it as is, and the ONNX graph is converted for a float32
 * input. Prints `seed worker ready` once the model is loaded and warmed up.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Redis } from 'ioredis';
import ort from 'onnxruntime-node';
import { sleep } from '../../edge/broker/broker.ts';
import { parseWorkerConfig } from '../../gpu-worker/config.ts';
import { convertLayersModel, ensureTfjsBackend } from '../../gpu-worker/engine/onnx/convert.ts';
import { OUTPUT_NAME } from '../../gpu-worker/engine/onnx/graph.ts';
import { selectBackend } from '../../gpu-worker/engine/tfjs/backend.ts';
import { loadModel, type LoadedModel } from '../../gpu-worker/engine/tfjs/load.ts';
import { DEFAULT_TOP_K, type Prediction } from '../../shared/protocol.ts';
import { TENSOR_BYTES } from '../../shared/tensor.ts';
import { BATCH_SIZE, FLOAT32_SHAPE, IMAGE_QUEUE, parseSeedJob, SERVER_SLEEP_MS } from './protocol.ts';

type Predict = (images: Float32Array[]) => Promise<Prediction[][]>;

const config = parseWorkerConfig(process.env);
const predict = config.engine === 'tfjs' ? await tfjsPredictor() : await onnxPredictor();
const redis = new Redis(config.shards[0]!.url);
let stopping = false;
process.once('SIGTERM', () => (stopping = true));

function stack(images: Float32Array[]): Float32Array {
  const batch = new Float32Array(images.length * images[0]!.length);
  images.forEach((image, i) => batch.set(image, i * image.length));
  return batch;
}

async function tfjsPredictor(): Promise<Predict> {
  await selectBackend(config.backend);
  const loaded = await loadModel(config);
  return async (images) =>
    tf.tidy(() => {
      let y = loaded.model.predict(tf.tensor4d(stack(images), [images.length, ...FLOAT32_SHAPE])) as tf.Tensor2D;
      if (!loaded.outputsProbabilities) y = tf.softmax(y);
      const top = tf.topk(y, Math.min(DEFAULT_TOP_K, loaded.labels.length));
      const [values, indices] = [top.values.dataSync(), top.indices.dataSync()];
      const k = top.values.shape[1]!;
      return images.map((_, image) =>
        Array.from({ length: k }, (_, rank) => ({
          label: loaded.labels[indices[image * k + rank]!]!,
          probability: values[image * k + rank]!,
        })),
      );
    });
}

async function onnxPredictor(): Promise<Predict> {
  await ensureTfjsBackend();
  const loaded: LoadedModel = await loadModel(config);
  const { bytes } = convertLayersModel(loaded, { input: 'float32' });
  loaded.model.dispose();
  const provider = config.executionProvider === 'auto' ? 'cpu' : config.executionProvider;
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: [provider],
    intraOpNumThreads: config.inferenceThreads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const classes = loaded.labels.length;
  return async (images) => {
    const outputs = await session.run({
      [session.inputNames[0]!]: new ort.Tensor('float32', stack(images), [images.length, ...FLOAT32_SHAPE]),
    });
    const probabilities = outputs[OUTPUT_NAME]!.data as Float32Array;
    return images.map((_, image) =>
      Array.from(probabilities.subarray(image * classes, (image + 1) * classes), (probability, cls) => ({
        label: loaded.labels[cls]!,
        probability,
      }))
        .sort((a, b) => b.probability - a.probability)
        .slice(0, DEFAULT_TOP_K),
    );
  };
}

await predict([new Float32Array(TENSOR_BYTES)]); // warm-up
console.log('seed worker ready');

while (!stopping) {
  const queue = await redis.lrange(IMAGE_QUEUE, 0, BATCH_SIZE - 1);
  if (queue.length > 0) {
    const jobs = queue.map(parseSeedJob);
    const started = performance.now();
    const predictions = await predict(jobs.map((job) => job.image));
    // The batch's inference time travels with each result (the tutorial stores the predictions
    // alone), so the bench can tell the protocol's overhead from the model's time, as for ours.
    const inferenceMs = performance.now() - started;
    for (const [i, job] of jobs.entries()) await redis.set(job.id, JSON.stringify({ predictions: predictions[i], inferenceMs }));
    await redis.ltrim(IMAGE_QUEUE, jobs.length, -1);
  }
  await sleep(SERVER_SLEEP_MS);
}
redis.disconnect();
