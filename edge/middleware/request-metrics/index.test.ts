import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { type RequestOutcome, requestMetrics } from './index.ts';

describe('requestMetrics', () => {
  it("reports route, status, the error body's code and the time, with unknown paths as `other`", async () => {
    const seen: RequestOutcome[] = [];
    const app = new Hono();
    app.use(requestMetrics((outcome) => seen.push(outcome)));
    app.get('/readyz', (c) => c.json({ ready: true }));
    app.post('/predict', (c) => c.json({ success: false, error: { code: 'queue_full', message: 'full' } }, 503));
    app.get('/v1/models', (c) => c.text('oops', 500));
    await app.request('/readyz');
    await app.request('/predict', { method: 'POST' });
    await app.request('/v1/models');
    await app.request('/wp-admin.php');
    expect(seen.map(({ route, status, code }) => [route, status, code])).toEqual([
      ['/readyz', 200, 'ok'],
      ['/predict', 503, 'queue_full'],
      ['/v1/models', 500, 'none'],
      ['other', 404, 'none'],
    ]);
    expect(seen.every((outcome) => outcome.seconds >= 0)).toBe(true);
  });
});
