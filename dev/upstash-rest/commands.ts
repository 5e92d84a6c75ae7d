/**
 * Validating one REST command before it reaches Redis.
 *
 * Every HTTP request shares one Redis connection, so commands that would block it (BLPOP,
 * XREAD BLOCK, WAIT...) or change its state (SELECT, MULTI, SUBSCRIBE...) are refused with a
 * 400, as real Upstash REST refuses them. Arguments arrive as JSON: strings pass through, numbers
 * and booleans become their text (what `@upstash/redis` serializes), anything else is an error.
 *
 * Valid commands are sent as {@link RawCommand}s: ioredis reshapes some replies (HGETALL into an
 * object, ...), and the REST protocol wants exactly what Redis said, as Buffers.
 *
 * @example
 * parseCommand(['SET', 'k', 1]);  // { ok: true, name: 'SET', args: ['k', '1'] }
 * parseCommand(['BLPOP', 'q', 0]); // { ok: false, error: 'ERR blocking command BLPOP is not supported over REST ...' }
 */

import { Command } from 'ioredis';

/** `malformed`: not a command at all (not a list of strings and numbers); else one this server refuses. */
export type ParsedCommand = { ok: true; name: string; args: string[] } | { ok: false; error: string; malformed?: true };

const BLOCKING = new Set(['BLPOP', 'BRPOP', 'BLMOVE', 'BRPOPLPUSH', 'BZPOPMIN', 'BZPOPMAX', 'BLMPOP', 'BZMPOP', 'WAIT', 'WAITAOF']);
const PUBSUB = new Set([
  'SUBSCRIBE',
  'PSUBSCRIBE',
  'SSUBSCRIBE',
  'UNSUBSCRIBE',
  'PUNSUBSCRIBE',
  'SUNSUBSCRIBE',
  'MONITOR',
  'SYNC',
  'PSYNC',
]);
const TRANSACTION = new Set(['MULTI', 'EXEC', 'DISCARD', 'WATCH', 'UNWATCH']);
const CONNECTION_STATE = new Set(['SELECT', 'AUTH', 'HELLO', 'QUIT', 'RESET']);

export function parseCommand(value: unknown): ParsedCommand {
  if (!Array.isArray(value)) return { ok: false, malformed: true, error: 'ERR a command must be a JSON array like ["SET","key","value"]' };
  if (value.length === 0) return { ok: false, malformed: true, error: 'ERR empty command' };
  const parts: string[] = [];
  for (const item of value) {
    if (typeof item === 'string') parts.push(item);
    else if ((typeof item === 'number' && Number.isFinite(item)) || typeof item === 'boolean') parts.push(String(item));
    else
      return {
        ok: false,
        malformed: true,
        error: `ERR command arguments must be strings, numbers or booleans (got ${item === null ? 'null' : typeof item})`,
      };
  }
  const [name = '', ...args] = parts;
  if (name === '') return { ok: false, malformed: true, error: 'ERR empty command name' };
  const refused = refusal(name.toUpperCase(), args);
  return refused ? { ok: false, error: refused } : { ok: true, name, args };
}

function refusal(name: string, args: string[]): string | undefined {
  // XREADGROUP GROUP <group> <consumer> ...: skip the names, which may well be "BLOCK".
  const isBlockingRead = (name === 'XREAD' && hasBlockOption(args)) || (name === 'XREADGROUP' && hasBlockOption(args.slice(3)));
  if (BLOCKING.has(name) || isBlockingRead) {
    return `ERR blocking command ${isBlockingRead ? `${name} BLOCK` : name} is not supported over REST; use the non-blocking form and poll`;
  }
  if (PUBSUB.has(name)) {
    return `ERR ${name} is not supported as a REST command; subscribe with POST /subscribe/<channel> (or /psubscribe/<pattern>) and Accept: text/event-stream`;
  }
  if (TRANSACTION.has(name)) return `ERR ${name} is not supported as a REST command; send the commands to POST /multi-exec`;
  if (CONNECTION_STATE.has(name)) return `ERR ${name} is not supported over REST (the Redis connection is shared)`;
  if (name === 'CLIENT' && ['REPLY', 'TRACKING', 'PAUSE'].includes(args[0]?.toUpperCase() ?? '')) {
    return `ERR CLIENT ${args[0]?.toUpperCase()} is not supported over REST (the Redis connection is shared)`;
  }
  return undefined;
}

/** [COUNT n] [BLOCK ms] STREAMS ...: only options before STREAMS count (keys may be named "BLOCK"). */
function hasBlockOption(args: string[]): boolean {
  for (const arg of args) {
    const upper = arg.toUpperCase();
    if (upper === 'STREAMS') return false;
    if (upper === 'BLOCK') return true;
  }
  return false;
}

/** A command whose reply is passed through as Redis sent it: Buffers, no ioredis reply transformers. */
export class RawCommand extends Command {
  constructor(name: string, args: string[]) {
    super(name, args); // no replyEncoding: bulk replies stay Buffers
  }

  override transformReply(result: Buffer | Buffer[]): Buffer | Buffer[] {
    return result;
  }
}
