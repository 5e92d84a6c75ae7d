/** The wire tensor: one image as 224x224 RGB uint8, row-major HWC. 4x smaller than float32. */
export const IMAGE_SIZE = 224;
export const CHANNELS = 3;
export const TENSOR_BYTES = IMAGE_SIZE * IMAGE_SIZE * CHANNELS; // 150,528

const CHUNK = 0x8000; // String.fromCharCode's argument count stays far below engine limits

/** Base64 without Buffer, so the same code runs in Node and in workerd. */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += CHUNK) {
    binary += String.fromCharCode(...bytes.subarray(i, i + CHUNK));
  }
  return btoa(binary);
}

export function base64ToBytes(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
