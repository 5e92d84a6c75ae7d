/**
 * Input normalisation, applied on the tfjs side to the whole batch (on a GPU backend it runs there
 * too). Input: float32 [batch, 224, 224, 3] holding uint8 RGB values 0..255.
 *
 * - caffe: Keras' ResNet50/VGG: RGB -> BGR, then subtract the ImageNet mean per BGR channel.
 * - tf:    Keras' MobileNet/Inception: scale to [-1, 1].
 * - torch: torchvision: scale to [0, 1], then standardise per RGB channel.
 * - none:  the model takes raw 0..255 values.
 */
import * as tf from '@tensorflow/tfjs-core';

export const PREPROCESS_MODES = ['caffe', 'tf', 'torch', 'none'] as const;
export type PreprocessMode = (typeof PREPROCESS_MODES)[number];

/** BGR order, as keras.applications.imagenet_utils uses it. */
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68] as const;
export const TORCH_MEAN_RGB = [0.485, 0.456, 0.406] as const;
export const TORCH_STD_RGB = [0.229, 0.224, 0.225] as const;

/** Call inside tf.tidy: the intermediate tensors are not disposed here. */
export function preprocess(x: tf.Tensor4D, mode: PreprocessMode): tf.Tensor4D {
  switch (mode) {
    case 'caffe':
      return tf.sub(tf.reverse(x, -1), tf.tensor1d([...CAFFE_MEAN_BGR]));
    case 'tf':
      return tf.sub(tf.div(x, 127.5), 1);
    case 'torch':
      return tf.div(
        tf.sub(tf.div(x, 255), tf.tensor1d([...TORCH_MEAN_RGB])),
        tf.tensor1d([...TORCH_STD_RGB]),
      );
    case 'none':
      return x;
  }
}
