/**
 * `npm run bench:codec`: the Workers image path (probe + @cf-wasm/photon decode + TypeScript
 * resize, edge/cloudflare-workers/photon-codec.ts) measured inside workerd via `wrangler dev`, next to the
 * Node path (edge/node/sharp-codec.ts) in this process, on the same generated images.
 *
 * Time: from the client, median of BENCH_RUNS sequential requests, minus the median of /noop
 * with the same body (transport: client -> wrangler's proxy workerd -> the Worker's workerd).
 * Memory: VmHWM / VmRSS of the workerd process that runs the Worker (not wrangler's proxy
 * workerd), from /proc/<pid>/status; the high-water mark is reset per image
 * (`echo 5 > /proc/<pid>/clear_refs`) where Linux allows it, and every image is also measured in a
 * freshly started `wrangler dev` (and, for sharp, in a fresh child Node process). Next to RSS, the
 * Worker reports photon's WASM memory size, from which the isolate's own peak is estimated.
 * A decode-size sweep (4..24 MP JPEG, fresh process each) gives the MAX_PIXELS recommendation.
 *
 * The bench Worker's wrangler.toml uses a no-op custom build, so wrangler bundles once per start and
 * edits elsewhere in the tree cannot reload the Worker mid-measurement.
 *
 * Writes bench/results/workers-codec.{json,md}. Environment knobs: BENCH_RUNS (15),
 * BENCH_FRESH_RUNS (5), BENCH_LIMIT_RUNS (3), BENCH_SKIP_CENTER_CROP=1.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import sharp from 'sharp';
import { parse as parseToml } from 'smol-toml';
import type { ResizeMode } from '../../edge/image/codec.ts';
import { probeImage } from '../../edge/image/probe.ts';
import { createSharpCodec } from '../../edge/node/sharp-codec.ts';
import { freePort } from '../../dev/redis-server.ts';
import { checksum as tensorChecksum } from './checksum.ts';

// ---------------------------------------------------------------------------------------------
// Settings

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = resolve(HERE, '../..');
const FIXTURES = resolve(REPO_ROOT, '../shared/fixtures/images');
const CONFIG = join(HERE, 'wrangler.toml');
const RESULTS_DIR = join(REPO_ROOT, 'bench/results');
const WRANGLER_JS = join(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js');

const intEnv = (name: string, fallback: number) => {
  const value = Number(process.env[name]);
  return Number.isInteger(value) && value > 0 ? value : fallback;
};
const RUNS = intEnv('BENCH_RUNS', 15);
const FRESH_RUNS = intEnv('BENCH_FRESH_RUNS', 5);
const LIMIT_RUNS = intEnv('BENCH_LIMIT_RUNS', 3);
const MODES: ResizeMode[] = process.env.BENCH_SKIP_CENTER_CROP === '1' ? ['squash'] : ['squash', 'center-crop'];
/** A Workers isolate's memory limit. */
const ISOLATE_LIMIT_MB = 128;
/** Kept free under the limit: the isolate's own baseline (bundle, compiled WASM, heap) and GC slack. */
const HEADROOM_MB = 28;
/** The production Worker's limits, from the root wrangler.toml's [vars]. */
const WORKER_VARS = (parseToml(readFileSync(new URL('../../wrangler.toml', import.meta.url), 'utf8')) as { vars: Record<string, string> })
  .vars;
const MAX_PIXELS_NOW = Number(WORKER_VARS.MAX_PIXELS);
/** The largest body, held twice at the peak (in JS and copied into WASM). */
const MAX_BODY_MB = Number(WORKER_VARS.MAX_BODY_BYTES) / (1024 * 1024);
const MB = 1024 * 1024;
/** Set when this file runs as the fresh Node process of one sharp measurement (see sharpChild). */
const childMode = process.argv[2] === '--sharp-child';

interface ImageSpec {
  id: string;
  label: string;
  width: number;
  height: number;
  format: 'jpeg' | 'png';
}

/** Timed on both paths, smallest first (the shared-process high-water mark only grows). */
const MAIN_IMAGES: ImageSpec[] = [
  { id: 'jpeg-0.8mp', label: '1024x768 JPEG', width: 1024, height: 768, format: 'jpeg' },
  { id: 'png-2mp', label: '2 MP PNG', width: 1600, height: 1250, format: 'png' },
  { id: 'jpeg-12mp', label: '12 MP JPEG', width: 4000, height: 3000, format: 'jpeg' },
];
/** The decode-size sweep (photon only, fresh process each); 12 MP is reused from MAIN_IMAGES. */
const LIMIT_IMAGES: ImageSpec[] = [
  { id: 'jpeg-4mp', label: '4 MP JPEG', width: 2304, height: 1728, format: 'jpeg' },
  { id: 'jpeg-6mp', label: '6 MP JPEG', width: 3000, height: 2000, format: 'jpeg' },
  { id: 'jpeg-8mp', label: '8 MP JPEG', width: 3264, height: 2448, format: 'jpeg' },
  { id: 'jpeg-12mp', label: '12 MP JPEG', width: 4000, height: 3000, format: 'jpeg' },
  { id: 'jpeg-16mp', label: '16 MP JPEG', width: 4608, height: 3456, format: 'jpeg' },
  { id: 'jpeg-24mp', label: '24 MP JPEG', width: 6000, height: 4000, format: 'jpeg' },
];

// ---------------------------------------------------------------------------------------------
// Small helpers

const say = (line: string) => console.log(`[bench] ${line}`);
const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const round = (x: number, digits = 1) => (Number.isFinite(x) ? Number(x.toFixed(digits)) : null);
const mb = (kb: number | null | undefined) => (kb == null ? null : round(kb / 1024));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Progress on one rewritten line on a terminal; a few lines otherwise. */
function progress(what: string, n: number, total: number) {
  if (process.stdout.isTTY) {
    process.stdout.write(`\r[bench] ${what} ${n}/${total}   `);
    if (n === total) process.stdout.write('\n');
  } else if (n === 1 || n === total || n % 5 === 0) {
    say(`${what} ${n}/${total}`);
  }
}

// ---------------------------------------------------------------------------------------------
// /proc: memory of a process, and the process tree

interface MemStatus {
  hwmKb: number;
  rssKb: number;
}

function readMem(pid: number): MemStatus | null {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
    return { hwmKb: field('VmHWM'), rssKb: field('VmRSS') };
  } catch {
    return null; // gone
  }
}

/** Resets VmHWM to the current VmRSS (Linux >= 4.0). False when not permitted. */
function resetHwm(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

interface ProcInfo {
  pid: number;
  ppid: number;
  comm: string;
  cmdline: string;
}

function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may contain spaces and parentheses.
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      out.push({ pid: Number(entry), ppid, comm, cmdline });
    } catch {
      // exited while listing
    }
  }
  return out;
}

function descendants(root: number): ProcInfo[] {
  const all = listProcesses();
  const found: ProcInfo[] = [];
  let frontier = [root];
  while (frontier.length) {
    const children = all.filter((p) => frontier.includes(p.ppid));
    found.push(...children);
    frontier = children.map((p) => p.pid);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// wrangler dev

interface DevServer {
  child: ChildProcess;
  url: string;
  /** The workerd process that runs the bench Worker. */
  workerPid: number;
  /** wrangler's proxy workerd (forwards requests to the Worker), when told apart. */
  proxyPid: number | null;
  log: string[];
}

const running = new Set<ChildProcess>();
/** Set on Ctrl-C: no new wrangler dev is started while shutting down. */
let stopping = false;

/** Kills a wrangler dev process group: SIGTERM (wrangler disposes workerd), then SIGKILL. */
async function stopDev(child: ChildProcess, graceMs = 4000): Promise<void> {
  if (!child.pid) return;
  const pgid = child.pid;
  const alive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(pgid, 'SIGTERM');
  } catch {
    // already gone
  }
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(100);
  if (alive()) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // raced with exit
    }
  }
  running.delete(child);
}

/** Synchronous last resort on exit: SIGKILL every group still running. */
function killAllSync() {
  for (const child of running) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  running.clear();
}

async function startDev(): Promise<DevServer> {
  if (stopping) throw new Error('stopping');
  const port = await freePort();
  const inspectorPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      WRANGLER_JS,
      'dev',
      '--config',
      CONFIG,
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--inspector-port',
      String(inspectorPort),
      '--show-interactive-dev-session=false',
    ],
    {
      cwd: REPO_ROOT,
      // Own process group, so wrangler, esbuild and both workerd processes are killed together.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: 'false',
        // Do not fetch Request.cf from workers.cloudflare.com (offline; the placeholder is fine).
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        NO_COLOR: '1',
        FORCE_COLOR: '0',
      },
    },
  );
  running.add(child);
  const log: string[] = [];
  const ready = new Promise<void>((resolveReady, reject) => {
    const onLine = (line: string) => {
      log.push(line);
      if (log.length > 200) log.shift();
      if (line.includes('Ready on')) resolveReady();
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('exit', (code, signal) =>
      reject(new Error(`wrangler dev exited (${signal ?? `code ${code}`}) before "Ready on":\n${log.slice(-20).join('\n')}`)),
    );
  });
  ready.catch(() => {});
  const timeout = sleep(90_000).then(() => {
    throw new Error(`wrangler dev not ready after 90 s:\n${log.slice(-20).join('\n')}`);
  });
  try {
    await Promise.race([ready, timeout]);
  } catch (error) {
    await stopDev(child);
    throw error;
  }
  const url = `http://127.0.0.1:${port}`;
  // Miniflare runs two workerd processes: wrangler's proxy (on --port) and the Worker itself
  // (on a random port, with the inspector). The Worker is the one started with --inspector-addr.
  let workerds: ProcInfo[] = [];
  for (let i = 0; i < 50 && workerds.length === 0; i++) {
    workerds = descendants(child.pid!).filter((p) => p.comm === 'workerd' || /\/workerd\s/.test(p.cmdline));
    if (!workerds.length) await sleep(100);
  }
  if (!workerds.length) {
    await stopDev(child);
    throw new Error('no workerd process under wrangler dev');
  }
  const worker =
    workerds.find((p) => p.cmdline.includes('--inspector-addr')) ??
    workerds.find((p) => !p.cmdline.includes(`entry=127.0.0.1:${port} `)) ??
    workerds[workerds.length - 1]!;
  const proxy = workerds.find((p) => p.pid !== worker.pid) ?? null;
  return { child, url, workerPid: worker.pid, proxyPid: proxy?.pid ?? null, log };
}

// ---------------------------------------------------------------------------------------------
// Requests

interface TensorAnswer {
  status: number;
  ms: number;
  body: {
    tensorBytes?: number;
    checksum?: string;
    wasmMemoryBytes?: number | null;
    error?: string;
    message?: string;
  };
}

async function post(url: string, body: Uint8Array<ArrayBuffer>): Promise<TensorAnswer> {
  const start = performance.now();
  const response = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  const text = await response.text();
  const ms = performance.now() - start;
  let parsed: TensorAnswer['body'];
  try {
    parsed = JSON.parse(text) as TensorAnswer['body'];
  } catch {
    parsed = { error: 'non_json', message: text.slice(0, 300) };
  }
  return { status: response.status, ms, body: parsed };
}

/** Like post, but a dropped connection (crashed workerd) becomes status 0. */
async function tryPost(url: string, body: Uint8Array<ArrayBuffer>): Promise<TensorAnswer> {
  try {
    return await post(url, body);
  } catch (error) {
    const cause = (error as { cause?: Error }).cause;
    return {
      status: 0,
      ms: NaN,
      body: { error: 'request_failed', message: `${(error as Error).message}${cause ? `: ${cause.message}` : ''}` },
    };
  }
}

async function expectTensor(url: string, body: Uint8Array<ArrayBuffer>): Promise<TensorAnswer> {
  const answer = await post(url, body);
  if (answer.status !== 200 || answer.body.tensorBytes !== 150_528) {
    throw new Error(`POST ${url} -> ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`);
  }
  return answer;
}

async function timeNoop(server: DevServer, image: TestImage, runs: number, what: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 1; i <= runs; i++) {
    const answer = await post(`${server.url}/noop`, image.bytes);
    if (answer.status !== 200) throw new Error(`/noop -> ${answer.status}`);
    samples.push(answer.ms);
    progress(what, i, runs);
  }
  return samples;
}

async function timeTensor(server: DevServer, image: TestImage, mode: ResizeMode, runs: number, what: string) {
  const samples: number[] = [];
  let last: TensorAnswer | undefined;
  for (let i = 1; i <= runs; i++) {
    last = await expectTensor(`${server.url}/tensor?mode=${mode}`, image.bytes);
    samples.push(last.ms);
    progress(what, i, runs);
  }
  return { samples, checksum: last?.body.checksum ?? null, wasmMemoryBytes: last?.body.wasmMemoryBytes ?? null };
}

// ---------------------------------------------------------------------------------------------
// Test images: mosaics of the fixture photos (real photo content at every size)

interface TestImage extends ImageSpec {
  bytes: Uint8Array<ArrayBuffer>;
  path: string;
}

/** Deterministic mild sensor-like noise, so big JPEGs compress like photos rather than smooth upscales. */
function addNoise(pixels: Buffer, amplitude: number) {
  let state = 0x9e3779b9;
  for (let i = 0; i < pixels.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const noise = ((state >>> 24) % (2 * amplitude + 1)) - amplitude;
    const v = pixels[i]! + noise;
    pixels[i] = v < 0 ? 0 : Math.min(v, 255);
  }
}

async function makeImage(spec: ImageSpec, dir: string, photos: string[]): Promise<TestImage> {
  // Tiles about 1000 px wide, 4:3, each a different photo cropped to fill.
  const cols = Math.max(1, Math.round(spec.width / 1000));
  const rows = Math.max(1, Math.round(spec.height / 750));
  const composites: { input: Buffer; left: number; top: number }[] = [];
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const left = Math.floor((c * spec.width) / cols);
      const top = Math.floor((r * spec.height) / rows);
      const w = Math.floor(((c + 1) * spec.width) / cols) - left;
      const h = Math.floor(((r + 1) * spec.height) / rows) - top;
      const photo = photos[(r * cols + c) % photos.length]!;
      const input = await sharp(photo)
        .rotate()
        .flatten({ background: '#ffffff' })
        .resize(w, h, { fit: 'cover' })
        .removeAlpha()
        .png()
        .toBuffer();
      composites.push({ input, left, top });
    }
  }
  const { data, info } = await sharp({ create: { width: spec.width, height: spec.height, channels: 3, background: '#808080' } })
    .composite(composites)
    .raw()
    .toBuffer({ resolveWithObject: true });
  addNoise(data, 6);
  const raw = sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } });
  const bytes = spec.format === 'jpeg' ? await raw.jpeg({ quality: 90 }).toBuffer() : await raw.png({ compressionLevel: 6 }).toBuffer();
  const path = join(dir, `${spec.id}.${spec.format === 'jpeg' ? 'jpg' : 'png'}`);
  writeFileSync(path, bytes);
  return { ...spec, bytes: new Uint8Array(bytes), path };
}

// ---------------------------------------------------------------------------------------------
// Result records

interface Timing {
  image: string;
  dims: string;
  megapixels: number;
  fileMB: number;
  path: 'workerd/photon' | 'node/sharp';
  mode: ResizeMode;
  runs: number;
  /** Median request time minus the /noop median for the same body (workerd); codec call (Node). */
  medianMs: number | null;
  rawMedianMs: number | null;
  noopMedianMs: number | null;
  minMs: number | null;
  maxMs: number | null;
  checksum: string | null;
}

interface MemoryRecord {
  image: string;
  dims: string;
  megapixels: number;
  path: 'workerd/photon' | 'node/sharp';
  where: 'fresh process' | 'shared process' | 'this Node process';
  /** RSS just before the image's first request (fresh: idle Worker). */
  baselineRssMB: number | null;
  /** VmHWM after the first request / after all the image's requests. */
  hwmAfterFirstMB: number | null;
  hwmAfterAllMB: number | null;
  /** hwmAfterAll - baselineRss: what this image's requests added at their peak. */
  peakGrowthMB: number | null;
  rssAfterMB: number | null;
  /** Shared process only: growth of the never-reset high-water mark (as if clear_refs were not used). */
  cumulativeHwmMB?: number | null;
  cumulativeHwmGrowthMB?: number | null;
  wasmMemoryMB?: number | null;
  /** workerd: WASM memory + one RGBA copy in JS + the body + the tensor (what the isolate holds at its peak). */
  isolateEstimateMB?: number | null;
  hwmReset: boolean;
}

interface LimitRecord {
  image: string;
  dims: string;
  megapixels: number;
  fileMB: number;
  outcome: 'ok' | 'error' | 'crash';
  statuses: number[];
  error: string | null;
  medianMs: number | null;
  firstRequestMs: number | null;
  baselineRssMB: number | null;
  peakHwmMB: number | null;
  peakGrowthMB: number | null;
  /** Growth of VmHWM over the idle RSS after the first (cold) request alone. */
  firstRequestGrowthMB: number | null;
  wasmMemoryMB: number | null;
  /** 4 bytes per pixel: one RGBA copy of the decoded image. */
  rgbaMB: number;
  isolateEstimateMB: number | null;
}

const dimsOf = (img: ImageSpec) => `${img.width}x${img.height}`;
/**
 * What the isolate itself holds at the decode's peak, from exact sizes: photon's WASM linear memory
 * (it never shrinks, so its size after the request is its peak; it includes the copied-in file and
 * photon's own RGBA buffers), plus the RGBA copy get_raw_pixels() makes in JS while the WASM side
 * is still allocated, plus the request body in JS, plus the tensor.
 */
const isolateEstimate = (img: TestImage, wasmBytes: number | null) =>
  wasmBytes == null ? null : round((wasmBytes + img.width * img.height * 4 + img.bytes.length + 150_528) / MB);
const mpOf = (img: ImageSpec) => round((img.width * img.height) / 1e6, 2)!;

// ---------------------------------------------------------------------------------------------
// Phases

/** The Node path in this process: median of RUNS codec calls, and this process's memory growth. */
async function benchSharp(images: TestImage[], timings: Timing[], memory: MemoryRecord[]) {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as (() => void) | undefined;
  const maxPixels = 100e6;
  const codec = createSharpCodec({ maxPixels });
  for (const image of images) {
    gc?.();
    await sleep(200);
    const before = readMem(process.pid);
    const reset = resetHwm(process.pid);
    const base = readMem(process.pid);
    let hwmFirst: number | null = null;
    for (const mode of MODES) {
      const samples: number[] = [];
      let checksum: string | null = null;
      // One untimed call first (per mode).
      for (let i = 0; i <= RUNS; i++) {
        const start = performance.now();
        const tensor = await codec.toTensor(image.bytes, probeImage(image.bytes, maxPixels), mode);
        const ms = performance.now() - start;
        checksum = tensorChecksum(tensor);
        if (hwmFirst === null) hwmFirst = readMem(process.pid)?.hwmKb ?? null;
        if (i > 0) {
          samples.push(ms);
          progress(`node/sharp ${image.label} ${mode}`, i, RUNS);
        }
      }
      timings.push({
        image: image.label,
        dims: dimsOf(image),
        megapixels: mpOf(image),
        fileMB: round(image.bytes.length / MB, 2)!,
        path: 'node/sharp',
        mode,
        runs: samples.length,
        medianMs: round(median(samples)),
        rawMedianMs: round(median(samples)),
        noopMedianMs: null,
        minMs: round(Math.min(...samples)),
        maxMs: round(Math.max(...samples)),
        checksum,
      });
    }
    const after = readMem(process.pid);
    const baseline = reset ? base : before;
    memory.push({
      image: image.label,
      dims: dimsOf(image),
      megapixels: mpOf(image),
      path: 'node/sharp',
      where: 'this Node process',
      baselineRssMB: mb(baseline?.rssKb),
      hwmAfterFirstMB: mb(hwmFirst),
      hwmAfterAllMB: mb(after?.hwmKb),
      peakGrowthMB: after && baseline ? mb(after.hwmKb - baseline.rssKb) : null,
      rssAfterMB: mb(after?.rssKb),
      hwmReset: reset,
    });
  }
}

/** Warm-up: a few small decodes in each mode, so JIT and WASM tier-up are done before timing. */
async function warmUp(server: DevServer, small: TestImage) {
  for (const mode of MODES) for (let i = 0; i < 3; i++) await expectTensor(`${server.url}/tensor?mode=${mode}`, small.bytes);
  for (let i = 0; i < 3; i++) await post(`${server.url}/noop`, small.bytes);
}

/** All images in one wrangler dev, smallest first: timings, and the high-water mark per image. */
async function benchWorkerdShared(images: TestImage[], timings: Timing[], memory: MemoryRecord[]) {
  say('starting wrangler dev (shared process for all images)...');
  const server = await startDev();
  try {
    say(`ready on ${server.url}; Worker workerd pid ${server.workerPid}, proxy workerd pid ${server.proxyPid ?? '?'}`);
    await warmUp(server, images[0]!);
    let cumulativeHwmKb = readMem(server.workerPid)?.hwmKb ?? 0;
    for (const image of images) {
      const noop = await timeNoop(server, image, RUNS, `workerd ${image.label} /noop`);
      const noopMedian = median(noop);
      const before = readMem(server.workerPid);
      if (!before) throw new Error('the Worker workerd process is gone');
      cumulativeHwmKb = Math.max(cumulativeHwmKb, before.hwmKb);
      const cumulativeBefore = cumulativeHwmKb;
      const reset = resetHwm(server.workerPid);
      const base = readMem(server.workerPid)!;
      let wasm: number | null = null;
      let hwmFirst: number | null = null;
      for (const mode of MODES) {
        // One untimed request per mode and image (its peak is the "first request" reading).
        await expectTensor(`${server.url}/tensor?mode=${mode}`, image.bytes);
        if (hwmFirst === null) hwmFirst = readMem(server.workerPid)?.hwmKb ?? null;
        const t = await timeTensor(server, image, mode, RUNS, `workerd ${image.label} ${mode}`);
        wasm = t.wasmMemoryBytes ?? wasm;
        const raw = median(t.samples);
        timings.push({
          image: image.label,
          dims: dimsOf(image),
          megapixels: mpOf(image),
          fileMB: round(image.bytes.length / MB, 2)!,
          path: 'workerd/photon',
          mode,
          runs: t.samples.length,
          medianMs: round(raw - noopMedian),
          rawMedianMs: round(raw),
          noopMedianMs: round(noopMedian),
          minMs: round(Math.min(...t.samples) - noopMedian),
          maxMs: round(Math.max(...t.samples) - noopMedian),
          checksum: t.checksum,
        });
      }
      const after = readMem(server.workerPid);
      if (!after) throw new Error('the Worker workerd process is gone');
      cumulativeHwmKb = Math.max(cumulativeHwmKb, after.hwmKb);
      const baseline = reset ? base : before;
      memory.push({
        image: image.label,
        dims: dimsOf(image),
        megapixels: mpOf(image),
        path: 'workerd/photon',
        where: 'shared process',
        baselineRssMB: mb(baseline.rssKb),
        hwmAfterFirstMB: mb(hwmFirst),
        hwmAfterAllMB: mb(after.hwmKb),
        peakGrowthMB: mb(after.hwmKb - baseline.rssKb),
        rssAfterMB: mb(after.rssKb),
        cumulativeHwmMB: mb(cumulativeHwmKb),
        cumulativeHwmGrowthMB: mb(cumulativeHwmKb - cumulativeBefore),
        wasmMemoryMB: wasm == null ? null : round(wasm / MB),
        isolateEstimateMB: isolateEstimate(image, wasm),
        hwmReset: reset,
      });
    }
    const proxy = server.proxyPid ? readMem(server.proxyPid) : null;
    if (proxy) say(`proxy workerd (not the Worker): VmHWM ${mb(proxy.hwmKb)} MB, VmRSS ${mb(proxy.rssKb)} MB`);
  } finally {
    await stopDev(server.child);
  }
}

/**
 * One image in a fresh wrangler dev: no warm-up (nothing else touches the heap), then `runs`
 * requests per mode. Returns the memory record, or the failure for the size sweep.
 */
async function freshRun(image: TestImage, modes: ResizeMode[], runs: number) {
  const server = await startDev();
  try {
    await sleep(300);
    const idle = readMem(server.workerPid);
    if (!idle) throw new Error('the Worker workerd process is gone');
    resetHwm(server.workerPid);
    const base = readMem(server.workerPid)!;
    const statuses: number[] = [];
    const times: number[] = [];
    let firstMs: number | null = null;
    let hwmFirst: number | null = null;
    let wasm: number | null = null;
    let error: string | null = null;
    let crashed = false;
    outer: for (const mode of modes) {
      for (let i = 1; i <= runs; i++) {
        const answer = await tryPost(`${server.url}/tensor?mode=${mode}`, image.bytes);
        statuses.push(answer.status);
        progress(`workerd fresh ${image.label} ${mode}`, i, runs);
        if (answer.status !== 200) {
          error = `${answer.status} ${answer.body.error ?? ''}: ${answer.body.message ?? ''}`.trim();
          crashed = answer.status === 0 || readMem(server.workerPid) === null;
          if (process.stdout.isTTY) process.stdout.write('\n');
          break outer;
        }
        if (firstMs === null) {
          firstMs = answer.ms;
          hwmFirst = readMem(server.workerPid)?.hwmKb ?? null;
        } else if (mode === 'squash') {
          times.push(answer.ms);
        }
        wasm = answer.body.wasmMemoryBytes ?? wasm;
      }
    }
    const after = readMem(server.workerPid);
    const hwmKb = after?.hwmKb ?? hwmFirst;
    return {
      idleRssKb: idle.rssKb,
      baseRssKb: base.rssKb,
      hwmFirstKb: hwmFirst,
      hwmAllKb: hwmKb,
      rssAfterKb: after?.rssKb ?? null,
      statuses,
      times,
      firstMs,
      wasm,
      error,
      crashed,
      log: server.log,
    };
  } finally {
    await stopDev(server.child);
  }
}

async function benchWorkerdFresh(images: TestImage[], memory: MemoryRecord[]) {
  for (const image of images) {
    say(`fresh wrangler dev for ${image.label}...`);
    const r = await freshRun(image, MODES, FRESH_RUNS);
    if (r.error) throw new Error(`${image.label} failed in a fresh process: ${r.error}`);
    memory.push({
      image: image.label,
      dims: dimsOf(image),
      megapixels: mpOf(image),
      path: 'workerd/photon',
      where: 'fresh process',
      baselineRssMB: mb(r.baseRssKb),
      hwmAfterFirstMB: mb(r.hwmFirstKb),
      hwmAfterAllMB: mb(r.hwmAllKb),
      peakGrowthMB: r.hwmAllKb == null ? null : mb(r.hwmAllKb - r.baseRssKb),
      rssAfterMB: mb(r.rssAfterKb),
      wasmMemoryMB: r.wasm == null ? null : round(r.wasm / MB),
      isolateEstimateMB: isolateEstimate(image, r.wasm),
      hwmReset: true,
    });
  }
}

async function benchLimit(images: TestImage[], limit: LimitRecord[]) {
  for (const image of images) {
    say(`decode-size sweep: ${image.label} (${dimsOf(image)}, ${(image.bytes.length / MB).toFixed(1)} MB) in a fresh wrangler dev...`);
    const r = await freshRun(image, ['squash'], LIMIT_RUNS);
    const outcome = r.crashed ? 'crash' : r.error ? 'error' : 'ok';
    const growth = r.hwmAllKb == null ? null : mb(r.hwmAllKb - r.baseRssKb);
    limit.push({
      image: image.label,
      dims: dimsOf(image),
      megapixels: mpOf(image),
      fileMB: round(image.bytes.length / MB, 2)!,
      outcome,
      statuses: r.statuses,
      error: r.error,
      medianMs: r.times.length ? round(median(r.times)) : null,
      firstRequestMs: r.firstMs == null ? null : round(r.firstMs),
      baselineRssMB: mb(r.baseRssKb),
      peakHwmMB: mb(r.hwmAllKb),
      peakGrowthMB: growth,
      firstRequestGrowthMB: r.hwmFirstKb == null ? null : mb(r.hwmFirstKb - r.baseRssKb),
      wasmMemoryMB: r.wasm == null ? null : round(r.wasm / MB),
      rgbaMB: round((image.width * image.height * 4) / MB)!,
      isolateEstimateMB: isolateEstimate(image, r.wasm),
    });
    say(
      `  -> ${outcome}${r.error ? ` (${r.error})` : ''}; RSS peak growth ${growth ?? '?'} MB, WASM memory ${r.wasm == null ? '?' : (r.wasm / MB).toFixed(1)} MB, isolate estimate ${isolateEstimate(image, r.wasm) ?? '?'} MB`,
    );
    if (outcome !== 'ok') say(`  wrangler log tail:\n${r.log.slice(-10).join('\n')}`);
  }
}

/** Least squares y = a + b x. */
function fit(points: [number, number][]) {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const b = sxx ? sxy / sxx : 0;
  return { a: my - b * mx, b };
}

// ---------------------------------------------------------------------------------------------
// Main

/** The code under test: hashed at start and end, since each wrangler dev start bundles the tree as it is then. */
const SOURCES = [
  'edge/cloudflare-workers/photon-codec.ts',
  'edge/image/resample.ts',
  'edge/image/probe.ts',
  'edge/image/orientation.ts',
  'edge/image/codec.ts',
  'edge/node/sharp-codec.ts',
  'edge/errors.ts',
  'shared/tensor.ts',
];
function sourceHashes(): Record<string, string> {
  return Object.fromEntries(
    SOURCES.map((f) => {
      try {
        return [
          f,
          createHash('sha256')
            .update(readFileSync(join(REPO_ROOT, f)))
            .digest('hex')
            .slice(0, 12),
        ];
      } catch {
        return [f, 'missing'];
      }
    }),
  );
}

function machineLine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown CPU';
  const version = (pkg: string) => {
    try {
      return (JSON.parse(readFileSync(join(REPO_ROOT, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return 'unknown';
    }
  };
  const workerdPkg = readdirSync(join(REPO_ROOT, 'node_modules/@cloudflare')).find((d) => d.startsWith('workerd-'));
  const info = {
    cpu: model,
    cores: cpus().length,
    node: process.version,
    wrangler: version('wrangler'),
    workerd: workerdPkg ? version(`@cloudflare/${workerdPkg}`) : version('workerd'),
    photon: version('@cf-wasm/photon'),
    sharp: sharp.versions.sharp,
    libvips: sharp.versions.vips,
  };
  const line = `Machine: ${info.cpu}, ${info.cores} cores; Node ${info.node}; wrangler ${info.wrangler}, workerd ${info.workerd}; @cf-wasm/photon ${info.photon}; sharp ${info.sharp} (libvips ${info.libvips})`;
  return { info, line };
}

let tempDir: string | undefined;
/** wrangler dev keeps its bundle and local state next to the config; removed when this run made it. */
const WRANGLER_STATE = join(HERE, '.wrangler');
const removeWranglerState = !existsSync(WRANGLER_STATE);
let cleanedUp = false;
function cleanupSync() {
  if (cleanedUp) return;
  cleanedUp = true;
  killAllSync();
  if (tempDir) rmSync(tempDir, { recursive: true, force: true });
  if (removeWranglerState && !childMode) rmSync(WRANGLER_STATE, { recursive: true, force: true });
}
process.on('exit', cleanupSync);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  // `on`, not `once`: Ctrl-C reaches this process twice (from the terminal and relayed by tsx),
  // and a second, unhandled SIGINT would kill it before the cleanup is done.
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    console.error(`\n[bench] ${signal}: stopping wrangler dev and removing temp files`);
    void (async () => {
      await Promise.all([...running].map((c) => stopDev(c, 2000)));
      cleanupSync();
      process.exit(130);
    })();
  });
}

async function main() {
  const started = performance.now();
  const machine = machineLine();
  console.log(machine.line);
  const sourcesAtStart = sourceHashes();
  if (!existsSync(FIXTURES)) throw new Error(`fixture photos not found at ${FIXTURES}`);
  const photos = readdirSync(FIXTURES)
    .filter((f) => /\.(jpe?g|png)$/i.test(f))
    .map((f) => join(FIXTURES, f));
  tempDir = mkdtempSync(join(tmpdir(), 'bench-workers-codec-'));

  say(`generating test images in ${tempDir} (mosaics of ${photos.length} fixture photos)...`);
  const byId = new Map<string, TestImage>();
  for (const spec of [...MAIN_IMAGES, ...LIMIT_IMAGES]) {
    if (byId.has(spec.id)) continue;
    const image = await makeImage(spec, tempDir, photos);
    byId.set(spec.id, image);
    say(`  ${spec.label}: ${dimsOf(spec)}, ${(image.bytes.length / MB).toFixed(2)} MB`);
  }
  const main = MAIN_IMAGES.map((s) => byId.get(s.id)!);
  const sweep = LIMIT_IMAGES.map((s) => byId.get(s.id)!);

  const timings: Timing[] = [];
  const memory: MemoryRecord[] = [];
  const limit: LimitRecord[] = [];

  say(`Node path (sharp) in this process, ${RUNS} runs per image and mode...`);
  await benchSharp(main, timings, memory);
  await sharpFresh(main, memory);
  await benchWorkerdShared(main, timings, memory);
  await benchWorkerdFresh(main, memory);
  await benchLimit(sweep, limit);
  const analysis = analyse(limit);
  const elapsedS = (performance.now() - started) / 1000;
  const sourcesAtEnd = sourceHashes();
  const changedSources = SOURCES.filter((f) => sourcesAtStart[f] !== sourcesAtEnd[f]);
  if (changedSources.length)
    say(
      `WARNING: code under test changed during the run (${changedSources.join(', ')}): later wrangler dev starts measured the new version`,
    );

  let md = renderMarkdown(machine.line, main, timings, memory, limit, analysis, elapsedS);
  if (changedSources.length) md += `\n**Warning**: code under test changed during the run: ${changedSources.join(', ')}.\n`;
  console.log(`\n${md}`);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = {
    machine: machine.info,
    settings: { runs: RUNS, freshRuns: FRESH_RUNS, limitRuns: LIMIT_RUNS, modes: MODES },
    images: [...byId.values()].map((i) => ({
      id: i.id,
      label: i.label,
      dims: dimsOf(i),
      megapixels: mpOf(i),
      format: i.format,
      bytes: i.bytes.length,
    })),
    timings,
    memory,
    limit,
    analysis,
    sources: { atStart: sourcesAtStart, changedDuringRun: changedSources },
    elapsedSeconds: round(elapsedS),
    date: new Date().toISOString(),
  };
  writeFileSync(join(RESULTS_DIR, 'workers-codec.json'), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(RESULTS_DIR, 'workers-codec.md'), md);
  say(`wrote bench/results/workers-codec.json and bench/results/workers-codec.md (${elapsedS.toFixed(0)} s)`);
}

type Analysis = ReturnType<typeof analyse>;

/**
 * Which sizes fit a 128 MB isolate. Two linear fits over the sweep (fresh process each):
 * - isolate estimate (exact WASM memory + JS copies): what V8 accounts for the isolate; the basis
 *   of the recommendation;
 * - RSS growth of one cold request: an upper bound (it also holds WASM compilation, workerd's own
 *   buffers and not yet collected garbage, which the isolate limit does not see).
 */
function analyse(limit: LimitRecord[]) {
  const ok = limit.filter((l) => l.outcome === 'ok');
  const model = (points: [number, number][]) => {
    if (points.length < 2) return null;
    const { a, b } = fit(points);
    const under = (budget: number) => round((budget - a) / b, 2);
    return {
      interceptMB: round(a, 2),
      mbPerMegapixel: round(b, 2),
      bytesPerPixel: round((b * MB) / 1e6, 2),
      points,
      largestMpUnder128MB: under(ISOLATE_LIMIT_MB),
      largestMpUnderBudget: under(ISOLATE_LIMIT_MB - HEADROOM_MB),
      predictedMB: Object.fromEntries([4, 6, 8, 12, 16, 24].map((mp) => [`${mp}MP`, round(a + b * mp)])),
    };
  };
  const isolate = model(ok.filter((l) => l.isolateEstimateMB != null).map((l) => [l.megapixels, l.isolateEstimateMB!]));
  const wasm = model(ok.filter((l) => l.wasmMemoryMB != null).map((l) => [l.megapixels, l.wasmMemoryMB!]));
  const rss = model(ok.filter((l) => l.firstRequestGrowthMB != null).map((l) => [l.megapixels, l.firstRequestGrowthMB!]));
  // The same estimate without the file (counted twice: JS body + WASM copy), then with the largest
  // body MAX_BODY_BYTES allows: a 10 MB PNG or high-quality JPEG at the same pixel count.
  const pixelsOnly = model(ok.filter((l) => l.isolateEstimateMB != null).map((l) => [l.megapixels, l.isolateEstimateMB! - 2 * l.fileMB]));
  const budgetMB = ISOLATE_LIMIT_MB - HEADROOM_MB;
  const worstBodyLargestMp = pixelsOnly
    ? round((budgetMB - 2 * MAX_BODY_MB - pixelsOnly.interceptMB!) / pixelsOnly.mbPerMegapixel!, 2)
    : null;
  const largest = worstBodyLargestMp ?? isolate?.largestMpUnderBudget ?? null;
  const recommendedMaxPixels = largest == null ? null : Math.max(1, Math.floor(largest)) * 1_000_000;
  const current = MAX_PIXELS_NOW / 1e6;
  return {
    isolateLimitMB: ISOLATE_LIMIT_MB,
    headroomMB: HEADROOM_MB,
    budgetMB,
    isolateEstimateModel: isolate,
    wasmMemoryModel: wasm,
    rssFirstRequestModel: rss,
    pixelsOnlyModel: pixelsOnly,
    maxBodyMB: MAX_BODY_MB,
    /** Largest MP whose estimate stays under the budget even with a MAX_BODY_BYTES body. */
    worstBodyLargestMp,
    recommendedMaxPixels,
    currentMaxPixels: MAX_PIXELS_NOW,
    currentPredictedIsolateMB: isolate ? round(isolate.interceptMB! + isolate.mbPerMegapixel! * current) : null,
    currentFitsBudget: isolate ? isolate.interceptMB! + isolate.mbPerMegapixel! * current <= budgetMB : null,
  };
}

function renderMarkdown(
  machine: string,
  images: TestImage[],
  timings: Timing[],
  memory: MemoryRecord[],
  limit: LimitRecord[],
  analysis: Analysis,
  elapsedS: number,
): string {
  const fmt = (x: number | null | undefined) => (x == null ? '-' : String(x));
  const lines: string[] = [machine, ''];
  lines.push(
    `Workers image path (probe + @cf-wasm/photon decode + TS resize) inside workerd via \`wrangler dev\`, next to the Node path (sharp); ` +
      `${RUNS} sequential runs per image and mode; ${new Date().toISOString().slice(0, 10)}; whole run ${elapsedS.toFixed(0)} s.`,
  );
  lines.push('');
  lines.push('| image | dims | path | mode | median ms | peak memory MB (RSS growth, fresh) | isolate estimate MB |');
  lines.push('|---|---|---|---|---:|---:|---:|');
  for (const image of images) {
    for (const path of ['workerd/photon', 'node/sharp'] as const) {
      const mem =
        memory.find((m) => m.image === image.label && m.path === path && m.where === 'fresh process') ??
        memory.find((m) => m.image === image.label && m.path === path);
      for (const t of timings.filter((x) => x.image === image.label && x.path === path)) {
        const peak = mem ? `${fmt(mem.peakGrowthMB)} (HWM ${fmt(mem.hwmAfterAllMB)})` : '-';
        lines.push(
          `| ${image.label} (${(image.bytes.length / MB).toFixed(1)} MB file) | ${t.dims} | ${path} | ${t.mode} | ${fmt(t.medianMs)} | ${peak} | ${fmt(mem?.isolateEstimateMB)} |`,
        );
      }
    }
  }
  lines.push('');
  lines.push(
    '- **median ms**: workerd = client-side request median minus the `/noop` median for the same body (noop medians below); node = the `probeImage` + `toTensor` call in this process.',
  );
  lines.push(
    '- **peak memory MB**: growth of the process high-water mark (VmHWM) over its RSS just before the image, absolute VmHWM in brackets. ' +
      `workerd: the Worker's own workerd process (not wrangler's proxy workerd), in a fresh \`wrangler dev\` per image, ${FRESH_RUNS} runs per mode; ` +
      'it includes WASM compilation, workerd buffers and uncollected garbage, so it over-states what the isolate limit counts. ' +
      `node: a fresh Node process per image (${FRESH_RUNS} calls per mode; libvips threads and cache included).`,
  );
  lines.push(
    '- **isolate estimate MB**: photon WASM linear memory after the request (it never shrinks, so it is its peak) + one RGBA copy in JS (4 B/px, made by `get_raw_pixels` while the WASM side is still allocated) + the body + the tensor: what the 128 MB isolate limit counts at the decode peak, baseline heap excluded.',
  );
  lines.push('');
  lines.push('### Node (sharp) memory detail (MB)');
  lines.push('');
  lines.push('| image | where | RSS before | HWM after 1st call | HWM after all | peak growth | RSS after |');
  lines.push('|---|---|---:|---:|---:|---:|---:|');
  for (const m of memory.filter((x) => x.path === 'node/sharp')) {
    lines.push(
      `| ${m.image} | ${m.where} | ${fmt(m.baselineRssMB)} | ${fmt(m.hwmAfterFirstMB)} | ${fmt(m.hwmAfterAllMB)} | ${fmt(m.peakGrowthMB)} | ${fmt(m.rssAfterMB)} |`,
    );
  }
  lines.push('');
  lines.push(
    `"this Node process" (the timed runs) under-states the peak: freed memory from generating the images is reused without raising RSS. "fresh process": one child Node process per image, ${FRESH_RUNS} calls per mode.`,
  );
  lines.push('');
  lines.push('### workerd memory detail (MB)');
  lines.push('');
  lines.push(
    '| image | where | RSS before | HWM after 1st req | HWM after all | peak growth | RSS after | cumulative HWM (growth) | WASM memory | isolate estimate |',
  );
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const m of memory.filter((x) => x.path === 'workerd/photon')) {
    const cumulative = m.cumulativeHwmMB == null ? '-' : `${m.cumulativeHwmMB} (+${fmt(m.cumulativeHwmGrowthMB)})`;
    lines.push(
      `| ${m.image} | ${m.where} | ${fmt(m.baselineRssMB)} | ${fmt(m.hwmAfterFirstMB)} | ${fmt(m.hwmAfterAllMB)} | ${fmt(m.peakGrowthMB)} | ${fmt(m.rssAfterMB)} | ${cumulative} | ${fmt(m.wasmMemoryMB)} | ${fmt(m.isolateEstimateMB)} |`,
    );
  }
  lines.push('');
  lines.push(
    'Shared process: one `wrangler dev` for all images, smallest first, after a warm-up; "cumulative HWM" is the never-reset high-water mark ' +
      '(growth = what this image added to it); the other columns are per image (VmHWM reset through /proc/<pid>/clear_refs before each image).',
  );
  lines.push('');
  lines.push(
    '`/noop` medians (transport baseline, subtracted above): ' +
      timings
        .filter((t) => t.path === 'workerd/photon' && t.mode === MODES[0])
        .map((t) => `${t.image} ${fmt(t.noopMedianMs)} ms`)
        .join(', '),
  );
  lines.push('');
  lines.push(`### Largest JPEG the photon path decodes (fresh \`wrangler dev\` each, squash, ${LIMIT_RUNS} runs)`);
  lines.push('');
  lines.push(
    '| image | dims | file MB | outcome | 1st (cold) ms | median ms (raw, warm) | RSS growth 1st req | RSS growth all | WASM memory | RGBA copy | isolate estimate | fits 128 MB | fits 128 - headroom |',
  );
  lines.push('|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const l of limit) {
    const est = l.isolateEstimateMB;
    const yes = (budget: number) => (est == null ? '-' : est <= budget ? 'yes' : 'no');
    lines.push(
      `| ${l.image} | ${l.dims} | ${l.fileMB} | ${l.outcome}${l.error ? `: ${l.error.slice(0, 80)}` : ''} | ${fmt(l.firstRequestMs)} | ${fmt(l.medianMs)} | ${fmt(l.firstRequestGrowthMB)} | ${fmt(l.peakGrowthMB)} | ${fmt(l.wasmMemoryMB)} | ${l.rgbaMB} | ${fmt(est)} | ${yes(ISOLATE_LIMIT_MB)} | ${yes(analysis.budgetMB)} |`,
    );
  }
  lines.push('');
  const describe = (name: string, m: Analysis['isolateEstimateModel']) =>
    m
      ? `- ${name}: ${m.interceptMB} MB + ${m.mbPerMegapixel} MB/MP (${m.bytesPerPixel} B/px); 128 MB reached at ${m.largestMpUnder128MB} MP, ${analysis.budgetMB} MB at ${m.largestMpUnderBudget} MP; ` +
        `predicted ${Object.entries(m.predictedMB)
          .map(([k, v]) => `${k} ${fmt(v)}`)
          .join(', ')} MB.`
      : `- ${name}: not enough points.`;
  lines.push('Linear fits over the sweep:');
  lines.push('');
  lines.push(describe('isolate estimate (basis of the recommendation)', analysis.isolateEstimateModel));
  lines.push(describe('photon WASM memory alone', analysis.wasmMemoryModel));
  lines.push(describe('RSS growth of one cold request (upper bound)', analysis.rssFirstRequestModel));
  lines.push(describe('isolate estimate without the file (pixels only)', analysis.pixelsOnlyModel));
  lines.push(
    `- with the largest body MAX_BODY_BYTES allows (${MAX_BODY_MB} MB, held twice): ${fmt(analysis.worstBodyLargestMp)} MP fit the ${analysis.budgetMB} MB budget.`,
  );
  lines.push('');
  lines.push(
    `Budget: ${ISOLATE_LIMIT_MB} MB isolate limit - ${HEADROOM_MB} MB headroom (isolate baseline heap and compiled code, GC slack, WASM allocator fragmentation, bodies of concurrent requests) = ${analysis.budgetMB} MB. ` +
      `Suggested MAX_PIXELS (whole MP under the budget with a worst-case body): ${analysis.recommendedMaxPixels?.toLocaleString('en-US') ?? '-'}; the current ${MAX_PIXELS_NOW.toLocaleString('en-US')} is predicted at ${fmt(analysis.currentPredictedIsolateMB)} MB ` +
      `(${analysis.currentFitsBudget ? 'fits' : 'does NOT fit'}).`,
  );
  lines.push(
    '`wrangler dev` does not enforce the 128 MB isolate limit (every sweep size above that decoded was far beyond it), so the sizes are judged from the measured memory, not from local failures.',
  );
  lines.push('');
  return lines.join('\n');
}

/**
 * `run.ts --sharp-child <image> <runs>`: the Node path for one image in a fresh process, so its
 * peak is not hidden by memory this process already holds (image generation leaves hundreds of MB
 * in the allocator). Prints one JSON line.
 */
async function sharpChild(imagePath: string, runs: number) {
  const maxPixels = 100e6;
  const codec = createSharpCodec({ maxPixels });
  await sleep(100);
  resetHwm(process.pid);
  const base = readMem(process.pid)!;
  // Read after the baseline: in workerd the body is part of the request's memory too.
  const bytes = new Uint8Array(readFileSync(imagePath));
  let first: MemStatus | null = null;
  for (const mode of MODES) {
    for (let i = 0; i < runs; i++) {
      await codec.toTensor(bytes, probeImage(bytes, maxPixels), mode);
      first ??= readMem(process.pid);
    }
  }
  const after = readMem(process.pid)!;
  console.log(JSON.stringify({ baseRssKb: base.rssKb, hwmFirstKb: first?.hwmKb ?? null, hwmAllKb: after.hwmKb, rssAfterKb: after.rssKb }));
}

async function sharpFresh(images: TestImage[], memory: MemoryRecord[]) {
  for (const image of images) {
    say(`node/sharp ${image.label} in a fresh Node process (${FRESH_RUNS} runs per mode)...`);
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', fileURLToPath(import.meta.url), '--sharp-child', image.path, String(FRESH_RUNS)],
      {
        cwd: REPO_ROOT,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const last = out.trim().split('\n').pop() ?? '';
    if (code !== 0 || !last.startsWith('{')) throw new Error(`sharp child for ${image.label} failed (exit ${code}): ${out.slice(-300)}`);
    const r = JSON.parse(last) as { baseRssKb: number; hwmFirstKb: number | null; hwmAllKb: number; rssAfterKb: number };
    memory.push({
      image: image.label,
      dims: dimsOf(image),
      megapixels: mpOf(image),
      path: 'node/sharp',
      where: 'fresh process',
      baselineRssMB: mb(r.baseRssKb),
      hwmAfterFirstMB: mb(r.hwmFirstKb),
      hwmAfterAllMB: mb(r.hwmAllKb),
      peakGrowthMB: mb(r.hwmAllKb - r.baseRssKb),
      rssAfterMB: mb(r.rssAfterKb),
      hwmReset: true,
    });
  }
}

(childMode ? sharpChild(process.argv[3]!, Number(process.argv[4] ?? 5)) : main()).then(
  () => {
    cleanupSync();
    process.exit(0);
  },
  async (error: unknown) => {
    if (stopping) return; // the signal handler is shutting down
    console.error(`\n[bench] failed: ${(error as Error).stack ?? error}`);
    await Promise.all([...running].map((c) => stopDev(c, 2000)));
    cleanupSync();
    process.exit(1);
  },
);
