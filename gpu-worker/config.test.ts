import { availableParallelism } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../shared/config.ts';
import { defaultBatchSize, parseWorkerConfig } from './config.ts';

describe('config', () => {
  it('batches 32 on a GPU or libtensorflow, 8 on ONNX Runtime on the CPU, 4 on wasm/cpu unless BATCH_SIZE is set', () => {
    expect(defaultBatchSize({ name: 'onnx', provider: 'cuda', gpu: true })).toBe(32);
    expect(defaultBatchSize({ name: 'onnx', provider: 'cpu', gpu: false })).toBe(8);
    expect(defaultBatchSize({ name: 'tfjs', provider: 'tensorflow', gpu: true })).toBe(32);
    expect(defaultBatchSize({ name: 'tfjs', provider: 'tensorflow', gpu: false })).toBe(32);
    expect(defaultBatchSize({ name: 'tfjs', provider: 'wasm', gpu: false })).toBe(4);
    expect(defaultBatchSize({ name: 'tfjs', provider: 'cpu', gpu: false })).toBe(4);
    expect(parseWorkerConfig({ BATCH_SIZE: '16' }).batchSize).toBe(16);
  });

  it('has the documented defaults', () => {
    const config = parseWorkerConfig({});
    expect(config).toMatchObject({
      shards: [{ name: '127.0.0.1:6379', url: 'redis://127.0.0.1:6379', transport: 'ioredis', prefix: 'rn' }],
      batchSize: undefined,
      maxBatchDelayMs: 5,
      model: { kind: 'builtin' },
      preprocess: 'caffe',
      modelName: 'keras-resnet50-imagenet',
      engine: 'auto',
      executionProvider: 'auto',
      backend: 'auto',
      inferenceProcesses: 1,
      inferenceThreads: availableParallelism(),
      resultTtlMs: 60_000,
      claimIdleMs: 10_000,
      deadlineMs: 30_000,
    });
    expect(config.consumerName).toMatch(new RegExp(`-${process.pid}$`));
    expect(config.modelCacheDir).toMatch(/\.cache\/resnet-edge\/models$/);
    expect(parseWorkerConfig({ INFERENCE_PROCESSES: 'auto' })).toMatchObject({
      inferenceProcesses: availableParallelism(),
      inferenceThreads: 1,
    });
    expect(parseWorkerConfig({ INFERENCE_PROCESSES: '2', INFERENCE_THREADS: '3' })).toMatchObject({
      inferenceProcesses: 2,
      inferenceThreads: 3,
    });
  });

  it("takes over a stuck worker's jobs before the deadline by default, and follows a longer DEADLINE_MS", () => {
    const defaults = parseWorkerConfig({});
    expect(1.5 * defaults.claimIdleMs).toBeLessThan(defaults.deadlineMs);
    expect(parseWorkerConfig({ CLAIM_IDLE_MS: '60000', DEADLINE_MS: '120000' }).claimIdleMs).toBe(60_000);
  });

  it('takes the engine from EXECUTION_PROVIDER or BACKEND when one of them is named', () => {
    expect(parseWorkerConfig({ EXECUTION_PROVIDER: 'cpu' })).toMatchObject({ engine: 'onnx', executionProvider: 'cpu', backend: 'auto' });
    expect(parseWorkerConfig({ BACKEND: 'tensorflow' })).toMatchObject({
      engine: 'tfjs',
      executionProvider: 'auto',
      backend: 'tensorflow',
    });
    expect(parseWorkerConfig({ ENGINE: 'onnx', EXECUTION_PROVIDER: 'cuda' }).engine).toBe('onnx');
    expect(parseWorkerConfig({ ENGINE: 'tfjs' }).engine).toBe('tfjs');
  });

  it.each([
    [{ BATCH_SIZE: 'abc' }, /BATCH_SIZE: expected an integer from 1 to 1024 \(got "abc"\)/],
    [{ BATCH_SIZE: '0' }, /BATCH_SIZE/],
    [{ REDIS_URL: 'http://localhost:6379' }, /REDIS_URL: expected a URL starting with redis:\/\/ or rediss:\/\//],
    [{ BACKEND: 'gpu' }, /BACKEND: expected one of auto, tensorflow, wasm, cpu/],
    [{ ENGINE: 'torch' }, /ENGINE: expected one of auto, onnx, tfjs/],
    [{ EXECUTION_PROVIDER: 'rocm' }, /EXECUTION_PROVIDER: expected one of auto, tensorrt, cuda, cpu/],
    [{ INFERENCE_THREADS: '0' }, /INFERENCE_THREADS: expected an integer from 1 to 256, or auto/],
    [{ ENGINE: 'onnx', BACKEND: 'wasm' }, /BACKEND: a tfjs backend, but ENGINE=onnx/],
    [{ ENGINE: 'tfjs', EXECUTION_PROVIDER: 'cuda' }, /EXECUTION_PROVIDER: an ONNX Runtime provider, but ENGINE=tfjs/],
    [{ EXECUTION_PROVIDER: 'cuda', BACKEND: 'wasm' }, /EXECUTION_PROVIDER=cuda is ONNX Runtime's, BACKEND=wasm is tfjs'/],
    [{ PREPROCESS: 'imagenet' }, /PREPROCESS: expected one of caffe, tf, torch, none/],
    [{ INFERENCE_PROCESSES: 'many' }, /INFERENCE_PROCESSES: expected an integer from 1 to 64, or auto/],
    [{ MODEL: '/models/mine' }, /PREPROCESS: required for a custom MODEL/],
    [
      { CLAIM_IDLE_MS: '60000' },
      /CLAIM_IDLE_MS: 60000 ms: a stuck worker's jobs would be taken over up to 90000 ms after delivery, after their DEADLINE_MS \(30000 ms\) has passed; use less than 20000/,
    ],
    [{ CLAIM_IDLE_MS: '20000', DEADLINE_MS: '30000' }, /CLAIM_IDLE_MS: 20000 ms/],
  ])('rejects %j with a message naming the variable', (env, message) => {
    expect(() => parseWorkerConfig(env)).toThrow(ConfigError);
    expect(() => parseWorkerConfig(env)).toThrow(message);
  });

  it('heartbeat and metrics: bad values stop with a message naming the variable', () => {
    expect(() => parseWorkerConfig({ HEARTBEAT_MS: '0' })).toThrow(/HEARTBEAT_MS: expected an integer from 100 to 300000 \(got "0"\)/);
    expect(() => parseWorkerConfig({ METRICS_PORT: 'x' })).toThrow(/METRICS_PORT: expected an integer from 0 to 65535/);
    expect(() => parseWorkerConfig({ METRICS_PORT: '65535', INFERENCE_PROCESSES: '2' })).toThrow(
      /METRICS_PORT: with INFERENCE_PROCESSES=2/,
    );
    expect(parseWorkerConfig({})).toMatchObject({ heartbeatMs: 2000, metricsPort: 9464, metricsHost: '0.0.0.0' });
  });
});
