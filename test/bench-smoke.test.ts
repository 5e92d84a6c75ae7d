/**
 * `npm run bench`'s engine section on the tiny model: both engines, every row measured, the
 * 2-replica aggregate there, the results JSON-serialisable. Seconds, not minutes: the real numbers
 * come from `npm run bench` with ResNet50.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { benchEngine, type EngineProgress, type EngineResult } from '../bench/engine.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { createTinyModel, type TinyModel } from './helpers/tiny-model.ts';

describe('bench: bare engine (tiny model)', () => {
  let tiny: TinyModel;
  let results: EngineResult[];
  const events: EngineProgress[] = [];

  beforeAll(async () => {
    await selectBackend('wasm');
    tiny = await createTinyModel();
    process.env.MODEL_CACHE_DIR = tiny.cacheDir; // the children's ONNX cache
    results = await benchEngine({
      model: tiny.dir,
      preprocess: 'caffe',
      setups: [
        { engine: 'onnx', provider: 'cpu', replicas: 1 },
        { engine: 'tfjs', provider: 'wasm', replicas: 2 },
      ],
      batchSizes: [1, 4],
      repeats: 3,
      warmup: 1,
      rounds: 2,
      stepTimeoutMs: 30_000,
      onProgress: (event) => events.push(event),
    });
  }, 40_000);

  afterAll(async () => {
    delete process.env.MODEL_CACHE_DIR;
    await tiny?.cleanup();
  });

  it('measures every batch size of each setup, on the engine the setup names', () => {
    expect(results.map((r) => [r.setup, r.batchSize, r.replicas])).toEqual([
      ['onnx', 1, 1],
      ['onnx', 4, 1],
      ['tfjs x2', 1, 2],
      ['tfjs x2', 4, 2],
    ]);
    for (const r of results) {
      expect(r.engine).toMatchObject(
        r.setup === 'onnx' ? { name: 'onnx', provider: 'cpu' } : { name: 'tfjs', provider: 'wasm', threads: 1 },
      );
      expect(r.cpuMsPerImage).toBeGreaterThan(0);
      expect(r.medianMs).toBeGreaterThan(0);
      expect(r.medianMsPerImage).toBeGreaterThan(0);
      expect(r.wallMs).toBeGreaterThan(0);
      expect(r.imgPerSec).toBeGreaterThan(0);
      expect(r.aggregateImgPerSec).toBeGreaterThan(0);
      expect(r.images).toBe(r.batchSize * r.repeats * r.replicas);
      expect(r.loadMs).toBeGreaterThan(0);
    }
  });

  it('lets the setups take turns: round 1 as A-B, round 2 as B-A, batches split 2 + 1', () => {
    const turns = events
      .filter((e) => e.kind === 'batch' && e.batchSize === 4 && e.roundEnd)
      .map((e) => e.kind === 'batch' && [e.round, e.setup, e.done, e.total]);
    expect(turns).toEqual([
      [1, 'onnx', 2, 3],
      [1, 'tfjs x2', 4, 6],
      [2, 'tfjs x2', 6, 6],
      [2, 'onnx', 3, 3],
    ]);
    for (const r of results) expect(r.rounds).toBe(2);
  });

  it('has the 2-replica aggregate over both replicas', () => {
    const row = results.find((r) => r.replicas === 2 && r.batchSize === 4);
    expect(row).toBeDefined();
    expect(row!.images).toBe(4 * 3 * 2);
    expect(row!.aggregateImgPerSec).toBeGreaterThan(0);
  });

  it('serialises', () => {
    expect(JSON.parse(JSON.stringify(results))).toEqual(results);
  });

  it('rejects a model that does not load, naming the cause', async () => {
    await expect(
      benchEngine({
        model: '/nonexistent-model-dir',
        preprocess: 'caffe',
        setups: [{ engine: 'tfjs', provider: 'wasm', replicas: 2 }],
        batchSizes: [1],
        repeats: 1,
        warmup: 0,
      }),
    ).rejects.toThrow(/could not read/s);
  }, 30_000);
});
