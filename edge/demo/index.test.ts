import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { createApp, type AppDeps } from '../app.ts';
import { DEMO_HTML, withDemoPage } from './index.ts';

const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';
const app = new Hono().get(
  '/',
  withDemoPage((c) => c.json({ service: 'test' })),
);
const get = (accept?: string) => app.request('/', { headers: accept === undefined ? {} : { accept } });

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const inline = (html: string, tag: string) => [...html.matchAll(new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g'))].map((m) => m[1]!);

function directives(csp: string) {
  return new Map(
    csp
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .map(([name, ...values]) => [name!, values]),
  );
}

describe('GET / content negotiation', () => {
  it('serves the page as UTF-8 HTML to a browser', async () => {
    const response = await get(BROWSER_ACCEPT);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=UTF-8');
    expect(response.headers.get('vary')).toBe('Accept');
    expect(await response.text()).toBe(DEMO_HTML);
  });

  it.each([
    ['no Accept', undefined],
    ["curl's */*", '*/*'],
    ['application/json', 'application/json'],
    ['JSON ranked above HTML', 'application/json, text/html;q=0.5'],
    ['HTML refused', 'text/html;q=0, */*'],
  ])('answers JSON otherwise: %s', async (_, accept) => {
    const response = await get(accept);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(response.headers.get('vary')).toBe('Accept');
    expect(await response.json()).toEqual({ service: 'test' });
  });

  it('is what the app serves on GET / (JSON stays for API clients)', async () => {
    const real = createApp({ codec: {}, broker: {}, config: {} } as unknown as AppDeps);
    const page = await real.request('/', { headers: { accept: BROWSER_ACCEPT } });
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toBe(DEMO_HTML);
    const json = await real.request('/', { headers: { accept: '*/*' } });
    expect(await json.json()).toMatchObject({ endpoints: expect.objectContaining({ 'POST /predict': expect.any(String) }) });
  });
});

describe('demo page security headers', () => {
  it('sends nosniff, no referrer and no framing', async () => {
    const response = await get(BROWSER_ACCEPT);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
  });

  it('has a strict CSP whose hashes allow exactly the inline script and style', async () => {
    const response = await get(BROWSER_ACCEPT);
    const html = await response.text();
    const csp = directives(response.headers.get('content-security-policy') ?? '');
    const scripts = inline(html, 'script');
    const styles = inline(html, 'style');
    expect(scripts).toHaveLength(1);
    expect(styles).toHaveLength(1);
    expect(csp.get('default-src')).toEqual(["'none'"]);
    expect(csp.get('script-src')).toEqual([sha256(scripts[0]!)]);
    expect(csp.get('style-src')).toEqual([sha256(styles[0]!)]);
    expect(csp.get('img-src')).toEqual(['blob:']);
    expect(csp.get('connect-src')).toEqual(["'self'"]);
    expect(csp.get('frame-ancestors')).toEqual(["'none'"]);
    expect(csp.get('base-uri')).toEqual(["'none'"]);
    for (const values of csp.values()) expect(values).not.toContain("'unsafe-inline'");
  });

  it('has nothing the CSP would block: no handler or style attributes, no external resources', () => {
    const markup = DEMO_HTML.replace(/<script>[\s\S]*?<\/script>/, '').replace(/<style>[\s\S]*?<\/style>/, '');
    expect(markup).not.toMatch(/\son[a-z]+\s*=/i);
    expect(markup).not.toMatch(/\sstyle\s*=/i);
    expect(markup).not.toMatch(/<(script|link|iframe)\b[^>]*\s(src|href)=/i);
  });

  it('ships a script that parses', () => {
    expect(() => new Function(inline(DEMO_HTML, 'script')[0]!)).not.toThrow();
  });
});

describe('demo page markup', () => {
  it('labels the file input, and announces results in a live region', () => {
    expect(DEMO_HTML).toMatch(/<label for="file">/);
    expect(DEMO_HTML).toMatch(/<input id="file"[^>]*type="file"/);
    expect(DEMO_HTML).toMatch(/<section id="result"[^>]*aria-live="polite"/);
    expect(DEMO_HTML).toMatch(/<html lang="en">/);
    expect(DEMO_HTML).toMatch(/<img id="preview"[^>]*alt="[^"]+"/);
  });

  it('has unique ids, including every one the script looks up', () => {
    const ids = [...DEMO_HTML.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!);
    expect(new Set(ids).size).toBe(ids.length);
    const script = inline(DEMO_HTML, 'script')[0]!;
    const used = [...script.matchAll(/\$\('([^']+)'\)|\bset\('([^']+)'/g)].map((m) => m[1] ?? m[2]!);
    expect(used.length).toBeGreaterThan(10);
    for (const id of used) expect(ids, id).toContain(id);
  });
});
