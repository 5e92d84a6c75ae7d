/**
 * Config parsing shared by both tiers: each tier declares a zod schema of its environment
 * variables, and {@link parseEnv} turns a bad value into one readable message per variable.
 *
 * @example
 * const Schema = z.object({ BATCH_SIZE: intVar(32, 1, 1024) });
 * const { BATCH_SIZE } = parseEnv(Schema, process.env); // throws ConfigError on BATCH_SIZE=abc
 */
import { z } from 'zod';
import { DEFAULT_KEY_PREFIX } from './keys.ts';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** An integer variable within bounds, optional (undefined when unset). */
export const optionalIntVar = (min: number, max: number) => {
  const error = `expected an integer from ${min} to ${max}`;
  return z.coerce.number({ error }).int({ error }).min(min, { error }).max(max, { error }).optional();
};

/** An integer variable with a default and bounds, e.g. `intVar(32, 1, 1024)`. */
export const intVar = (fallback: number, min: number, max: number) => optionalIntVar(min, max).default(fallback);

/** KEY_PREFIX: both tiers must agree on it (shared/keys.ts). */
export const keyPrefixVar = () =>
  z
    .string()
    .regex(/^[\w.-]+$/, { error: 'letters, digits, _ . - only' })
    .default(DEFAULT_KEY_PREFIX);

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
/** LOG_LEVEL: pino's levels. */
export const logLevelVar = () => z.enum(LOG_LEVELS, { error: `expected one of ${LOG_LEVELS.join(', ')}` }).default('info');

/** A URL variable; `protocols` restricts the scheme (e.g. ['redis:', 'rediss:']). */
export const urlVar = (protocols: string[]) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { error: `expected a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}` },
  );

/** REDIS_URL: a direct connection, TLS with rediss:// (the worker's default and the edge's option differ). */
export const redisUrlVar = () => urlVar(['redis:', 'rediss:']);

/** REDIS_TLS_CA: PEM file of the CA that signed Redis' certificate, for a private CA (rediss:// only). */
export const redisTlsCaVar = () => z.string().min(1).optional();

/** DEADLINE_MS: how long a request waits for its result; the edge's, set alike on the workers. */
export const deadlineVar = () => intVar(30_000, 100, 600_000);

/** Refuses REDIS_TLS_CA without TLS (a CA file that would be ignored); returns whether it did. */
export function refuseTlsCaWithoutTls(env: { REDIS_URL?: string; REDIS_TLS_CA?: string }, ctx: z.RefinementCtx): boolean {
  if (!env.REDIS_TLS_CA || env.REDIS_URL?.startsWith('rediss:')) return false;
  ctx.addIssue({
    code: 'custom',
    path: ['REDIS_TLS_CA'],
    message: 'set, but REDIS_URL is not rediss:// (TLS): use rediss://, or unset REDIS_TLS_CA',
  });
  return true;
}

/** Parse `env` against `schema`; on failure throw a ConfigError naming each bad variable. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Record<string, string | undefined>): z.infer<S> {
  // Empty strings mean "unset", as in most shells' `VAR= cmd`.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((issue) => {
    const name = issue.path.join('.') || '(config)';
    const variable = String(issue.path[0] ?? '');
    const got = issue.path.length ? cleaned[variable] : undefined;
    return `  ${name}: ${issue.message}${got !== undefined ? ` (got ${shown(variable, got)})` : ''}`;
  });
  throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
}

/** A URL as an error may show it: everything up to the last @ masked (a password may hold any character). */
export const maskedUrl = (url: string) => url.replace(/^([a-z][\w+.-]*:\/\/).*@/i, '$1***@');

/** A bad value as an error may show it: secrets hidden (QUEUES and OTLP headers may hold tokens), a URL's password masked. */
function shown(variable: string, value: string): string {
  if (/TOKEN|KEYS?$|SECRET|PASSWORD|HEADERS$|^QUEUES$/i.test(variable)) return `${value.length} characters, not shown`;
  return JSON.stringify(maskedUrl(value));
}

/** Exit code of a process stopped by bad configuration. */
export const CONFIG_EXIT_CODE = 2;

/** For Node entry points: `parse()`, or print its ConfigError and exit with CONFIG_EXIT_CODE. */
export function configOrExit<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    console.error(error.message);
    process.exit(CONFIG_EXIT_CODE);
  }
}
