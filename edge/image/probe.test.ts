import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { probeImage, sniffFormat } from './probe.ts';
import { ApiError } from '../errors.ts';
import { FIXTURES, gif, pngHeaderOnly, webp } from '../../test/helpers/images.ts';

const manifest: { file: string; width: number; height: number; format: string }[] = JSON.parse(
  await readFile(`${FIXTURES}manifest.json`, 'utf8'),
);

function rejects(bytes: Uint8Array, status: number, code: string) {
  try {
    probeImage(bytes, 40e6);
  } catch (error) {
    expect(error).toBeInstanceOf(ApiError);
    expect([(error as ApiError).status, (error as ApiError).code]).toEqual([status, code]);
    return;
  }
  throw new Error('expected probeImage to throw');
}

describe('probeImage', () => {
  it.each(manifest)('reads $file as $format $width x $height', async ({ file, width, height, format }) => {
    const info = probeImage(await readFile(FIXTURES + file), 40e6);
    expect(info).toEqual({ format: format.toLowerCase(), width, height });
  });

  it('reads WebP and GIF headers', async () => {
    expect(probeImage(await webp(), 40e6)).toEqual({ format: 'webp', width: 200, height: 200 });
    expect(probeImage(await gif(), 40e6)).toEqual({ format: 'gif', width: 200, height: 200 });
  });

  it('refuses other types with 415', () => {
    rejects(new TextEncoder().encode('hello, I am text'), 415, 'unsupported_media_type');
    rejects(new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg"/>'), 415, 'unsupported_media_type');
    rejects(new TextEncoder().encode('%PDF-1.7\n'), 415, 'unsupported_media_type');
    rejects(new Uint8Array(0), 415, 'unsupported_media_type');
    expect(sniffFormat(new Uint8Array([0xff, 0xd8]))).toBeNull();
  });

  it('refuses a decompression bomb from its header with 413', () => {
    rejects(pngHeaderOnly(50_000, 50_000), 413, 'image_too_large');
    expect(probeImage(pngHeaderOnly(1000, 1000), 40e6)).toMatchObject({ width: 1000, height: 1000 });
  });

  it('refuses unreadable headers with 400', async () => {
    const jpeg = await readFile(`${FIXTURES}beagle.jpg`);
    rejects(jpeg.subarray(0, 20), 400, 'corrupt_image');
    rejects(Buffer.concat([jpeg.subarray(0, 4), Buffer.alloc(64, 0x41)]), 400, 'corrupt_image');
    rejects(pngHeaderOnly(100, 100).subarray(0, 18), 400, 'corrupt_image');
    rejects(pngHeaderOnly(0, 100), 400, 'corrupt_image');
  });
});
