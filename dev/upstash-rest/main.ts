/**
 * `npm run upstash-rest`: the local Upstash REST server on its own, in front of an existing Redis.
 *
 *   REDIS_URL                 redis:// or rediss:// URL (default redis://127.0.0.1:6379)
 *   UPSTASH_REDIS_REST_TOKEN  required: the bearer token clients must send
 *   UPSTASH_REST_PORT         default 8079 (0 = a free port)
 *   UPSTASH_REST_HOST         default 127.0.0.1
 *
 * Prints the URL it listens on (never the token); Ctrl-C / SIGTERM close it cleanly.
 *
 * @example
 * UPSTASH_REDIS_REST_TOKEN=dev-token npm run upstash-rest
 * curl -H 'Authorization: Bearer dev-token' http://127.0.0.1:8079/ping   # {"result":"PONG"}
 */
import { z } from 'zod';
import { configOrExit, intVar, parseEnv, urlVar } from '../../shared/config.ts';
import { createLogger } from '../../shared/log.ts';
import { redactUrl, startUpstashRestServer } from './server.ts';

const Env = z.object({
  REDIS_URL: urlVar(['redis:', 'rediss:']).default('redis://127.0.0.1:6379'),
  UPSTASH_REDIS_REST_TOKEN: z
    .string({ error: 'required: the bearer token clients must send (e.g. UPSTASH_REDIS_REST_TOKEN=$(openssl rand -hex 24))' })
    .min(1),
  UPSTASH_REST_PORT: intVar(8079, 0, 65535),
  UPSTASH_REST_HOST: z.string().default('127.0.0.1'),
});

const env = configOrExit(() => parseEnv(Env, process.env));

const logger = createLogger('upstash-rest');
let server: Awaited<ReturnType<typeof startUpstashRestServer>>;
try {
  server = await startUpstashRestServer({
    redisUrl: env.REDIS_URL,
    token: env.UPSTASH_REDIS_REST_TOKEN,
    port: env.UPSTASH_REST_PORT,
    host: env.UPSTASH_REST_HOST,
    logger,
  });
} catch (error) {
  console.error(`upstash-rest: ${(error as Error).message}`);
  process.exit(1);
}

console.log(`Upstash REST server on ${server.url} (Redis ${redactUrl(env.REDIS_URL)})`);
console.log(`  UPSTASH_REDIS_REST_URL=${server.url}  (token: the UPSTASH_REDIS_REST_TOKEN you set)`);

let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) {
    console.error(`upstash-rest: ${signal} again, exiting now`);
    process.exit(1);
  }
  stopping = true;
  logger.info({ signal }, 'shutting down');
  server.close().then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(`upstash-rest: shutdown failed: ${(error as Error).message}`);
      process.exit(1);
    },
  );
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
