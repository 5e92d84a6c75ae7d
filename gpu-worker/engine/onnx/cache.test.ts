/**
 * The ONNX cache on a real directory: a hit reads what the miss wrote; anything that is not the
 * whole graph it recorded (corrupt, truncated, half-written, missing its record) is never used but
 * converted again; another model, PREPROCESS or converter version is another file.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTinyModel, type TinyModel } from '../../../test/helpers/tiny-model.ts';
import { createLogger } from '../../../shared/log.ts';
import { parseWorkerConfig } from '../../config.ts';
import { readModelFiles, type ModelFiles } from '../../model/files.ts';
import { selectBackend } from '../tfjs/backend.ts';
import { cachedOnnxModel, onnxCacheDir, onnxCacheKey } from './cache.ts';
import type { ConvertedModel } from './convert.ts';

let tiny: TinyModel;
let other: TinyModel;
let cacheDir: string;
const warnings: string[] = [];
const log = createLogger('cache-test', 'warn', { write: (line: string) => void warnings.push(line) });

beforeAll(async () => {
  await selectBackend('wasm'); // to make the tiny models
  [tiny, other] = await Promise.all([createTinyModel({ seed: 1 }), createTinyModel({ seed: 2 })]);
});

afterAll(async () => {
  await Promise.all([tiny?.cleanup(), other?.cleanup()]);
});

/** A fresh cache directory per test, and a converter that counts its calls and returns known bytes. */
async function setup(model = tiny, preprocess = 'caffe') {
  cacheDir = await mkdtemp(join(tmpdir(), 'onnx-cache-'));
  const config = parseWorkerConfig({ MODEL: model.dir, PREPROCESS: preprocess, MODEL_CACHE_DIR: cacheDir });
  const files = await readModelFiles(config);
  let conversions = 0;
  const convert = (): ConvertedModel => {
    conversions++;
    return { bytes: new TextEncoder().encode(`graph of ${model.dir} ${preprocess} #${conversions}`), nodes: 3, classes: 10, convertMs: 1 };
  };
  return { config, files, convert, conversions: () => conversions };
}

const cleanup = () => rm(cacheDir, { recursive: true, force: true });

describe('ONNX model cache', () => {
  it('converts once, then reads the same bytes back without converting', async () => {
    const { config, files, convert, conversions } = await setup();
    try {
      const first = await cachedOnnxModel(files, config, log, convert);
      expect(first.converted).toBe(true);
      const second = await cachedOnnxModel(files, config, log, convert);
      expect(second).toMatchObject({ converted: false, path: first.path });
      expect(Buffer.from(second.bytes).toString()).toBe(Buffer.from(first.bytes).toString());
      expect(conversions()).toBe(1);
      const names = await readdir(onnxCacheDir(cacheDir));
      expect(names.sort()).toEqual(
        [
          `${config.modelName}-${onnxCacheKey(files, config).key}.json`,
          `${config.modelName}-${onnxCacheKey(files, config).key}.onnx`,
        ].sort(),
      );
      expect(JSON.parse(await readFile(first.path.replace(/\.onnx$/, '.json'), 'utf8'))).toMatchObject({
        bytes: first.bytes.byteLength,
        classes: 10,
        preprocess: 'caffe',
      });
    } finally {
      await cleanup();
    }
  });

  it.each([
    [
      'a flipped byte',
      async (path: string) => {
        const bytes = await readFile(path);
        bytes[3] = bytes[3]! ^ 0xff;
        await writeFile(path, bytes);
      },
      /corrupt/,
    ],
    ['a truncated file', (path: string) => truncate(path, 5), /truncated/],
    ['the graph gone, its record left', (path: string) => rm(path), /missing/],
    ['a record that is not JSON', (path: string) => writeFile(path.replace(/\.onnx$/, '.json'), '{"format": 1, "key"'), /unreadable/],
  ])('never uses a cached graph with %s: converts again and says why', async (_what, damage, reason) => {
    const { config, files, convert, conversions } = await setup();
    try {
      const first = await cachedOnnxModel(files, config, log, convert);
      await damage(first.path);
      warnings.length = 0;
      const again = await cachedOnnxModel(files, config, log, convert);
      expect(again.converted).toBe(true);
      expect(Buffer.from(again.bytes).toString()).toMatch(/#2$/);
      expect(conversions()).toBe(2);
      expect(warnings.join('\n')).toMatch(reason);
      expect(warnings.join('\n')).toContain('cached ONNX model unusable; converting again');
      // ...and the rebuilt copy is whole again.
      expect((await cachedOnnxModel(files, config, log, convert)).converted).toBe(false);
    } finally {
      await cleanup();
    }
  });

  it('ignores half-written files and a graph without its record, and removes leftovers of old crashes', async () => {
    const { config, files, convert, conversions } = await setup();
    try {
      const { key } = onnxCacheKey(files, config);
      const base = join(onnxCacheDir(cacheDir), `${config.modelName}-${key}`);
      await mkdir(onnxCacheDir(cacheDir), { recursive: true });
      // A crash mid-write leaves a temporary file; a crash between the two renames, a graph alone.
      await writeFile(`${base}.onnx.partial-1-abcd`, 'half a graph');
      await writeFile(`${base}.onnx.partial-2-ef01`, 'half a graph, written a day ago');
      const dayAgo = new Date(Date.now() - 24 * 3_600_000);
      await utimes(`${base}.onnx.partial-2-ef01`, dayAgo, dayAgo);
      await writeFile(`${base}.onnx`, 'a graph whose record was never written');
      const model = await cachedOnnxModel(files, config, log, convert);
      expect(model.converted).toBe(true);
      expect(conversions()).toBe(1);
      expect(Buffer.from(await readFile(`${base}.onnx`)).toString()).toBe(Buffer.from(model.bytes).toString());
      // The old leftover is removed; a recent one may still be some other process's write.
      const left = await readdir(onnxCacheDir(cacheDir));
      expect(left).toContain(`${basename(base)}.onnx.partial-1-abcd`);
      expect(left).not.toContain(`${basename(base)}.onnx.partial-2-ef01`);
    } finally {
      await cleanup();
    }
  });

  it('keys on the model, PREPROCESS and the model name: each change is its own file', async () => {
    const a = await setup(tiny, 'caffe');
    const keyOf = (s: { files: ModelFiles; config: Parameters<typeof onnxCacheKey>[1] }) => onnxCacheKey(s.files, s.config).key;
    try {
      const b = await setup(other, 'caffe');
      const c = await setup(tiny, 'tf');
      const d = { files: a.files, config: { ...a.config, modelName: 'renamed' } };
      const keys = [keyOf(a), keyOf(b), keyOf(c), keyOf(d)];
      expect(new Set(keys).size).toBe(4);
      expect(keyOf(await setup(tiny, 'caffe'))).toBe(keys[0]); // and the same inputs, the same key
      expect(onnxCacheKey(a.files, a.config).sourceDigest).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await cleanup();
    }
  });

  it('serves the converted graph (with a warning) when the cache cannot be written', async () => {
    const { config, files, convert } = await setup();
    try {
      // A file where the cache directory should be: mkdir fails.
      await writeFile(onnxCacheDir(cacheDir), 'not a directory');
      warnings.length = 0;
      const model = await cachedOnnxModel(files, config, log, convert);
      expect(model.converted).toBe(true);
      expect(model.bytes.byteLength).toBeGreaterThan(0);
      expect(warnings.join('\n')).toContain('could not cache the converted ONNX model');
    } finally {
      await cleanup();
    }
  });
});
