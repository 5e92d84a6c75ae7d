import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { apiKey } from './index.ts';

const KEYS = ['k_live_0123456789abcdef', 'k_live_fedcba9876543210'];
const app = new Hono().use('/predict', apiKey(KEYS)).post('/predict', (c) => c.json({ success: true }));
const post = (authorization?: string) => app.request('/predict', { method: 'POST', headers: authorization ? { authorization } : {} });

async function expectUnauthorized(response: Response) {
  expect(response.status).toBe(401);
  expect(response.headers.get('www-authenticate')).toContain('Bearer');
  const body = await response.json();
  expect(body).toMatchObject({ success: false, error: { code: 'unauthorized' } });
  expect(JSON.stringify(body)).not.toContain('k_live_');
}

describe('apiKey', () => {
  it('lets each configured key through', async () => {
    for (const key of KEYS) expect((await post(`Bearer ${key}`)).status).toBe(200);
  });

  it('answers 401 JSON for a missing, wrong or malformed key', async () => {
    await expectUnauthorized(await post());
    await expectUnauthorized(await post('Bearer k_live_0123456789abcdeX'));
    await expectUnauthorized(await post(`Bearer ${KEYS[0]}x`));
    await expectUnauthorized(await post(`Basic ${KEYS[0]}`));
    await expectUnauthorized(await post('Bearer has spaces and "quotes"'));
  });
});
