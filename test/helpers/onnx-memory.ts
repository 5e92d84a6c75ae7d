/**
 * Run by test/onnx-engine.test.ts in a process of its own (so nothing else in it allocates): the
 * worker's ONNX engine on a model, `inferences` classify calls in batches of 1 and 4, the RSS after
 * a garbage collection at eight evenly spaced points, as one JSON line on stdout.
 *
 * @example node --expose-gc --import tsx test/helpers/onnx-memory.ts '{"env":{...},"inferences":2000}'
 */
import { parseWorkerConfig } from '../../gpu-worker/config.ts';
import { loadClassifier } from '../../gpu-worker/engine/index.ts';
import { createLogger } from '../../shared/log.ts';
import { randomImage } from './tiny-model.ts';

const { env, inferences } = JSON.parse(process.argv[2] ?? '{}') as { env: Record<string, string>; inferences: number };
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');

const classifier = await loadClassifier(parseWorkerConfig({ ...env, ENGINE: 'onnx' }), { log: createLogger('onnx-memory', 'silent') });
const images = [1, 2, 3, 4].map((seed) => randomImage(seed));
const samples: { after: number; rssMb: number }[] = [];
/** Eight samples, evenly spaced. */
const sampleAt = new Set(Array.from({ length: 8 }, (_, i) => Math.round(((i + 1) * inferences) / 8)));
for (let i = 1; i <= inferences; i++) {
  await classifier.classifyWithStats(i % 2 ? images.slice(0, 1) : images, 5);
  if (sampleAt.has(i)) {
    gc();
    samples.push({ after: i, rssMb: Math.round((process.memoryUsage().rss / 2 ** 20) * 10) / 10 });
  }
}
classifier.dispose();
console.log(JSON.stringify({ engine: classifier.engine, samples }));
