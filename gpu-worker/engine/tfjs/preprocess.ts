/**
 * The PREPROCESS modes (model/preprocess.ts) as tfjs ops on the whole batch (on a GPU backend they
 * run there too). Input: float32 [batch, 224, 224, 3] holding uint8 RGB values 0..255.
 */
import * as tf from '@tensorflow/tfjs-core';
import { CAFFE_MEAN_BGR, TORCH_MEAN_RGB, TORCH_STD_RGB, type PreprocessMode } from '../../model/preprocess.ts';

/** Call inside tf.tidy: the intermediate tensors are not disposed here. */
export function preprocess(x: tf.Tensor4D, mode: PreprocessMode): tf.Tensor4D {
  switch (mode) {
    case 'caffe':
      return tf.sub(tf.reverse(x, -1), tf.tensor1d([...CAFFE_MEAN_BGR]));
    case 'tf':
      return tf.sub(tf.div(x, 127.5), 1);
    case 'torch':
      return tf.div(tf.sub(tf.div(x, 255), tf.tensor1d([...TORCH_MEAN_RGB])), tf.tensor1d([...TORCH_STD_RGB]));
    case 'none':
      return x;
  }
}
