/**
 * The seed tutorial's model server (bench baseline, see protocol.ts): LRANGE up to 32 jobs, one
 * predict on their float32 tensors, SET each result (with the batch's inference ms, for the bench),
 * LTRIM what was read, sleep 0.25 s; forever.
 *
 * The model and backend come from the same settings and loader as gpu-worker (MODEL, PREPROCESS,
 * BACKEND, MODEL_CACHE_DIR); the input is already preprocessed, so it goes to `predict` as is.
 * Prints `seed worker ready` once the model is loaded and warmed up.
 */
import * as tf from '@tensorflow/tfjs-core';
import { Redis } from 'ioredis';
import { sleep } from '../../edge/broker/broker.ts';
import { selectBackend } from '../../gpu-worker/engine/tfjs/backend.ts';
import { parseWorkerConfig } from '../../gpu-worker/config.ts';
import { loadModel, type LoadedModel } from '../../gpu-worker/engine/tfjs/load.ts';
import { DEFAULT_TOP_K, type Prediction } from '../../shared/protocol.ts';
import { TENSOR_BYTES } from '../../shared/tensor.ts';
import { BATCH_SIZE, FLOAT32_SHAPE, IMAGE_QUEUE, parseSeedJob, SERVER_SLEEP_MS } from './protocol.ts';

const config = parseWorkerConfig(process.env);
await selectBackend(config.backend);
const loaded = await loadModel(config);
const redis = new Redis(config.redisUrl);
let stopping = false;
process.once('SIGTERM', () => (stopping = true));

function predict(model: LoadedModel, images: Float32Array[]): Prediction[][] {
  const batch = new Float32Array(images.length * images[0]!.length);
  images.forEach((image, i) => batch.set(image, i * image.length));
  return tf.tidy(() => {
    let y = model.model.predict(tf.tensor4d(batch, [images.length, ...FLOAT32_SHAPE])) as tf.Tensor2D;
    if (!model.outputsProbabilities) y = tf.softmax(y);
    const top = tf.topk(y, Math.min(DEFAULT_TOP_K, model.labels.length));
    const [values, indices] = [top.values.dataSync(), top.indices.dataSync()];
    const k = top.values.shape[1]!;
    return images.map((_, image) =>
      Array.from({ length: k }, (_, rank) => ({ label: model.labels[indices[image * k + rank]!]!, probability: values[image * k + rank]! })),
    );
  });
}

predict(loaded, [new Float32Array(TENSOR_BYTES)]); // warm-up
console.log('seed worker ready');

while (!stopping) {
  const queue = await redis.lrange(IMAGE_QUEUE, 0, BATCH_SIZE - 1);
  if (queue.length > 0) {
    const jobs = queue.map(parseSeedJob);
    const started = performance.now();
    const predictions = predict(loaded, jobs.map((job) => job.image));
    // The batch's inference time travels with each result (the tutorial stores the predictions
    // alone), so the bench can tell the protocol's overhead from the model's time, as for ours.
    const inferenceMs = performance.now() - started;
    for (const [i, job] of jobs.entries()) await redis.set(job.id, JSON.stringify({ predictions: predictions[i], inferenceMs }));
    await redis.ltrim(IMAGE_QUEUE, jobs.length, -1);
  }
  await sleep(SERVER_SLEEP_MS);
}
redis.disconnect();
