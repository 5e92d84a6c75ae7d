/**
 * Fuzz the edge's image pipeline (probeImage, then codec.toTensor: what the edge runs on every
 * upload) with mutated photos, in-process, on the sharp codec (Node), the photon codec (Workers),
 * or both. Each case takes a seed photo, applies 1-3 seeded mutations (bit flips, interesting byte
 * values, chunk deletion or duplication, truncation, header field tweaks: dimensions, bit depths,
 * segment and chunk lengths) and requires:
 *
 * - no crash: a thrown error must be an ApiError with status 400, 413 or 415, and a success must
 *   be a whole tensor;
 * - no hang: each case under `--budget-ms` (1000) per codec; max and p99 are reported;
 * - bounded memory: RSS under `--max-rss-mb`, and both codecs still decode a good photo every
 *   500 cases (photon traps on corrupt input and must stay usable).
 *
 *   npx tsx dev/fuzz.ts --cases 10000 --seed 1 [--codec sharp|photon|both] [--json]
 *   npx tsx dev/fuzz.ts --seed 1 --only 1234 --codec photon     # replay one case
 *
 * Case i depends only on (seed, i), so `--only i` replays it. Failures print the seed, the case
 * index and the mutations, save the input to a temp file, and make the exit code 1.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ApiError } from '../edge/errors.ts';
import type { ImageCodec, ResizeMode } from '../edge/image/codec.ts';
import { probeImage } from '../edge/image/probe.ts';
import { createSharpCodec } from '../edge/node/sharp-codec.ts';
import { createPhotonCodec, createPhoton } from '../edge/cloudflare-workers/photon-codec.ts';
import { TENSOR_BYTES } from '../shared/tensor.ts';
import { withTimeout } from '../shared/timeout.ts';
import { mulberry32 } from './random.ts';

export const FIXTURES_DIR = new URL('../../shared/fixtures/images/', import.meta.url).pathname;
export type CodecName = 'sharp' | 'photon';

/**
 * MAX_PIXELS of the runtime each codec serves: the Node edge's default (edge/config.ts), and the
 * Worker's, read from wrangler.toml's [vars].
 */
export async function defaultMaxPixels(): Promise<Record<CodecName, number>> {
  const toml = await readFile(new URL('../wrangler.toml', import.meta.url), 'utf8').catch(() => '');
  const workers = Number(/^MAX_PIXELS\s*=\s*"(\d+)"/m.exec(toml)?.[1] ?? 5_000_000);
  return { sharp: 40_000_000, photon: workers };
}

// ------------------------------------------------------------------------------------ PRNG

/** The PRNG of case `index` under `seed`: every case is reproducible on its own. */
export const caseRandom = (seed: number, index: number) =>
  mulberry32(Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(index + 1, 0xc2b2ae35));

type Random = () => number;
const int = (random: Random, n: number) => Math.floor(random() * n);
const pick = <T>(random: Random, items: readonly T[]): T => items[int(random, items.length)]!;

// ------------------------------------------------------------------------------- mutations

const INTERESTING_8 = [0x00, 0xff, 0x7f, 0x80, 0x01, 0xfe] as const;
const INTERESTING_16 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x3fff, 0x4000, 0x7fff, 0x8000, 0xfffe, 0xffff] as const;
const INTERESTING_32 = [0, 1, 0xff, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff] as const;

/** A position, half the time within the first KiB (where headers and segment tables live). */
const position = (random: Random, length: number) => (random() < 0.5 ? int(random, Math.min(length, 1024)) : int(random, length));

interface Mutation {
  name: string;
  weight: number;
  apply(bytes: Buffer, random: Random): { bytes: Buffer; what: string };
}

const crcTable = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = crcTable[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const formatOf = (b: Buffer) =>
  b[0] === 0xff && b[1] === 0xd8
    ? 'jpeg'
    : b[0] === 0x89 && b[1] === 0x50
      ? 'png'
      : b.toString('latin1', 0, 3) === 'GIF'
        ? 'gif'
        : b.toString('latin1', 8, 12) === 'WEBP'
          ? 'webp'
          : 'other';

/** Header fields worth lying about, per format: [offset, size in bytes, endianness, label]. */
function headerFields(b: Buffer): [at: number, size: 1 | 2 | 3 | 4, little: boolean, label: string][] {
  const fields: [number, 1 | 2 | 3 | 4, boolean, string][] = [];
  const format = formatOf(b);
  if (format === 'jpeg') {
    for (let at = 2; at + 4 <= b.length && b[at] === 0xff; ) {
      const marker = b[at + 1]!;
      const length = b.readUInt16BE(at + 2);
      const name = `0xFF${marker.toString(16).toUpperCase()}`;
      fields.push([at + 2, 2, false, `${name} segment length`]);
      if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
        fields.push(
          [at + 4, 1, false, 'SOF precision'],
          [at + 5, 2, false, 'SOF height'],
          [at + 7, 2, false, 'SOF width'],
          [at + 9, 1, false, 'SOF components'],
        );
        if (at + 11 < b.length) fields.push([at + 11, 1, false, 'SOF sampling factors'], [at + 12, 1, false, 'SOF quant table']);
      }
      if (marker === 0xda) {
        fields.push([at + 4, 1, false, 'SOS components']);
        break;
      }
      if (marker === 0xdd) fields.push([at + 4, 2, false, 'restart interval']);
      at += 2 + length;
    }
  } else if (format === 'png') {
    fields.push(
      [16, 4, false, 'IHDR width'],
      [20, 4, false, 'IHDR height'],
      [24, 1, false, 'IHDR bit depth'],
      [25, 1, false, 'IHDR colour type'],
      [26, 1, false, 'IHDR compression'],
      [28, 1, false, 'IHDR interlace'],
    );
    for (let at = 8; at + 12 <= b.length; ) {
      const length = b.readUInt32BE(at);
      fields.push([at, 4, false, `${b.toString('latin1', at + 4, at + 8)} chunk length`]);
      if (at + 12 + length > b.length) break;
      at += 12 + length;
    }
  } else if (format === 'gif') {
    fields.push([6, 2, true, 'screen width'], [8, 2, true, 'screen height'], [10, 1, true, 'screen flags']);
    const descriptor = b.indexOf(0x2c, 13);
    if (descriptor > 0 && descriptor + 11 <= b.length) {
      fields.push(
        [descriptor + 1, 2, true, 'frame left'],
        [descriptor + 3, 2, true, 'frame top'],
        [descriptor + 5, 2, true, 'frame width'],
        [descriptor + 7, 2, true, 'frame height'],
        [descriptor + 9, 1, true, 'frame flags'],
        [descriptor + 10, 1, true, 'LZW code size'],
      );
    }
  } else if (format === 'webp') {
    fields.push([4, 4, true, 'RIFF size']);
    for (let at = 12; at + 8 <= b.length; ) {
      const type = b.toString('latin1', at, at + 4);
      const size = b.readUInt32LE(at + 4);
      fields.push([at + 4, 4, true, `${type} chunk size`]);
      if (type === 'VP8 ') fields.push([at + 14, 2, true, 'VP8 width'], [at + 16, 2, true, 'VP8 height']);
      if (type === 'VP8L') fields.push([at + 9, 4, true, 'VP8L size bits']);
      if (type === 'VP8X')
        fields.push([at + 8, 1, true, 'VP8X flags'], [at + 12, 3, true, 'VP8X canvas width'], [at + 15, 3, true, 'VP8X canvas height']);
      at += 8 + size + (size & 1);
    }
  }
  return fields.filter(([at, size]) => at + size <= b.length);
}

function writeField(b: Buffer, at: number, size: 1 | 2 | 3 | 4, little: boolean, value: number) {
  if (size === 1) b[at] = value & 0xff;
  else if (size === 2) little ? b.writeUInt16LE(value & 0xffff, at) : b.writeUInt16BE(value & 0xffff, at);
  else if (size === 3) b.writeUIntLE(value & 0xffffff, at, 3);
  else little ? b.writeUInt32LE(value >>> 0, at) : b.writeUInt32BE(value >>> 0, at);
}

function readField(b: Buffer, at: number, size: 1 | 2 | 3 | 4, little: boolean): number {
  if (size === 1) return b[at]!;
  if (size === 2) return little ? b.readUInt16LE(at) : b.readUInt16BE(at);
  if (size === 3) return b.readUIntLE(at, 3);
  return little ? b.readUInt32LE(at) : b.readUInt32BE(at);
}

/** After an IHDR edit, sometimes fix its CRC so that only the lie remains. */
function maybeFixPngCrc(b: Buffer, random: Random): string {
  if (formatOf(b) !== 'png' || b.length < 33 || random() < 0.5) return '';
  b.writeUInt32BE(crc32(b.subarray(12, 29)), 29);
  return ' (IHDR CRC fixed)';
}

export const MUTATIONS: Mutation[] = [
  {
    name: 'bit flips',
    weight: 3,
    apply(bytes, random) {
      const out = Buffer.from(bytes);
      const at = Array.from({ length: 1 + int(random, 8) }, () => position(random, out.length));
      for (const p of at) out[p]! ^= 1 << int(random, 8);
      return { bytes: out, what: `flip bits @ ${at.join(',')}` };
    },
  },
  {
    name: 'interesting bytes',
    weight: 3,
    apply(bytes, random) {
      const out = Buffer.from(bytes);
      const value = pick(random, INTERESTING_8);
      const count = 1 + int(random, 16);
      const at = position(random, out.length);
      const run = random() < 0.5; // a run of bytes, or scattered ones
      const spots = run ? [at] : Array.from({ length: count }, () => position(random, out.length));
      if (run) out.fill(value, at, Math.min(out.length, at + count));
      else for (const p of spots) out[p] = value;
      return {
        bytes: out,
        what: run ? `set ${count} bytes from ${at} to 0x${value.toString(16)}` : `set 0x${value.toString(16)} @ ${spots.join(',')}`,
      };
    },
  },
  {
    name: 'delete chunk',
    weight: 2,
    apply(bytes, random) {
      const from = position(random, bytes.length);
      const length = 1 + int(random, Math.min(4096, Math.max(1, bytes.length >> 3)));
      const to = Math.min(bytes.length, from + length);
      return { bytes: Buffer.concat([bytes.subarray(0, from), bytes.subarray(to)]), what: `delete ${from}..${to}` };
    },
  },
  {
    name: 'duplicate chunk',
    weight: 2,
    apply(bytes, random) {
      const from = position(random, bytes.length);
      const to = Math.min(bytes.length, from + 1 + int(random, Math.min(65536, Math.max(1, bytes.length >> 3))));
      const at = random() < 0.5 ? to : position(random, bytes.length);
      return {
        bytes: Buffer.concat([bytes.subarray(0, at), bytes.subarray(from, to), bytes.subarray(at)]),
        what: `copy ${from}..${to} to ${at}`,
      };
    },
  },
  {
    name: 'truncate',
    weight: 2,
    apply(bytes, random) {
      // Near the start (headers), anywhere, or just short of the end.
      const r = random();
      const length =
        r < 0.3
          ? int(random, Math.min(bytes.length, 2048))
          : r < 0.7
            ? int(random, bytes.length)
            : bytes.length - 1 - int(random, Math.min(bytes.length - 1, 64));
      return { bytes: bytes.subarray(0, Math.max(0, length)), what: `truncate to ${length} of ${bytes.length}` };
    },
  },
  {
    name: 'header field',
    weight: 4,
    apply(bytes, random) {
      const fields = headerFields(bytes);
      const out = Buffer.from(bytes);
      if (fields.length === 0) {
        if (out.length < 2) return { bytes: out, what: 'no header field (too short)' };
        const at = position(random, out.length - 1);
        const value = pick(random, INTERESTING_16);
        writeField(out, at, 2, false, value);
        return { bytes: out, what: `u16 @ ${at} = ${value}` };
      }
      const [at, size, little, label] = pick(random, fields);
      const old = readField(out, at, size, little);
      const r = random();
      const value =
        r < 0.45
          ? pick(random, size === 1 ? INTERESTING_8 : size === 4 ? INTERESTING_32 : INTERESTING_16)
          : r < 0.6
            ? old * 2
            : r < 0.7
              ? old >>> 1
              : r < 0.85
                ? old + pick(random, [-2, -1, 1, 2])
                : int(random, 2 ** (8 * size));
      writeField(out, at, size, little, value);
      const fixed = label.startsWith('IHDR') ? maybeFixPngCrc(out, random) : '';
      return { bytes: out, what: `${label} ${old} -> ${readField(out, at, size, little)}${fixed}` };
    },
  },
  {
    name: 'insert random bytes',
    weight: 1,
    apply(bytes, random) {
      const at = position(random, bytes.length);
      const junk = Buffer.from(Array.from({ length: 1 + int(random, 64) }, () => int(random, 256)));
      return {
        bytes: Buffer.concat([bytes.subarray(0, at), junk, bytes.subarray(at)]),
        what: `insert ${junk.length} random bytes @ ${at}`,
      };
    },
  },
];
const TOTAL_WEIGHT = MUTATIONS.reduce((sum, m) => sum + m.weight, 0);

/** Apply 1-3 weighted mutations; `what` lists them, for the failure report. */
export function mutate(bytes: Buffer, random: Random): { bytes: Buffer; what: string[] } {
  const what: string[] = [];
  let out = bytes;
  for (let n = 1 + (random() < 0.35 ? 1 : 0) + (random() < 0.15 ? 1 : 0); n > 0 && out.length > 0; n--) {
    let roll = random() * TOTAL_WEIGHT;
    const mutation = MUTATIONS.find((m) => (roll -= m.weight) < 0) ?? MUTATIONS[0]!;
    const result = mutation.apply(out, random);
    out = result.bytes;
    what.push(result.what);
  }
  return { bytes: out, what };
}

// ----------------------------------------------------------------------------------- seeds

export interface Seed {
  name: string;
  bytes: Buffer;
}

/**
 * The fixture photos, plus WebP (lossy and lossless), GIF and progressive-JPEG versions of the
 * smallest one made with sharp, so every format the edge accepts gets mutated.
 */
export async function loadSeeds(dir = FIXTURES_DIR): Promise<Seed[]> {
  const names = (await readdir(dir)).filter((n) => /\.(jpe?g|png|webp|gif)$/i.test(n)).sort();
  const seeds = await Promise.all(names.map(async (name) => ({ name, bytes: await readFile(join(dir, name)) })));
  const small =
    seeds.find((s) => s.name === 'ort_golden_retriever.jpg') ?? seeds.reduce((a, b) => (a.bytes.length <= b.bytes.length ? a : b));
  const base = small.name.replace(/\.\w+$/, '');
  seeds.push(
    { name: `${base}.webp (sharp)`, bytes: await sharp(small.bytes).webp({ quality: 80 }).toBuffer() },
    { name: `${base}-lossless.webp (sharp)`, bytes: await sharp(small.bytes).resize(120).webp({ lossless: true }).toBuffer() },
    { name: `${base}.gif (sharp)`, bytes: await sharp(small.bytes).resize(120).gif().toBuffer() },
    { name: `${base}-progressive.jpg (sharp)`, bytes: await sharp(small.bytes).jpeg({ progressive: true }).toBuffer() },
  );
  return seeds;
}

// ------------------------------------------------------------------------------------ loop

/** Case `index` under `seed`: which photo, which resize mode, the mutated bytes and what was done. */
export function makeCase(seed: number, index: number, seeds: Seed[]) {
  const random = caseRandom(seed, index);
  const photo = pick(random, seeds);
  const mode: ResizeMode = random() < 0.5 ? 'squash' : 'center-crop';
  const { bytes, what } = mutate(photo.bytes, random);
  return { seed: photo, mode, bytes, what };
}

export interface FuzzOptions {
  cases: number;
  seed: number;
  codecs?: CodecName[];
  /** Run only this case index (replay). */
  only?: number;
  /** MAX_PIXELS per codec; by default each runtime's own: 40 MP on Node (sharp), wrangler.toml's on Workers (photon). */
  maxPixels?: Partial<Record<CodecName, number>>;
  /** Longest a case may take per codec. */
  budgetMs?: number;
  maxRssBytes?: number;
  /** Directory for failing inputs; false to keep none. */
  saveFailures?: string | false;
  seeds?: Seed[];
  /** Called about every `progressEveryMs` and once at the end. */
  onProgress?: (progress: FuzzProgress) => void;
  progressEveryMs?: number;
}

export interface FuzzProgress {
  done: number;
  total: number;
  casesPerSecond: number;
  failures: number;
  rssBytes: number;
  photonWasmBytes: number;
  photonTraps: number;
}

export interface FuzzFailure {
  index: number;
  codec: CodecName | 'memory';
  seedFile: string;
  mutations: string[];
  mode: ResizeMode;
  reason: string;
  ms: number;
  savedTo?: string;
  replay: string;
}

export interface CodecStats {
  runs: number;
  ok: number;
  refused: Record<string, number>;
  maxMs: number;
  p99Ms: number;
  p50Ms: number;
  meanMs: number;
  slowest: { index: number; ms: number; seedFile: string; mutations: string[] };
}

export interface FuzzReport {
  seed: number;
  cases: number;
  codecs: CodecName[];
  maxPixels: Record<CodecName, number>;
  budgetMs: number;
  seeds: string[];
  elapsedMs: number;
  casesPerSecond: number;
  perCodec: Partial<Record<CodecName, CodecStats>>;
  failures: FuzzFailure[];
  memory: {
    rssStartMB: number;
    rssPeakMB: number;
    rssEndMB: number;
    heapUsedEndMB: number;
    /** RSS at 10% of the run and at the end: growth after warm-up. */
    rssAfterWarmupMB: number;
    photon?: { wasmPeakMB: number; wasmEndMB: number; instances: number; traps: number };
  };
}

const MB = 1024 * 1024;
const round = (n: number, digits = 1) => Math.round(n * 10 ** digits) / 10 ** digits;

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** probeImage then codec.toTensor, as the edge runs them; 'ok', 'refused <status> <code>', or a failure. */
async function runPipeline(codec: ImageCodec, bytes: Uint8Array, mode: ResizeMode, maxPixels: number, hardTimeoutMs: number) {
  try {
    const tensor = await withTimeout(
      Promise.resolve().then(() => codec.toTensor(bytes, probeImage(bytes, maxPixels), mode)),
      hardTimeoutMs,
      `no answer after ${hardTimeoutMs} ms (hang)`,
    );
    if (tensor.length !== TENSOR_BYTES)
      return { kind: 'failure' as const, reason: `tensor of ${tensor.length} bytes, expected ${TENSOR_BYTES}` };
    return { kind: 'ok' as const };
  } catch (error) {
    if (error instanceof ApiError && (error.status === 400 || error.status === 413 || error.status === 415)) {
      return { kind: 'refused' as const, refusal: `${error.status} ${error.code}` };
    }
    const e = error as Error;
    return {
      kind: 'failure' as const,
      reason:
        error instanceof ApiError
          ? `ApiError ${error.status} ${error.code}: ${e.message}`
          : `${e?.name ?? 'thrown'}: ${e?.stack ?? String(error)}`,
    };
  }
}

const extension = (b: Uint8Array) =>
  ({ jpeg: 'jpg', png: 'png', gif: 'gif', webp: 'webp', other: 'bin' })[
    formatOf(Buffer.from(b.buffer, b.byteOffset, Math.min(b.length, 16)))
  ];

export async function fuzz(options: FuzzOptions): Promise<FuzzReport> {
  const codecs = options.codecs ?? ['sharp', 'photon'];
  const maxPixels: Record<CodecName, number> = { ...(await defaultMaxPixels()), ...options.maxPixels };
  const budgetMs = options.budgetMs ?? 1000;
  const maxRssBytes = options.maxRssBytes ?? 2048 * MB;
  const seeds = options.seeds ?? (await loadSeeds());
  const decoder = createPhoton();
  const implementations: Record<CodecName, ImageCodec> = {
    sharp: createSharpCodec({ maxPixels: maxPixels.sharp }),
    photon: createPhotonCodec(decoder),
  };
  const indices = options.only !== undefined ? [options.only] : Array.from({ length: options.cases }, (_, i) => i);
  const times = Object.fromEntries(codecs.map((c) => [c, new Float64Array(indices.length)])) as Record<CodecName, Float64Array>;
  const emptyStats = (): CodecStats => ({
    runs: 0,
    ok: 0,
    refused: {},
    maxMs: 0,
    p99Ms: 0,
    p50Ms: 0,
    meanMs: 0,
    slowest: { index: -1, ms: 0, seedFile: '', mutations: [] },
  });
  const stats: Record<CodecName, CodecStats> = { sharp: emptyStats(), photon: emptyStats() };
  const failures: FuzzFailure[] = [];
  const control = seeds[0]!.bytes;
  const replayCommand = (index: number, codec: string) =>
    `npx tsx dev/fuzz.ts --seed ${options.seed} --only ${index} --codec ${codec}` +
    (budgetMs !== 1000 ? ` --budget-ms ${budgetMs}` : '') +
    (options.maxPixels && codec in maxPixels ? ` --max-pixels ${maxPixels[codec as CodecName]}` : '');

  const rssStart = process.memoryUsage().rss;
  let rssPeak = rssStart;
  let rssAfterWarmup = 0;
  const started = performance.now();
  let lastProgress = started;
  const progress = (done: number): FuzzProgress => {
    const elapsed = (performance.now() - started) / 1000;
    return {
      done,
      total: indices.length,
      casesPerSecond: done / Math.max(elapsed, 1e-3),
      failures: failures.length,
      rssBytes: process.memoryUsage().rss,
      photonWasmBytes: decoder.stats().peakWasmBytes,
      photonTraps: decoder.stats().traps,
    };
  };

  const fail = async (failure: Omit<FuzzFailure, 'replay' | 'savedTo'>, bytes?: Uint8Array) => {
    let savedTo: string | undefined;
    if (bytes && options.saveFailures !== false) {
      const dir = options.saveFailures ?? join(tmpdir(), 'resnet-edge-fuzz');
      await mkdir(dir, { recursive: true });
      savedTo = join(dir, `seed${options.seed}-case${failure.index}-${failure.codec}.${extension(bytes)}`);
      await writeFile(savedTo, bytes);
    }
    failures.push({ ...failure, savedTo, replay: replayCommand(failure.index, failure.codec) });
  };

  for (let n = 0; n < indices.length; n++) {
    const index = indices[n]!;
    const { seed, mode, bytes, what } = makeCase(options.seed, index, seeds);
    for (const codec of codecs) {
      const t0 = performance.now();
      const result = await runPipeline(implementations[codec], bytes, mode, maxPixels[codec], Math.max(10 * budgetMs, 10_000));
      const ms = performance.now() - t0;
      const s = stats[codec];
      s.runs++;
      times[codec][n] = ms;
      if (ms > s.slowest.ms) s.slowest = { index, ms: round(ms), seedFile: seed.name, mutations: what };
      if (result.kind === 'ok') s.ok++;
      else if (result.kind === 'refused') s.refused[result.refusal] = (s.refused[result.refusal] ?? 0) + 1;
      const base = { index, codec, seedFile: seed.name, mutations: what, mode, ms: round(ms) };
      if (result.kind === 'failure') await fail({ ...base, reason: result.reason }, bytes);
      else if (ms > budgetMs)
        await fail(
          {
            ...base,
            reason: `took ${round(ms)} ms, over the ${budgetMs} ms budget (${result.kind === 'ok' ? 'decoded' : result.refusal})`,
          },
          bytes,
        );
    }

    // Memory and liveness, now and then.
    if (n % 50 === 49 || n === indices.length - 1) {
      const rss = process.memoryUsage().rss;
      rssPeak = Math.max(rssPeak, rss);
      if (!rssAfterWarmup && n >= indices.length / 10) rssAfterWarmup = rss;
      if (rss > maxRssBytes && !failures.some((f) => f.codec === 'memory')) {
        await fail({
          index,
          codec: 'memory',
          seedFile: seed.name,
          mutations: what,
          mode,
          ms: 0,
          reason: `RSS ${round(rss / MB)} MB is over ${round(maxRssBytes / MB)} MB`,
        });
      }
    }
    if (n % 500 === 499) {
      for (const codec of codecs) {
        const result = await runPipeline(implementations[codec], control, 'squash', maxPixels[codec], 10_000);
        if (result.kind !== 'ok') {
          await fail({
            index,
            codec,
            seedFile: seeds[0]!.name,
            mutations: ['(control: the unmutated photo)'],
            mode: 'squash',
            ms: 0,
            reason: `no longer decodes a good photo after case ${index}: ${result.kind === 'refused' ? result.refusal : result.reason}`,
          });
        }
      }
    }
    const now = performance.now();
    if (options.onProgress && now - lastProgress >= (options.progressEveryMs ?? 2000)) {
      lastProgress = now;
      options.onProgress(progress(n + 1));
    }
  }
  options.onProgress?.(progress(indices.length));

  for (const codec of codecs) {
    const sorted = times[codec].slice(0, stats[codec].runs).sort();
    const s = stats[codec];
    s.maxMs = round(sorted.at(-1) ?? 0);
    s.p99Ms = round(percentile(sorted, 99));
    s.p50Ms = round(percentile(sorted, 50));
    s.meanMs = round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length));
  }
  const elapsedMs = performance.now() - started;
  const memory = process.memoryUsage();
  const photon = decoder.stats();
  return {
    seed: options.seed,
    cases: indices.length,
    codecs,
    maxPixels,
    budgetMs,
    seeds: seeds.map((s) => s.name),
    elapsedMs: Math.round(elapsedMs),
    casesPerSecond: round(indices.length / (elapsedMs / 1000)),
    perCodec: Object.fromEntries(codecs.map((c) => [c, stats[c]])),
    failures,
    memory: {
      rssStartMB: round(rssStart / MB),
      rssPeakMB: round(Math.max(rssPeak, memory.rss) / MB),
      rssEndMB: round(memory.rss / MB),
      heapUsedEndMB: round(memory.heapUsed / MB),
      rssAfterWarmupMB: round((rssAfterWarmup || memory.rss) / MB),
      ...(codecs.includes('photon')
        ? {
            photon: {
              wasmPeakMB: round(photon.peakWasmBytes / MB),
              wasmEndMB: round(photon.wasmBytes / MB),
              instances: photon.instances,
              traps: photon.traps,
            },
          }
        : {}),
    },
  };
}

// ------------------------------------------------------------------------------------- CLI

export function formatReport(report: FuzzReport): string {
  const lines = [
    `fuzz: seed ${report.seed}, ${report.cases} cases x ${report.codecs.join(' + ')} in ${round(report.elapsedMs / 1000)} s (${report.casesPerSecond} cases/s), ${report.failures.length} failures`,
    `  limits: ${report.codecs.map((c) => `${c} MAX_PIXELS ${report.maxPixels[c] / 1e6} MP`).join(', ')}; budget ${report.budgetMs} ms per case per codec; seeds: ${report.seeds.length} (${report.seeds.join(', ')})`,
  ];
  for (const [codec, s] of Object.entries(report.perCodec)) {
    const refused = Object.entries(s.refused)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    lines.push(
      `  ${codec.padEnd(6)} ok ${s.ok}, refused ${s.runs - s.ok} (${refused}); ms per case: max ${s.maxMs}, p99 ${s.p99Ms}, p50 ${s.p50Ms}, mean ${s.meanMs}` +
        `; slowest: case ${s.slowest.index} (${s.slowest.seedFile}: ${s.slowest.mutations.join('; ')})`,
    );
  }
  const m = report.memory;
  lines.push(
    `  memory: RSS ${m.rssStartMB} MB at start, ${m.rssAfterWarmupMB} MB after 10%, peak ${m.rssPeakMB} MB, ${m.rssEndMB} MB at end; heap ${m.heapUsedEndMB} MB`,
  );
  if (m.photon) {
    lines.push(
      `  photon: ${m.photon.traps} traps, ${m.photon.instances} instances; WASM memory peak ${m.photon.wasmPeakMB} MB, ${m.photon.wasmEndMB} MB at end`,
    );
  }
  for (const f of report.failures.slice(0, 20)) {
    lines.push(
      `  FAILURE case ${f.index} [${f.codec}, ${f.mode}] ${f.seedFile}: ${f.mutations.join('; ')}\n    ${f.reason.split('\n').slice(0, 6).join('\n    ')}\n    replay: ${f.replay}${f.savedTo ? `\n    input: ${f.savedTo}` : ''}`,
    );
  }
  if (report.failures.length > 20) lines.push(`  ... and ${report.failures.length - 20} more`);
  return lines.join('\n');
}

async function main() {
  const usage =
    'usage: tsx dev/fuzz.ts [--cases 10000] [--seed 1] [--codec sharp|photon|both] [--only <case>] [--budget-ms 1000]\n' +
    '                       [--max-pixels <n>] [--max-rss-mb 2048] [--save <dir> | --no-save] [--json]';
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        cases: { type: 'string', default: '10000' },
        seed: { type: 'string', default: '1' },
        codec: { type: 'string', default: 'both' },
        only: { type: 'string' },
        'budget-ms': { type: 'string', default: '1000' },
        'max-pixels': { type: 'string' },
        'max-rss-mb': { type: 'string', default: '2048' },
        save: { type: 'string' },
        'no-save': { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usage);
    return;
  }
  const number = (name: string, text: string | undefined, min: number) => {
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) {
      console.error(`--${name}: expected an integer >= ${min} (got "${text}")\n${usage}`);
      process.exit(2);
    }
    return value;
  };
  if (!['sharp', 'photon', 'both'].includes(values.codec)) {
    console.error(`--codec: expected sharp, photon or both (got "${values.codec}")\n${usage}`);
    process.exit(2);
  }
  const report = await fuzz({
    cases: number('cases', values.cases, 1),
    seed: number('seed', values.seed, 0),
    only: values.only === undefined ? undefined : number('only', values.only, 0),
    codecs: values.codec === 'both' ? ['sharp', 'photon'] : [values.codec as CodecName],
    budgetMs: number('budget-ms', values['budget-ms'], 1),
    maxPixels:
      values['max-pixels'] === undefined
        ? undefined
        : { sharp: number('max-pixels', values['max-pixels'], 1), photon: number('max-pixels', values['max-pixels'], 1) },
    maxRssBytes: number('max-rss-mb', values['max-rss-mb'], 64) * MB,
    saveFailures: values['no-save'] ? false : values.save,
    onProgress: (p) =>
      process.stderr.write(
        `fuzz: ${p.done}/${p.total} cases (${Math.floor((100 * p.done) / p.total)}%), ${round(p.casesPerSecond)} cases/s, ` +
          `${p.failures} failures, RSS ${Math.round(p.rssBytes / MB)} MB, photon ${p.photonTraps} traps (WASM peak ${Math.round(p.photonWasmBytes / MB)} MB)\n`,
      ),
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  process.exitCode = report.failures.length > 0 ? 1 : 0;
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
