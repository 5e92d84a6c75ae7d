/**
 * A tiny but real tfjs layers model, written to disk the way the tfjs converter does
 * (model.json + binary weight shards), so worker tests run the real loading and inference code
 * in milliseconds instead of ResNet50's seconds.
 *
 *   input [224,224,3] -> conv2d(4 filters, 8x8, stride 8, relu) -> global average pool -> dense(classes)
 *
 * Weights come from a seeded generator: the same seed gives the same model, and the returned
 * in-memory `model` lets a test compute the expected output independently.
 * Call after a tfjs backend is set (e.g. selectBackend('wasm')).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { mulberry32 } from '../../dev/random.ts';
import * as tfl from '@tensorflow/tfjs-layers';

export interface TinyModelOptions {
  classes?: number;
  /** End in softmax (like Keras classifiers) or output raw logits. */
  softmax?: boolean;
  seed?: number;
  /** How labels.json next to model.json is written; 'none' writes no labels file. */
  labels?: 'array' | 'object' | 'none';
  /** Weight bytes are split over this many shard files. */
  shards?: number;
  inputShape?: [number, number, number];
}

export interface TinyModel {
  dir: string;
  /** MODEL_CACHE_DIR for workers that run it (its converted ONNX graph lands there), removed by cleanup(). */
  cacheDir: string;
  /** The worker settings that run it: MODEL, PREPROCESS (caffe), MODEL_CACHE_DIR. */
  env: { MODEL: string; PREPROCESS: 'caffe'; MODEL_CACHE_DIR: string };
  labels: string[];
  /** The same model, in memory (the caller disposes it, or calls cleanup()). */
  model: tfl.LayersModel;
  cleanup(): Promise<void>;
}

export async function createTinyModel(options: TinyModelOptions = {}): Promise<TinyModel> {
  const { classes = 10, softmax = true, seed = 42, labels: labelsFormat = 'array', shards = 2 } = options;
  const inputShape = options.inputShape ?? [224, 224, 3];
  const model = tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape, filters: 4, kernelSize: 8, strides: 8, activation: 'relu' }),
      tfl.layers.globalAveragePooling2d({}),
      tfl.layers.dense({ units: classes, activation: softmax ? 'softmax' : 'linear' }),
    ],
  });
  // Small weights: conv outputs stay in tens after caffe preprocessing, so the softmax is not saturated.
  const random = mulberry32(seed);
  const scales = [0.004, 0.1, 0.2, 0.5]; // conv kernel, conv bias, dense kernel, dense bias
  const weights = model.getWeights().map((w, i) =>
    tf.tensor(
      Float32Array.from({ length: w.size }, () => (random() * 2 - 1) * (scales[i] ?? 0.1)),
      w.shape,
    ),
  );
  model.setWeights(weights);
  weights.forEach((w) => w.dispose());

  const labels = Array.from({ length: classes }, (_, i) => `class_${i}`);
  const dir = await saveModel(model, { labels: labelsFormat === 'none' ? undefined : labels, labelsFormat, shards });
  // Not the user's cache: every tiny model is a new directory name, so a new cache entry.
  const cacheDir = `${dir}-cache`;

  return {
    dir,
    cacheDir,
    env: { MODEL: dir, PREPROCESS: 'caffe', MODEL_CACHE_DIR: cacheDir },
    labels,
    model,
    async cleanup() {
      model.dispose();
      await Promise.all([dir, cacheDir].map((path) => rm(path, { recursive: true, force: true })));
    },
  };
}

/**
 * Write `model` to a new temporary directory the way the tfjs converter does: model.json and the
 * weights in `shards` binary files, with labels.json next to it (an array, or keyed "0".."N-1").
 */
export async function saveModel(
  model: tfl.LayersModel,
  options: { labels?: string[]; labelsFormat?: 'array' | 'object' | 'none'; shards?: number } = {},
): Promise<string> {
  const { labels, labelsFormat = 'array', shards = 2 } = options;
  const dir = await mkdtemp(join(tmpdir(), 'tiny-model-'));
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const bytes = new Uint8Array(tf.io.CompositeArrayBuffer.join(artifacts.weightData!));
      const paths: string[] = [];
      const shardSize = Math.ceil(bytes.length / shards);
      for (let i = 0; i < shards; i++) {
        const name = `group1-shard${i + 1}of${shards}.bin`;
        await writeFile(join(dir, name), bytes.subarray(i * shardSize, (i + 1) * shardSize));
        paths.push(name);
      }
      const modelJson = {
        format: 'layers-model',
        generatedBy: 'test/helpers/tiny-model.ts',
        convertedBy: null,
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths, weights: artifacts.weightSpecs }],
      };
      await writeFile(join(dir, 'model.json'), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (labels && labelsFormat === 'array') await writeFile(join(dir, 'labels.json'), JSON.stringify(labels));
  if (labels && labelsFormat === 'object')
    await writeFile(join(dir, 'labels.json'), JSON.stringify(Object.fromEntries(labels.map((l, i) => [String(i), l]))));
  return dir;
}

/**
 * A reproducible 224x224 RGB uint8 image: a colour of its own plus noise, so different seeds give
 * clearly different predictions (pure noise would average out to the same output for all).
 */
export function randomImage(seed: number, size = 224 * 224 * 3): Uint8Array {
  const random = mulberry32(seed);
  const base = [random() * 255, random() * 255, random() * 255];
  return Uint8Array.from({ length: size }, (_, i) => Math.max(0, Math.min(255, Math.round(base[i % 3]! + (random() - 0.5) * 60))));
}
