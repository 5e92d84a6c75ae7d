/**
 * `npm run predict -- <image> [--url http://localhost:8787] [--top 5] [--resize squash|center-crop]`
 * The seed's simple_request.py: post one image and print the top predictions.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

const usage = 'usage: npm run predict -- <image> [--url http://localhost:8787] [--top 5] [--resize squash|center-crop]';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      url: { type: 'string', default: process.env.EDGE_URL ?? 'http://localhost:8787' },
      top: { type: 'string' },
      resize: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
} catch (error) {
  console.error(`${(error as Error).message}\n${usage}`);
  process.exit(2);
}
const { values, positionals } = parsed;
if (values.help || positionals.length !== 1) {
  console.error(usage);
  process.exit(values.help ? 0 : 2);
}
const path = positionals[0]!;
let bytes: Buffer;
try {
  bytes = await readFile(path);
} catch (error) {
  console.error(`cannot read ${path}: ${(error as Error).message}`);
  process.exit(2);
}

const url = new URL('/predict', values.url);
if (values.top) url.searchParams.set('top', values.top);
if (values.resize) url.searchParams.set('resize', values.resize);
const form = new FormData();
form.append('image', new Blob([new Uint8Array(bytes)]), basename(path));

let response: Response;
try {
  response = await fetch(url, { method: 'POST', body: form });
} catch (error) {
  console.error(`cannot reach ${url.origin}: ${(error as Error).cause ?? (error as Error).message}. Is the stack running (npm start)?`);
  process.exit(1);
}
const body = (await response.json().catch(() => null)) as
  | { success: true; predictions: { label: string; probability: number }[]; model: string; timings: Record<string, number> }
  | { success: false; error: { code: string; message: string } }
  | null;
if (!body?.success) {
  console.error(`HTTP ${response.status}: ${body ? `${body.error.code}: ${body.error.message}` : 'not a JSON answer'}`);
  process.exit(1);
}
body.predictions.forEach((p, i) => console.log(`${i + 1}. ${p.label}: ${p.probability.toFixed(4)}`));
console.log(
  `(${body.model}; ${Object.entries(body.timings)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')})`,
);
