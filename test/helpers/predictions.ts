/** What a worker must answer, computed in the test itself, and how close an answer must come to it. */
import * as tf from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { expect } from 'vitest';
import { MAX_TOP_K, type Prediction } from '../../shared/protocol.ts';

/** What a worker must answer for `image`, computed here independently: caffe preprocessing in plain JS, tfjs' predict. */
export function expectedPredictions(model: tfl.LayersModel, labels: string[], image: Uint8Array, softmax = true): Prediction[] {
  const x = new Float32Array(image.length);
  for (let i = 0; i < image.length; i += 3) {
    x[i] = image[i + 2]! - 103.939;
    x[i + 1] = image[i + 1]! - 116.779;
    x[i + 2] = image[i]! - 123.68;
  }
  const probabilities = tf.tidy(() => {
    let y = model.predict(tf.tensor4d(x, [1, 224, 224, 3])) as tf.Tensor;
    if (!softmax) y = tf.softmax(y);
    return y.dataSync();
  });
  return Array.from(probabilities, (probability, i) => ({ label: labels[i]!, probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, MAX_TOP_K);
}

/** The same labels in the same order, each probability within 5e-6. */
export function expectSamePredictions(actual: Prediction[], expected: Prediction[]) {
  expect(actual.map((p) => p.label)).toEqual(expected.map((p) => p.label));
  actual.forEach((p, i) => expect(p.probability).toBeCloseTo(expected[i]!.probability, 5));
}
