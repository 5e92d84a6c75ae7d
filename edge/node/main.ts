/**
 * `npm run edge`: the edge alone, configured by env (docs/configuration.md).
 */
import { configOrExit } from '../../shared/config.ts';
import { createLogger } from '../../shared/log.ts';
import { parseEdgeConfig } from '../config.ts';
import { startNodeEdge } from './server.ts';

const logger = createLogger('edge');
const config = configOrExit(() => parseEdgeConfig(process.env));
const edge = await startNodeEdge(config, logger);
console.log(`edge ready on ${edge.url} - try: curl -F image=@dog.jpg ${edge.url}/predict`);

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    logger.info({ signal }, 'shutting down');
    edge.close().finally(() => process.exit(0));
  });
}
