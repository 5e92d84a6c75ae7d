/**
 * Turn one raw stream entry (XREADGROUP, Buffer variant) into a job the worker can run, or say
 * why it cannot. Nothing here throws: a malformed entry must never stop the loop.
 */
import { type JobFields, WIRE_FORMATS, type WireFormat } from '../shared/protocol.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { isTraceparent } from '../shared/tracing/index.ts';
import { z85Decode, z85Length } from '../shared/z85.ts';

export interface StreamEntry {
  entryId: string;
  /** Flat [name, value, name, value, ...]; null when the entry was deleted meanwhile. */
  fields: Buffer[] | null;
  /** Epoch ms when this worker received it (for queueMs). */
  readAt: number;
}

export interface Job {
  kind: 'job';
  entryId: string;
  id: string;
  reply: string;
  /** TENSOR_BYTES of RGB; for a `jpeg` or `webp` job, its image file until wire.ts decodes it. */
  tensor: Uint8Array;
  format: WireFormat;
  enqueuedAt: number;
  deadline: number;
  readAt: number;
  /** The edge's enqueue span (tracing on there); a malformed one is ignored: traces never fail a job. */
  traceparent?: string;
}

/** Answerable (it has an id and a reply channel) but not runnable: gets an error result. */
export interface InvalidJob {
  kind: 'invalid';
  entryId: string;
  id: string;
  reply: string;
  message: string;
}

/** Not even answerable (no id or reply channel): acknowledged and dropped. */
export interface UnanswerableEntry {
  kind: 'unanswerable';
  entryId: string;
  message: string;
}

export type ParsedEntry = Job | InvalidJob | UnanswerableEntry;

const Z85_LENGTH = z85Length(TENSOR_BYTES);
/** An image file of a job is never larger than this (a 224x224 file is far smaller than its pixels). */
const MAX_FILE_BYTES = 2 * TENSOR_BYTES;
const B64_LENGTH = Math.ceil(TENSOR_BYTES / 3) * 4;
const B64_CHARS = /^[A-Za-z0-9+/]*={0,2}$/;

export function parseEntry(entry: StreamEntry): ParsedEntry {
  const { entryId } = entry;
  if (!entry.fields) return { kind: 'unanswerable', entryId, message: 'entry has no fields (deleted?)' };
  const fields = new Map<string, Buffer>();
  for (let i = 0; i + 1 < entry.fields.length; i += 2) {
    fields.set(entry.fields[i]!.toString('latin1'), entry.fields[i + 1]!);
  }
  const text = (name: keyof JobFields) => fields.get(name)?.toString('utf8');
  const id = text('id');
  const reply = text('reply');
  if (!id || !reply) return { kind: 'unanswerable', entryId, message: `entry lacks ${!id ? 'id' : 'reply'}` };

  const invalid = (message: string): InvalidJob => ({ kind: 'invalid', entryId, id, reply, message });
  const enqueuedAt = Number(text('enqueuedAt'));
  const deadline = Number(text('deadline'));
  if (!Number.isFinite(enqueuedAt) || !Number.isFinite(deadline)) return invalid('enqueuedAt and deadline must be epoch milliseconds');
  const raw = fields.get('tensor');
  if (!raw) return invalid('job has no tensor');
  const format = (text('format') ?? 'raw') as WireFormat;
  const traceparent = fields.get('traceparent')?.toString('latin1');
  const traced = isTraceparent(traceparent) ? { traceparent } : {};
  if (!WIRE_FORMATS.includes(format)) return invalid(`format must be ${WIRE_FORMATS.join(', ')}, got ${JSON.stringify(format)}`);
  const enc = text('enc');
  let tensor: Uint8Array;
  if (format !== 'raw') {
    // An image file: its bytes, or Z85 text of them (zero-padded to 4 bytes).
    if (enc !== 'raw' && enc !== 'z85') return invalid(`enc must be raw or z85 for a ${format} job, got ${JSON.stringify(enc ?? null)}`);
    const size = enc === 'z85' ? (raw.length / 5) * 4 : raw.length;
    if (size > MAX_FILE_BYTES || (enc === 'z85' && raw.length % 5 !== 0)) {
      return invalid(
        `tensor: a ${format} file of at most ${MAX_FILE_BYTES} bytes${enc === 'z85' ? ' as Z85 text' : ''}, got ${raw.length} bytes`,
      );
    }
    try {
      tensor = enc === 'z85' ? z85Decode(raw) : raw;
    } catch (error) {
      return invalid(`tensor: not Z85 text (${(error as Error).message})`);
    }
    return { kind: 'job', entryId, id, reply, tensor, format, enqueuedAt, deadline, readAt: entry.readAt, ...traced };
  }
  if (enc === 'raw') {
    tensor = raw;
  } else if (enc === 'z85') {
    if (raw.length !== Z85_LENGTH) {
      return invalid(`tensor: expected ${Z85_LENGTH} Z85 characters (${TENSOR_BYTES} bytes), got ${raw.length} bytes`);
    }
    try {
      tensor = z85Decode(raw); // the Buffer's bytes: no string made; throws on a character outside the alphabet
    } catch (error) {
      return invalid(`tensor: not Z85 text (${(error as Error).message})`);
    }
  } else if (enc === 'b64') {
    // Written by edges before Z85; kept so that jobs queued across an upgrade are answered.
    const b64 = raw.toString('latin1');
    // Buffer's decoder skips junk silently, so check the text first.
    if (b64.length !== B64_LENGTH || !B64_CHARS.test(b64)) {
      return invalid(`tensor: expected ${B64_LENGTH} base64 characters (${TENSOR_BYTES} bytes), got ${b64.length} characters`);
    }
    tensor = Buffer.from(b64, 'base64');
  } else {
    return invalid(`enc must be raw, z85 or b64, got ${JSON.stringify(enc ?? null)}`);
  }
  if (tensor.length !== TENSOR_BYTES) {
    return invalid(`tensor: expected ${TENSOR_BYTES} bytes (224x224 RGB uint8), got ${tensor.length}`);
  }
  return { kind: 'job', entryId, id, reply, tensor, format, enqueuedAt, deadline, readAt: entry.readAt, ...traced };
}
