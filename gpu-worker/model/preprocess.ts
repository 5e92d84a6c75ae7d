/**
 * Input normalisation modes (PREPROCESS), as the model was trained. Every engine applies them to the
 * whole batch, on its own device: the tfjs engine with tfjs ops (engine/tfjs/preprocess.ts), the
 * ONNX engine as nodes of the converted graph (engine/onnx/convert.ts). Input: [batch, 224, 224, 3]
 * holding uint8 RGB values 0..255.
 *
 * - caffe: Keras' ResNet50/VGG: RGB -> BGR, then subtract the ImageNet mean per BGR channel.
 * - tf:    Keras' MobileNet/Inception: scale to [-1, 1].
 * - torch: torchvision: scale to [0, 1], then standardise per RGB channel.
 * - none:  the model takes raw 0..255 values.
 */
export const PREPROCESS_MODES = ['caffe', 'tf', 'torch', 'none'] as const;
export type PreprocessMode = (typeof PREPROCESS_MODES)[number];

/** BGR order, as keras.applications.imagenet_utils uses it. */
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68] as const;
export const TORCH_MEAN_RGB = [0.485, 0.456, 0.406] as const;
export const TORCH_STD_RGB = [0.229, 0.224, 0.225] as const;
