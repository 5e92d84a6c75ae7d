/** Bad uploads and the JSON error each must get, shared by the Node and Workers edge tests. */
import { readFile } from 'node:fs/promises';
import { expect } from 'vitest';
import { FIXTURES, pngHeaderOnly } from './images.ts';

const beagle = await readFile(`${FIXTURES}beagle.jpg`);

const form = (...parts: [string, Blob | string, string?][]) => {
  const body = new FormData();
  for (const [name, value, filename] of parts) {
    if (typeof value === 'string') body.append(name, value);
    else body.append(name, value, filename);
  }
  return body;
};
const file = (bytes: Uint8Array, type = 'image/jpeg') => new Blob([bytes as Uint8Array<ArrayBuffer>], { type });

export type BadUpload = { name: string; init: () => RequestInit; path?: string; status: number; code: string };
/** `maxBodyBytes`: the edge's MAX_BODY_BYTES, to cross it by one byte. */
export const badUploads = (MAX_BODY_BYTES: number): BadUpload[] => [
  {
    name: 'text with an image Content-Type',
    init: () => ({ method: 'POST', headers: { 'content-type': 'image/png' }, body: 'just text' }),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'SVG upload',
    init: () => ({
      method: 'POST',
      body: form(['image', file(new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg"></svg>'), 'image/svg+xml'), 'a.svg']),
    }),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'JSON body',
    init: () => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"image":"x"}' }),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'empty raw body',
    init: () => ({ method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: '' }),
    status: 400,
    code: 'empty_body',
  },
  { name: 'no body at all', init: () => ({ method: 'POST' }), status: 400, code: 'missing_image' },
  {
    name: 'multipart without an image field',
    init: () => ({ method: 'POST', body: form(['photo', file(beagle), 'dog.jpg']) }),
    status: 400,
    code: 'missing_image',
  },
  {
    name: 'multipart image field as text',
    init: () => ({ method: 'POST', body: form(['image', 'not a file']) }),
    status: 400,
    code: 'missing_image',
  },
  {
    name: 'nine image files (over MAX_IMAGES_PER_REQUEST, 8)',
    init: () => ({
      method: 'POST',
      body: form(...Array.from({ length: 9 }, (_, i) => ['image', file(beagle.subarray(0, 100)), `${i}.jpg`] as [string, Blob, string])),
    }),
    status: 400,
    code: 'too_many_files',
  },
  {
    name: 'a batch with one text "image" field',
    init: () => ({ method: 'POST', body: form(['image', file(beagle), 'a.jpg'], ['image', 'not a file']) }),
    status: 400,
    code: 'missing_image',
  },
  {
    name: 'empty image file',
    init: () => ({ method: 'POST', body: form(['image', file(new Uint8Array(0)), 'a.jpg']) }),
    status: 400,
    code: 'empty_body',
  },
  {
    name: 'multipart with a wrong boundary',
    init: () => ({
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=nope' },
      body: '--other\r\nContent-Disposition: form-data; name="image"\r\n\r\nx\r\n--other--\r\n',
    }),
    status: 400,
    code: 'bad_request',
  },
  {
    name: 'raw body over the size limit',
    init: () => ({ method: 'POST', headers: { 'content-type': 'image/jpeg' }, body: new Uint8Array(MAX_BODY_BYTES + 1) }),
    status: 413,
    code: 'payload_too_large',
  },
  {
    name: 'multipart file over the size limit',
    init: () => ({ method: 'POST', body: form(['image', file(new Uint8Array(MAX_BODY_BYTES + 10)), 'big.jpg']) }),
    status: 413,
    code: 'payload_too_large',
  },
  {
    name: 'PNG claiming 50,000 x 50,000 pixels',
    init: () => ({
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: pngHeaderOnly(50_000, 50_000) as Uint8Array<ArrayBuffer>,
    }),
    status: 413,
    code: 'image_too_large',
  },
  {
    name: 'truncated JPEG',
    init: () => ({ method: 'POST', body: form(['image', file(beagle.subarray(0, beagle.length / 2)), 'half.jpg']) }),
    status: 400,
    code: 'corrupt_image',
  },
  {
    name: 'JPEG header then garbage',
    init: () => ({
      method: 'POST',
      headers: { 'content-type': 'image/jpeg' },
      body: Buffer.concat([beagle.subarray(0, 2000), Buffer.alloc(4000, 0x42)]),
    }),
    status: 400,
    code: 'corrupt_image',
  },
  {
    name: 'top out of range',
    path: '/predict?top=21',
    init: () => ({ method: 'POST', body: form(['image', file(beagle), 'dog.jpg']) }),
    status: 400,
    code: 'invalid_parameter',
  },
  {
    name: 'unknown resize mode',
    path: '/predict?resize=stretch',
    init: () => ({ method: 'POST', body: form(['image', file(beagle), 'dog.jpg']) }),
    status: 400,
    code: 'invalid_parameter',
  },
  { name: 'GET /predict', init: () => ({ method: 'GET' }), status: 405, code: 'method_not_allowed' },
  { name: 'unknown route', path: '/v0/classify', init: () => ({ method: 'POST' }), status: 404, code: 'not_found' },
];

export async function expectError(response: Response, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toContain('application/json');
  const body = await response.json();
  expect(body).toMatchObject({ success: false, error: { code } });
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(5);
}

/** A request body streamed in 64 KiB chunks with no Content-Length, `totalBytes` long. */
export function chunkedBody(totalBytes: number): ReadableStream<Uint8Array> {
  const chunk = new Uint8Array(64 * 1024);
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      sent += chunk.length;
      if (sent > totalBytes) controller.close();
      else controller.enqueue(chunk);
    },
  });
}
