/**
 * The fuzzer's loop (dev/fuzz.ts), short and with a fixed seed, on both codecs: mutated photos
 * through probeImage + codec.toTensor must end in a tensor or an ApiError 400/413/415, each case
 * within the 1 s budget, memory bounded, and both codecs still decoding a good photo afterwards.
 * The full run: `npx tsx dev/fuzz.ts --cases 10000 --seed 1`.
 */
import { readFile } from 'node:fs/promises';
import { expect, it } from 'vitest';
import { FIXTURES_DIR, formatReport, fuzz, loadSeeds, makeCase } from '../dev/fuzz.ts';
import { createPhoton } from '../edge/cloudflare-workers/photon-codec.ts';

const CASES = 400;

it(`survives ${CASES} mutated photos on sharp and photon (seed 1)`, async () => {
  const report = await fuzz({
    cases: CASES,
    seed: 1,
    codecs: ['sharp', 'photon'],
    seeds: await loadSeeds(),
    saveFailures: false,
    maxRssBytes: 1536 * 1024 * 1024,
  });
  console.log(formatReport(report));
  expect(report.failures, formatReport(report)).toEqual([]);
  for (const codec of ['sharp', 'photon'] as const) {
    const stats = report.perCodec[codec]!;
    expect(stats.runs).toBe(CASES);
    // Both outcomes occur: the mutations are neither all harmless nor all fatal.
    expect(stats.ok).toBeGreaterThan(0);
    expect(stats.runs - stats.ok).toBeGreaterThan(0);
    expect(stats.maxMs).toBeLessThan(1000);
  }
  // photon trapped, and a fresh instance replaced each trapped one.
  expect(report.memory.photon!.traps).toBeGreaterThan(0);
  expect(report.memory.photon!.instances).toBeGreaterThanOrEqual(report.memory.photon!.traps);
}, 120_000);

it('derives each case from (seed, index) alone, so --only replays it', async () => {
  const seeds = await loadSeeds();
  const a = makeCase(7, 123, seeds);
  const b = makeCase(7, 123, seeds);
  expect(Buffer.compare(a.bytes, b.bytes)).toBe(0);
  expect([a.seed.name, a.mode, a.what]).toEqual([b.seed.name, b.mode, b.what]);
  const others = [makeCase(7, 124, seeds), makeCase(8, 123, seeds)];
  expect(others.some((c) => Buffer.compare(c.bytes, a.bytes) !== 0)).toBe(true);
  const replay = await fuzz({ cases: 0, only: 123, seed: 7, codecs: ['sharp'], seeds, saveFailures: false });
  expect(replay.cases).toBe(1);
  expect(replay.perCodec.sharp!.slowest).toMatchObject({ index: 123, seedFile: a.seed.name, mutations: a.what });
});

it('photon: a thousand traps leak no WASM memory and leave it decoding', async () => {
  // With photon's own bindings (one instance for good) each trap leaked the input's 300 KB, and a
  // few thousand traps broke the instance for every later image.
  const png = await readFile(`${FIXTURES_DIR}ort_lion.png`);
  const corrupt = Buffer.from(png);
  corrupt.writeUInt32BE((corrupt.readUInt32BE(29) ^ 1) >>> 0, 29); // IHDR CRC: the decoder panics at once
  const decoder = createPhoton();
  for (let i = 0; i < 1000; i++) expect(() => decoder.decode(corrupt)).toThrow(/unreachable/);
  const { width, height, pixels } = decoder.decode(png);
  expect([width, height, pixels.length]).toEqual([510, 339, 510 * 339 * 4]);
  const stats = decoder.stats();
  expect(stats).toMatchObject({ traps: 1000, instances: 1001 });
  expect(stats.peakWasmBytes).toBeLessThan(16 * 1024 * 1024);
});
