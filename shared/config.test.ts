import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { keyPrefixVar, logLevelVar, parseEnv, urlVar } from './config.ts';

const Env = z.object({
  KEY_PREFIX: keyPrefixVar(),
  LOG_LEVEL: logLevelVar(),
  REDIS_URL: urlVar(['redis:']).optional(),
  API_TOKEN: z.string().min(99).optional(),
});

describe('the variables both tiers share', () => {
  it('default KEY_PREFIX and LOG_LEVEL, and name each bad one', () => {
    expect(parseEnv(Env, {})).toEqual({ KEY_PREFIX: 'rn', LOG_LEVEL: 'info' });
    expect(() => parseEnv(Env, { KEY_PREFIX: 'a b', LOG_LEVEL: 'loud' })).toThrow(
      /KEY_PREFIX: letters, digits, _ \. - only \(got "a b"\)\n {2}LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent \(got "loud"\)/,
    );
  });

  it('never show a secret or a URL password in the message', () => {
    expect(() => parseEnv(Env, { REDIS_URL: 'http://u:s3cr3t/x@host' })).toThrow(/REDIS_URL: .*\(got "http:\/\/\*\*\*@host"\)/);
    expect(() => parseEnv(Env, { API_TOKEN: 'short-s3cr3t' })).toThrow(/API_TOKEN: .*\(got 12 characters, not shown\)/);
  });
});
