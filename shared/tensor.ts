import base64 from 'base64-js';

/** The wire tensor: one image as 224x224 RGB uint8, row-major HWC. 4x smaller than float32. */
export const IMAGE_SIZE = 224;
export const CHANNELS = 3;
export const TENSOR_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS; // 150,528

/** Base64 without Buffer, so the same code runs in Node and in workerd. */
export const bytesToBase64 = (bytes: Uint8Array): string => base64.fromByteArray(bytes);
export const base64ToBytes = (text: string): Uint8Array => base64.toByteArray(text);
