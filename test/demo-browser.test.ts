/**
 * The demo page (`GET /`) in a real headless Chromium against a real stack: redis-server, the
 * local Upstash REST server, the Node edge over HTTP and a worker running the real Keras ResNet50
 * (the first run downloads it, ~95 MB, into MODEL_CACHE_DIR). The reference photo must show
 * "beagle" in the top bar; a text file must show the server's error message. Screenshots go to
 * test-output/.
 *
 * Needs Debian's chromium at /usr/bin/chromium (never a downloaded browser): without it this file
 * fails, it does not skip.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeEdge } from '../edge/node/server.ts';
import { spawnTier, type TierProcess } from '../dev/processes.ts';
import { createLogger } from '../shared/log.ts';
import { startBackbone, type Backbone } from './helpers/backbone.ts';
import { FIXTURES } from './helpers/images.ts';
import { startLocalEdge, viaRest } from './helpers/fixtures.ts';

const CHROMIUM = '/usr/bin/chromium';
const OUTPUT = new URL('../test-output/', import.meta.url).pathname;
const TOKEN = 'demo-test-token-0123456789';
const WORKER = 'demo-browser-worker';
const NOT_AN_IMAGE = { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('just some text, not an image\n') };

let base: Backbone | undefined;
let worker: TierProcess | undefined;
let edge: NodeEdge | undefined;
let browser: Browser | undefined;
let page: Page;
const workerLog: string[] = [];
/** Console errors and uncaught exceptions in the page (a CSP violation shows up here). */
const pageErrors: string[] = [];

beforeAll(async () => {
  // Checked first so a missing browser fails in a second, with the fix in the message.
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM}: run \`sudo apt-get install -y chromium\` (CI installs it). The demo page browser test needs it.`,
    );
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });

  base = await startBackbone({ token: TOKEN, seed: 11, logger: createLogger('demo-rest', 'silent') });
  worker = spawnTier({
    name: 'worker',
    entry: 'gpu-worker/main.ts',
    // The builtin ResNet50: the tiny test model would never say "beagle".
    env: { REDIS_URL: base.redisServer.url, CONSUMER_NAME: WORKER, MODEL: undefined, PREPROCESS: undefined, INFERENCE_PROCESSES: '1' },
    readyMessage: 'worker ready',
    print: (line) => workerLog.push(line),
  });
  edge = await startLocalEdge(viaRest(base.rest, TOKEN), createLogger('demo-edge', 'silent'));
  await worker.ready.catch((error) => {
    throw new Error(`${error.message}\n${workerLog.join('\n')}`);
  });

  page = await browser.newPage({ viewport: { width: 900, height: 1100 } });
  page.on('pageerror', (error) => pageErrors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    // The browser logs every 4xx fetch; the refused text file is expected to cause one.
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) pageErrors.push(message.text());
  });
  await mkdir(OUTPUT, { recursive: true });
}, 600_000);

afterAll(async () => {
  await browser?.close();
  await edge?.close();
  await worker?.stop();
  await base?.stop();
});

const text = async (testId: string) => ((await page.getByTestId(testId).textContent()) ?? '').trim();

describe('demo page in Chromium', () => {
  it('loads as HTML with its CSP, and the file input is reachable by keyboard', async () => {
    const response = await page.goto(`${edge!.url}/`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['content-type']).toMatch(/^text\/html/);
    expect(response?.headers()['content-security-policy']).toMatch(/script-src 'sha256-/);
    expect(await page.title()).toMatch(/classification/i);
    // The script ran (it reveals the form), so the CSP hash matched.
    await page.getByLabel('Choose an image').waitFor({ state: 'visible', timeout: 5_000 });
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('file');
    expect(await page.getByTestId('result').getAttribute('aria-live')).toBe('polite');
  });

  it('classifies the reference photo: "beagle" in the top bar, with timings, batch size and worker', async () => {
    await page.getByLabel('Choose an image').setInputFiles(`${FIXTURES}beagle.jpg`);
    const labels = page.getByTestId('prediction-label');
    await labels.first().waitFor({ timeout: 60_000 });

    expect(await labels.count()).toBe(5);
    expect(await labels.first().textContent()).toBe('beagle');
    const percents = await page.getByTestId('prediction-percent').allTextContents();
    expect(percents).toHaveLength(5);
    expect(parseFloat(percents[0]!)).toBeGreaterThan(97); // Keras: 99.0%
    for (const p of percents) expect(p).toMatch(/^\d{1,3}\.\d%$/);
    // The bars are drawn to scale (widths are set from script, which the CSP must allow).
    const [fill, bar] = await Promise.all([
      page.locator('#predictions li .fill').first().boundingBox(),
      page.locator('#predictions li .bar').first().boundingBox(),
    ]);
    expect(fill!.width / bar!.width).toBeGreaterThan(0.95);

    for (const id of ['timing-preprocess', 'timing-queue', 'timing-inference', 'timing-total', 'timing-roundtrip']) {
      expect(await text(id), id).toMatch(/^\d+ ms$/);
    }
    expect(parseInt(await text('timing-roundtrip'), 10)).toBeGreaterThanOrEqual(parseInt(await text('timing-total'), 10));
    expect(await text('batch-size')).toBe('1');
    expect(await text('worker')).toBe(WORKER);
    expect(await text('status')).toContain('beagle');
    expect(await page.getByTestId('error').isHidden()).toBe(true);
    // The preview decoded (img-src blob: is allowed).
    expect(await page.getByTestId('preview').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth)).toBeGreaterThan(0);

    await page.screenshot({ path: `${OUTPUT}demo.png`, fullPage: true });
  });

  it("shows the server's error message and code for a text file", async () => {
    // What the API itself answers for these bytes: the page must show exactly this message.
    const form = new FormData();
    form.append('image', new Blob([NOT_AN_IMAGE.buffer], { type: NOT_AN_IMAGE.mimeType }), NOT_AN_IMAGE.name);
    const api = await (await fetch(`${edge!.url}/predict`, { method: 'POST', body: form })).json();
    expect(api.error.code).toBe('unsupported_media_type');

    await page.getByLabel('Choose an image').setInputFiles(NOT_AN_IMAGE);
    await page.getByTestId('error').waitFor({ state: 'visible', timeout: 15_000 });
    expect(await text('error-code')).toBe('unsupported_media_type');
    expect(await text('error-message')).toContain(api.error.message);
    expect(await text('error-message')).toContain('HTTP 415');
    expect(await page.getByTestId('prediction').count()).toBe(0);
    expect(await page.getByTestId('preview').isHidden()).toBe(true);
    await page.screenshot({ path: `${OUTPUT}demo-error.png`, fullPage: true });
  });

  it('classifies an image dropped on the drop zone, clearing the error', async () => {
    const bytes = (await readFile(`${FIXTURES}beagle.jpg`)).toString('base64');
    const dataTransfer = await page.evaluateHandle((b64) => {
      const transfer = new DataTransfer();
      const raw = Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
      transfer.items.add(new File([raw], 'dropped-beagle.jpg', { type: 'image/jpeg' }));
      return transfer;
    }, bytes);
    await page.dispatchEvent('[data-testid="dropzone"]', 'drop', { dataTransfer });
    await page.getByTestId('prediction-label').first().waitFor({ timeout: 60_000 });
    expect(await page.getByTestId('prediction-label').first().textContent()).toBe('beagle');
    expect(await page.getByTestId('error').isHidden()).toBe(true);
    expect(await text('file-name')).toContain('dropped-beagle.jpg');
  });

  it('sends the API key field as a bearer key to an edge that requires one', async () => {
    const key = 'demo-browser-key-0123456789';
    const locked = await startLocalEdge(viaRest(base!.rest, TOKEN), createLogger('demo-edge-locked', 'silent'), { API_KEYS: key });
    try {
      await page.goto(`${locked.url}/`);
      await page.getByTestId('file-input').setInputFiles(`${FIXTURES}beagle.jpg`);
      await page
        .getByTestId('error')
        .waitFor({ state: 'visible', timeout: 20_000 })
        .catch(async (e) => {
          throw new Error(`${e.message}\nstatus: ${await text('status')}\nerror: ${await text('error-message')}`);
        });
      expect(await text('error-code')).toBe('unauthorized');

      await page.getByText('API key (only if this edge requires one)').click();
      await page.getByTestId('api-key').fill(key);
      await page.getByTestId('file-input').setInputFiles(`${FIXTURES}beagle.jpg`);
      await page
        .getByTestId('prediction-label')
        .first()
        .waitFor({ timeout: 20_000 })
        .catch(async (e) => {
          throw new Error(`${e.message}\nstatus: ${await text('status')}\nerror: ${await text('error-message')}`);
        });
      expect(await page.getByTestId('prediction-label').first().textContent()).toBe('beagle');
      expect(await page.getByTestId('error').isHidden()).toBe(true);
    } finally {
      await locked.close();
    }
  });

  it('logged no script errors or CSP violations', () => {
    expect(pageErrors).toEqual([]);
  });
});
