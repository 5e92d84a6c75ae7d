/**
 * Nearest-neighbour resize with PIL's sampling rule (source = floor((x + 0.5) * scale)), which is
 * what Keras' load_img uses. Done in plain TypeScript so every codec gets the same pixels:
 * libvips' "nearest" box-shrinks first on large reductions and so differs from Keras.
 */
export function resizeNearestRgb(
  src: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  const out = new Uint8Array(outWidth * outHeight * 3);
  const columns = new Uint32Array(outWidth);
  for (let x = 0; x < outWidth; x++) columns[x] = Math.min(width - 1, Math.floor(((x + 0.5) * width) / outWidth)) * 3;
  for (let y = 0; y < outHeight; y++) {
    const row = Math.min(height - 1, Math.floor(((y + 0.5) * height) / outHeight)) * width * 3;
    for (let x = 0; x < outWidth; x++) {
      const from = row + columns[x]!;
      const to = (y * outWidth + x) * 3;
      out[to] = src[from]!;
      out[to + 1] = src[from + 1]!;
      out[to + 2] = src[from + 2]!;
    }
  }
  return out;
}
