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
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import sharp from 'sharp';
import type { ResizeMode } from '../../edge/image/codec.ts';
import { probeImage } from '../../edge/image/probe.ts';
import { createSharpCodec } from '../../edge/node/sharp-codec.ts';
import { checksum as tensorChecksum } from './checksum.ts';
import { median } from '../stats.ts';
import {
  type DevServer,
  expectTensor,
  killAllSync,
  post,
  running,
  startDev,
  stopDev,
  beginStopping,
  isStopping,
  timeNoop,
  timeTensor,
  tryPost,
} from './dev-server.ts';
import { mb, progress, round, say, sleep } from './helpers.ts';
import { type ImageSpec, type TestImage, makeImage } from './images.ts';
import { type MemStatus, readMem, resetHwm } from './proc.ts';
import { type LimitRecord, type MemoryRecord, type Timing, dimsOf, isolateEstimate, mpOf } from './records.ts';
import { analyse, renderMarkdown } from './report.ts';
import { FIXTURES, FRESH_RUNS, HERE, LIMIT_RUNS, MB, MODES, REPO_ROOT, RESULTS_DIR, RUNS } from './settings.ts';

/** Set when this file runs as the fresh Node process of one sharp measurement (see sharpChild). */
const childMode = process.argv[2] === '--sharp-child';

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
    if (!beginStopping()) return;
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
    if (isStopping()) return; // the signal handler is shutting down
    console.error(`\n[bench] failed: ${(error as Error).stack ?? error}`);
    await Promise.all([...running].map((c) => stopDev(c, 2000)));
    cleanupSync();
    process.exit(1);
  },
);
