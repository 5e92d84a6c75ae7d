/**
 * `npm run worker:prefetch`: put the builtin ResNet50 into MODEL_CACHE_DIR now, so a worker's
 * first start touches no network (Docker image builds, systemd installs, offline machines).
 *
 * Reads the worker's own environment (same parsing as `npm run worker`), so the cache lands
 * exactly where the worker will look. Prints progress on stderr and one summary line on stdout.
 * Exit codes: 0 cached (or nothing to fetch: MODEL is not the builtin), 1 failed, 2 bad configuration.
 *
 * @example MODEL_CACHE_DIR=/var/cache/resnet-edge/models npx tsx gpu-worker/model/prefetch.ts
 */
import { configOrExit } from '../../shared/config.ts';
import { parseWorkerConfig } from '../config.ts';
import { builtinSpec } from './builtin.ts';
import { fetchBuiltinModel, progressPrinter } from './fetch.ts';

const config = configOrExit(() => parseWorkerConfig(process.env));

if (config.model.kind !== 'builtin') {
  console.log(`MODEL is ${config.model.kind}, not the builtin ${builtinSpec()}: nothing to prefetch`);
  process.exit(0);
}

try {
  const fetched = await fetchBuiltinModel({ cacheDir: config.modelCacheDir, onProgress: progressPrinter(process.stderr) });
  const how = fetched.downloaded
    ? `fetched ${((fetched.bytes ?? 0) / 1e6).toFixed(1)} MB in ${((fetched.ms ?? 0) / 1000).toFixed(1)} s`
    : 'already cached';
  console.log(`${builtinSpec()}: ${how}, in ${fetched.dir}`);
} catch (error) {
  console.error(`prefetch failed: ${(error as Error).message}`);
  process.exit(1);
}
