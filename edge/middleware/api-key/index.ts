/**
 * Optional API keys: `Authorization: Bearer <key>`, checked against the configured keys in
 * constant time (Hono's bearerAuth hashes both sides before comparing). A missing, malformed or
 * wrong key gets 401 with the API's JSON error. Keys are never logged.
 *
 * @example
 * app.use('/predict', apiKey(['k_live_123', 'k_live_456']));
 */
import type { Context, MiddlewareHandler } from 'hono';
import { bearerAuth } from 'hono/bearer-auth';
import { errorBody } from '../../errors.ts';

const unauthorized = (message: string) => (c: Context) =>
  c.json(errorBody('unauthorized', message), 401, { 'WWW-Authenticate': 'Bearer realm="predict"' });

export function apiKey(keys: string[]): MiddlewareHandler {
  return bearerAuth({
    token: keys,
    realm: 'predict',
    noAuthenticationHeader: { message: unauthorized('Missing API key: send Authorization: Bearer <key>') },
    invalidAuthenticationHeader: { message: unauthorized('Malformed Authorization header: expected Bearer <key>') },
    invalidToken: { message: unauthorized('Invalid API key') },
  });
}
