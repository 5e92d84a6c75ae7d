/**
 * The converter against tfjs itself: small models that use every supported layer class and option,
 * saved to disk as tfjs writes them, loaded once, then run by the tfjs engine (wasm) and, converted,
 * by ONNX Runtime on the same images. Every class probability must agree.
 */
import { rm } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mulberry32 } from '../../../dev/random.ts';
import { createTinyModel, randomImage, saveModel } from '../../../test/helpers/tiny-model.ts';
import { parseWorkerConfig } from '../../config.ts';
import { PREPROCESS_MODES, type PreprocessMode } from '../../model/preprocess.ts';
import { selectBackend, type SelectedBackend } from '../tfjs/backend.ts';
import { TfjsClassifier } from '../tfjs/classifier.ts';
import { loadModel, type LoadedModel } from '../tfjs/load.ts';
import { OnnxClassifier } from './classifier.ts';
import { convertLayersModel } from './convert.ts';
import { ConversionError } from './layers.ts';

const CLASSES = 10;
const labels = Array.from({ length: CLASSES }, (_, i) => `class_${i}`);
const images = [1, 2, 3].map((seed) => randomImage(seed));
const dirs: string[] = [];
let backend: SelectedBackend;

beforeAll(async () => {
  backend = await selectBackend('wasm');
});

afterAll(async () => {
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
});

/** Seeded weights of a sensible size: kernels ~ 1/sqrt(fan-in), positive variances and scales. */
function seedWeights(model: tfl.LayersModel, seed: number): void {
  const random = mulberry32(seed);
  const values = model.weights.map((w) => {
    const shape = w.shape as number[]; // weights have no unknown dimensions
    const size = shape.reduce((a, b) => a * b, 1);
    const leaf = w.originalName.split('/').at(-1)!;
    const fanIn = shape.length > 1 ? size / shape.at(-1)! : 1;
    const draw = (): number => {
      if (leaf === 'moving_variance' || leaf === 'gamma') return 0.5 + random();
      if (leaf === 'bias' || leaf === 'beta' || leaf === 'moving_mean') return (random() - 0.5) * 0.2;
      return ((random() * 2 - 1) * 3) / Math.sqrt(fanIn);
    };
    return tf.tensor(Float32Array.from({ length: size }, draw), shape);
  });
  model.setWeights(values);
  values.forEach((v) => v.dispose());
}

/** Save, load back through the worker's own loader (as a real MODEL=/dir would be), and dispose the original. */
async function roundTrip(model: tfl.LayersModel, preprocess: PreprocessMode = 'tf', seed = 7): Promise<LoadedModel> {
  seedWeights(model, seed);
  const dir = await saveModel(model, { labels });
  dirs.push(dir);
  model.dispose();
  return loadModel(parseWorkerConfig({ MODEL: dir, PREPROCESS: preprocess }));
}

async function onnxClassifier(loaded: LoadedModel): Promise<OnnxClassifier> {
  const { bytes } = convertLayersModel(loaded);
  const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  return new OnnxClassifier(session, ort, {
    name: loaded.name,
    labels: loaded.labels,
    engine: { name: 'onnx', provider: 'cpu', threads: 1, gpu: false, detail: 'test' },
  });
}

/** Both engines on the same images: the same classes in the same order, each probability within 1e-5. */
async function expectSameAnswers(loaded: LoadedModel): Promise<void> {
  const onnx = await onnxClassifier(loaded);
  const tfjs = new TfjsClassifier(loaded, backend);
  try {
    const [expected, actual] = [await tfjs.classifyWithStats(images, CLASSES), await onnx.classifyWithStats(images, CLASSES)];
    actual.predictions.forEach((predictions, i) => {
      expect(predictions.map((p) => p.label)).toEqual(expected.predictions[i]!.map((p) => p.label));
      predictions.forEach((p, rank) => expect(Math.abs(p.probability - expected.predictions[i]![rank]!.probability)).toBeLessThan(1e-5));
    });
    // Not a degenerate model that answers the same whatever it sees: the images differ by far more
    // than the tolerance.
    const byLabel = expected.predictions.map((p) => new Map(p.map(({ label, probability }) => [label, probability])));
    const spread = Math.max(...labels.map((label) => Math.abs(byLabel[0]!.get(label)! - byLabel[1]!.get(label)!)));
    expect(spread).toBeGreaterThan(1e-4);
  } finally {
    onnx.dispose();
    tfjs.dispose();
  }
}

const inputLayer = () => tfl.input({ shape: [224, 224, 3] });
/** 224 -> 28 at once: the layers under test then run on small images. */
const stem = (x: tfl.SymbolicTensor, filters = 4) =>
  tfl.layers.conv2d({ filters, kernelSize: 8, strides: 8, activation: 'relu' }).apply(x) as tfl.SymbolicTensor;
const apply = (layer: tfl.layers.Layer, x: tfl.SymbolicTensor | tfl.SymbolicTensor[]) => layer.apply(x) as tfl.SymbolicTensor;
const head = (x: tfl.SymbolicTensor, activation: 'softmax' | 'linear' = 'softmax') =>
  apply(tfl.layers.dense({ units: CLASSES, activation }), apply(tfl.layers.globalAveragePooling2d({}), x));

describe('tfjs layers model -> ONNX: the same answers as tfjs', () => {
  it('convolutions: Conv2D (valid, same, strides, dilation, no bias), DepthwiseConv2D, SeparableConv2D, ZeroPadding2D, BatchNormalization, pooling, Flatten, Dropout, Dense', async () => {
    const input = inputLayer();
    let x = stem(input, 6);
    x = apply(
      tfl.layers.zeroPadding2d({
        padding: [
          [1, 2],
          [0, 3],
        ],
      }),
      x,
    );
    x = apply(tfl.layers.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', useBias: false }), x);
    x = apply(tfl.layers.batchNormalization({ center: false }), x);
    x = apply(tfl.layers.activation({ activation: 'relu' }), x);
    x = apply(tfl.layers.conv2d({ filters: 5, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'relu6' }), x);
    x = apply(tfl.layers.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same' }), x);
    x = apply(tfl.layers.batchNormalization({ scale: false, epsilon: 0.01 }), x);
    x = apply(tfl.layers.reLU({ maxValue: 6 }), x);
    x = apply(tfl.layers.depthwiseConv2d({ kernelSize: [3, 2], strides: 2, useBias: false, activation: 'relu' }), x);
    // depthMultiplier stays 1: tfjs does not save SeparableConv2D's (it cannot load its own model back).
    x = apply(tfl.layers.separableConv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'tanh' }), x);
    x = apply(tfl.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), x);
    x = apply(tfl.layers.averagePooling2d({ poolSize: 2, strides: 1, padding: 'same' }), x);
    x = apply(tfl.layers.averagePooling2d({ poolSize: 2 }), x);
    x = apply(tfl.layers.flatten(), x);
    x = apply(tfl.layers.dropout({ rate: 0.5 }), x);
    x = apply(tfl.layers.dense({ units: 12, activation: 'relu' }), x);
    x = apply(tfl.layers.batchNormalization({}), x);
    const output = apply(tfl.layers.dense({ units: CLASSES, activation: 'softmax' }), x);
    await expectSameAnswers(await roundTrip(tfl.model({ inputs: input, outputs: output })));
  });

  it('branches and merges: Add of two and of three, Concatenate, Multiply, Average, Maximum, Minimum; logits get a softmax', async () => {
    const input = inputLayer();
    const x = stem(input);
    const a = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 1 }), x);
    const b = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same' }), x);
    const sum2 = apply(tfl.layers.add(), [x, a]);
    const sum3 = apply(tfl.layers.add(), [x, a, b]);
    const product = apply(tfl.layers.multiply(), [sum2, sum3, x]);
    const mean = apply(tfl.layers.average(), [sum2, product]);
    const most = apply(tfl.layers.maximum(), [mean, sum3, a]);
    const least = apply(tfl.layers.minimum(), [most, product]);
    const joined = apply(tfl.layers.concatenate(), [least, sum2]);
    const loaded = await roundTrip(tfl.model({ inputs: input, outputs: head(joined, 'linear') }));
    expect(loaded.outputsProbabilities).toBe(false);
    await expectSameAnswers(loaded);
  });

  it('activations, as layers and as arguments: sigmoid, tanh, elu, selu, softplus, softsign, hardSigmoid, swish, mish, logSoftmax, LeakyReLU, ELU, ThresholdedReLU, Softmax; the noise layers', async () => {
    const input = inputLayer();
    let x = stem(input);
    // logSoftmax: tfjs runs it (Keras' log_softmax) but leaves it out of its activation names' type.
    for (const activation of [
      'sigmoid',
      'tanh',
      'elu',
      'selu',
      'softplus',
      'softsign',
      'hardSigmoid',
      'swish',
      'mish',
      'logSoftmax' as 'linear',
      'linear',
    ] as const) {
      x = apply(tfl.layers.conv2d({ filters: 4, kernelSize: 1, activation }), x);
    }
    // Training-time noise: nothing at inference, in both engines.
    x = apply(tfl.layers.gaussianNoise({ stddev: 0.5 }), x);
    x = apply(tfl.layers.gaussianDropout({ rate: 0.5 }), x);
    x = apply(tfl.layers.alphaDropout({ rate: 0.5 }), x);
    x = apply(tfl.layers.leakyReLU({ alpha: 0.2 }), x);
    x = apply(tfl.layers.elu({}), x); // tfjs supports alpha 1 only
    x = apply(tfl.layers.thresholdedReLU({ theta: 0.1 }), x);
    x = apply(tfl.layers.globalMaxPooling2d({}), x);
    x = apply(tfl.layers.dense({ units: CLASSES }), x);
    const output = apply(tfl.layers.softmax(), x);
    const loaded = await roundTrip(tfl.model({ inputs: input, outputs: output }));
    expect(loaded.outputsProbabilities).toBe(true);
    await expectSameAnswers(loaded);
  });

  it('the Keras layout where it matters: Cropping2D, Dense on an image, Permute, Reshape, SpatialDropout1D, softmax over channels', async () => {
    const input = inputLayer();
    let x = stem(input);
    x = apply(
      tfl.layers.cropping2D({
        cropping: [
          [1, 2],
          [3, 0],
        ],
      }),
      x,
    );
    x = apply(tfl.layers.dense({ units: 3 }), x); // on the last axis of [25, 25, 4]
    x = apply(tfl.layers.activation({ activation: 'softmax' }), x);
    x = apply(tfl.layers.permute({ dims: [2, 1, 3] }), x);
    x = apply(tfl.layers.reshape({ targetShape: [25 * 25, 3] }), x);
    x = apply(tfl.layers.spatialDropout1d({ rate: 0.5 }), x);
    x = apply(tfl.layers.reshape({ targetShape: [25 * 25 * 3] }), x);
    const output = apply(tfl.layers.dense({ units: CLASSES, activation: 'softmax' }), x);
    await expectSameAnswers(await roundTrip(tfl.model({ inputs: input, outputs: output })));
  });

  it('a Sequential whose first layer is a whole model (a pretrained base), and a layer shared by two calls', async () => {
    const baseInput = inputLayer();
    const shared = tfl.layers.conv2d({ filters: 4, kernelSize: 1, activation: 'relu' });
    const once = apply(shared, stem(baseInput));
    const twice = apply(shared, once);
    const base = tfl.model({ inputs: baseInput, outputs: apply(tfl.layers.add(), [once, twice]), name: 'base' });
    const model = tfl.sequential({
      layers: [base, tfl.layers.globalAveragePooling2d({}), tfl.layers.dense({ units: CLASSES, activation: 'softmax' })],
    });
    await expectSameAnswers(await roundTrip(model));
  });

  it.each(PREPROCESS_MODES)('PREPROCESS=%s inside the graph', async (mode) => {
    const tiny = await createTinyModel({ seed: 5 });
    try {
      const loaded = await loadModel(parseWorkerConfig({ MODEL: tiny.dir, PREPROCESS: mode }));
      await expectSameAnswers(loaded);
    } finally {
      await tiny.cleanup();
    }
  });

  it('writes an ONNX graph: uint8 NHWC image in, probabilities out, the preprocessing first', async () => {
    const tiny = await createTinyModel({ seed: 6 });
    try {
      const loaded = await loadModel(parseWorkerConfig({ MODEL: tiny.dir, PREPROCESS: 'caffe' }));
      const onnx = await onnxClassifier(loaded);
      const session = (onnx as unknown as { session: ort.InferenceSession }).session;
      expect(session.inputNames).toEqual(['image']);
      expect(session.outputNames).toEqual(['probabilities']);
      expect(session.inputMetadata[0]).toMatchObject({ type: 'uint8', shape: ['batch', 224, 224, 3] });
      expect(session.outputMetadata[0]).toMatchObject({ type: 'float32', shape: ['batch', CLASSES] });
      onnx.dispose();
      loaded.model.dispose();
    } finally {
      await tiny.cleanup();
    }
  });
});

describe('what it cannot convert, it names', () => {
  it('a layer class without a conversion: the layer, its class, and what is supported', async () => {
    const input = inputLayer();
    const x = apply(tfl.layers.upSampling2d({ size: [2, 2], name: 'upsample' }), stem(input));
    const loaded = await roundTrip(tfl.model({ inputs: input, outputs: head(x) }));
    try {
      expect(() => convertLayersModel(loaded)).toThrow(ConversionError);
      expect(() => convertLayersModel(loaded)).toThrow(
        /^layer "upsample" \(UpSampling2D\): no ONNX conversion for UpSampling2D \(supported: .*BatchNormalization.*Conv2D.*\)/,
      );
    } finally {
      loaded.model.dispose();
    }
  });

  it('an option a supported layer has no conversion for', async () => {
    const input = inputLayer();
    const x = apply(tfl.layers.batchNormalization({ axis: 1, name: 'bn_rows' }), stem(input));
    const loaded = await roundTrip(tfl.model({ inputs: input, outputs: head(x) }));
    try {
      expect(() => convertLayersModel(loaded)).toThrow(
        /^layer "bn_rows" \(BatchNormalization\): axis 1 \(only the last, channels, axis\)$/,
      );
    } finally {
      loaded.model.dispose();
    }
  });
});
