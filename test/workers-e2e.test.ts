/**
 * The edge inside workerd (`npm run dev:edge`: wrangler dev, offline) against the local stack:
 * redis-server, the local Upstash REST server and a worker with the real ResNet50. The reference
 * photo gives beagle, and bad uploads get the same JSON errors as on Node. With WIRE_FORMAT=webp:
 * the Workers edge queues the 224x224 image as lossless WebP (photon), the same pixels as raw, so
 * the answers are raw's; the raw path in workerd runs in stack-shards.test.ts.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TierProcess } from '../dev/processes.ts';
import { startStack } from './helpers/fixtures.ts';
import { badUploads, expectError } from './helpers/bad-uploads.ts';
import { FIXTURES, pngHeaderOnly } from './helpers/images.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';

const MAX_BODY_BYTES = 10 * 1024 * 1024; // wrangler.toml [env.local.vars]
let stack: TierProcess;
let url: string;
const output: string[] = [];

beforeAll(async () => {
  ({ stack, url } = await startStack({ WORKERS: '1', REDIS_URL: undefined, WIRE_FORMAT: 'webp' }, output, { args: ['--workers'] }));
}, 240_000);

afterAll(async () => {
  await stack?.stop();
});

describe('edge on workerd (wrangler dev)', () => {
  it('runs inside workerd', () => {
    expect(output.join('\n')).toMatch(/\(workerd\)/);
  });

  it('classifies the reference photo as beagle, like Keras (queued as lossless WebP)', async () => {
    const body = new FormData();
    body.append('image', new Blob([new Uint8Array(await readFile(`${FIXTURES}beagle.jpg`))]), 'beagle.jpg');
    const response = await fetch(`${url}/predict`, { method: 'POST', body });
    expect(response.status).toBe(200);
    const result = await response.json();
    expect(result.predictions[0].label).toBe('beagle');
    expect(Math.abs(result.predictions[0].probability - 0.9901)).toBeLessThanOrEqual(0.01);
    expect(response.headers.get('x-request-id')).toBe(result.id);
    // The edge's "predicted" log line (workerd prints it as an object over several lines).
    const from = output.findIndex((line) => line.includes(`id: '${result.id}'`));
    const to = output.findIndex((line, i) => i > from && line.endsWith('} predicted'));
    const logged = output.slice(from, to).join('\n');
    expect(logged).toContain("wireFormat: 'webp'");
    expect(Number(logged.match(/wireBytes: (\d+)/)?.[1])).toBeLessThan(TENSOR_BYTES / 1.5);
  });

  it.each(badUploads(MAX_BODY_BYTES))('bad upload: $name -> $status $code, as on Node', async ({ init, path, status, code }) => {
    await expectError(await fetch(url + (path ?? '/predict'), init()), status, code);
  });

  it('answers a batch request in order, and serves the demo page, /readyz, /v1/models and /openapi.json as on Node', async () => {
    const body = new FormData();
    body.append('image', new Blob([new Uint8Array(await readFile(`${FIXTURES}beagle.jpg`))]), 'beagle.jpg');
    body.append('image', new Blob([new TextEncoder().encode('not an image')]), 'notes.txt');
    const batch = await (await fetch(`${url}/predict?top=1`, { method: 'POST', body })).json();
    expect(batch.results.map((r: { success: boolean }) => r.success)).toEqual([true, false]);
    expect(batch.results[0].predictions[0].label).toBe('beagle');

    const page = await fetch(`${url}/`, { headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' } });
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/script-src 'sha256-/);
    expect(await page.text()).toContain('type="file"');
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    expect((await (await fetch(`${url}/v1/models`)).json()).models[0].labels).toBe(1000);
    expect(Object.keys((await (await fetch(`${url}/openapi.json`)).json()).paths)).toContain('/predict');
  });

  it('refuses an image over the Workers pixel limit from its header with 413', async () => {
    const response = await fetch(`${url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'image/png' },
      body: pngHeaderOnly(5000, 5000) as Uint8Array<ArrayBuffer>,
    });
    await expectError(response, 413, 'image_too_large');
  });
});
