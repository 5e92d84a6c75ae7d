/** The wire tensor: one image as 224x224 RGB uint8, row-major HWC. 4x smaller than float32. */
export const IMAGE_SIZE = 224;
export const CHANNELS = 3;
export const TENSOR_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS; // 150,528: a multiple of 4, as Z85 (z85.ts) needs
