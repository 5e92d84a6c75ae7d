import { Hono } from 'hono';
import { requestId } from 'hono/request-id';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { expect, it } from 'vitest';
import { accessLog } from './index.ts';

it('logs id, method, path, status and time, and never headers or bodies', async () => {
  const lines: string[] = [];
  const sink = new Writable({
    write: (chunk, _encoding, done) => {
      lines.push(String(chunk));
      done();
    },
  });
  const app = new Hono().use(requestId(), accessLog(pino({}, sink))).post('/predict', (c) => c.json({ ok: true }, 201));
  const response = await app.request('/predict', {
    method: 'POST',
    headers: { authorization: 'Bearer k_live_secret_value_123', 'content-type': 'image/jpeg' },
    body: 'IMAGE-BYTES-MARKER',
  });
  const line = JSON.parse(lines[0]!);
  expect(line).toMatchObject({ method: 'POST', path: '/predict', status: 201, id: response.headers.get('x-request-id') });
  expect(typeof line.ms).toBe('number');
  expect(lines.join('')).not.toMatch(/k_live_secret|IMAGE-BYTES-MARKER|authorization/i);
});
