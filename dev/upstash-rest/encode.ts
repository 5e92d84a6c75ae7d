/**
 * Turning Redis replies into Upstash REST JSON, byte for byte what `@upstash/redis` expects.
 *
 * Replies are read as raw Buffers (see RawCommand in commands.ts), so values are binary safe. With the
 * `Upstash-Encoding: base64` request header (the client's default) every string becomes base64,
 * nested ones included, because the client base64-decodes every string it gets back. The single
 * exception is a top-level "OK": the client passes a bare top-level "OK" through untouched (and
 * base64 "OK" decodes to garbage), so it is sent raw. Integers stay JSON numbers, nil is null,
 * arrays keep their nesting. Without the header strings are sent as UTF-8 text.
 *
 * @example
 * encodeReply([Buffer.from('hi'), 3, null], true); // ['aGk=', 3, null]
 * encodeReply(Buffer.from('OK'), true);             // 'OK'
 */

export type JsonReply = string | number | null | JsonReply[];

const OK = Buffer.from('OK');

export function encodeReply(reply: unknown, base64: boolean, topLevel = true): JsonReply {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === 'number') return reply;
  if (typeof reply === 'bigint')
    return Number.isSafeInteger(Number(reply)) ? Number(reply) : encodeString(Buffer.from(reply.toString()), base64, topLevel);
  if (Buffer.isBuffer(reply)) return encodeString(reply, base64, topLevel);
  if (typeof reply === 'string') return encodeString(Buffer.from(reply), base64, topLevel);
  if (Array.isArray(reply)) return reply.map((item) => encodeReply(item, base64, false));
  // An error nested inside an array reply (e.g. a Lua table holding an error): keep its text.
  if (reply instanceof Error) return encodeString(Buffer.from(reply.message), base64, topLevel);
  if (typeof reply === 'boolean') return reply ? 1 : 0;
  return encodeString(Buffer.from(String(reply)), base64, topLevel);
}

function encodeString(bytes: Buffer, base64: boolean, topLevel: boolean): string {
  if (!base64) return bytes.toString('utf8');
  if (topLevel && bytes.equals(OK)) return 'OK';
  return bytes.toString('base64');
}
