/**
 * `npm run worker:prefetch`: put the model into MODEL_CACHE_DIR now, so a worker's first start
 * touches no network and converts nothing (Docker image builds, systemd installs, offline
 * machines): the builtin ResNet50 downloaded, and its ONNX graph converted unless ENGINE=tfjs.
 *
 * Reads the worker's own environment (same parsing as `npm run worker`), so the cache lands
 * exactly where the worker will look. Prints progress on stderr and one summary line on stdout.
 * Exit codes: 0 ready, 1 failed, 2 bad configuration (or ENGINE=onnx with a model ONNX cannot take).
 *
 * @example MODEL_CACHE_DIR=/var/cache/resnet-edge/models npx tsx gpu-worker/model/prefetch.ts
 */
import { CONFIG_EXIT_CODE, configOrExit } from '../../shared/config.ts';
import { createLogger } from '../../shared/log.ts';
import { parseWorkerConfig } from '../config.ts';
import { EngineError } from '../engine/image-classifier.ts';
import { prepareModel } from '../engine/index.ts';
import { progressPrinter } from './fetch.ts';

const config = configOrExit(() => parseWorkerConfig(process.env));
// Progress and warnings on stderr: stdout keeps the one summary line.
const log = createLogger('gpu-worker:prefetch', config.logLevel, process.stderr);

try {
  console.log(await prepareModel(config, { log, onDownloadProgress: progressPrinter(process.stderr) }));
} catch (error) {
  console.error(`prefetch failed: ${(error as Error).message}`);
  process.exit(error instanceof EngineError ? CONFIG_EXIT_CODE : 1);
}
