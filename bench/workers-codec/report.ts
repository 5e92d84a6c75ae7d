/** The MAX_PIXELS analysis and the Markdown report. */
import { round } from './helpers.ts';
import type { TestImage } from './images.ts';
import type { LimitRecord, MemoryRecord, Timing } from './records.ts';
import { FRESH_RUNS, HEADROOM_MB, ISOLATE_LIMIT_MB, LIMIT_RUNS, MAX_BODY_MB, MAX_PIXELS_NOW, MB, MODES, RUNS } from './settings.ts';

/** Least squares y = a + b x. */
export function fit(points: [number, number][]) {
  const n = points.length;
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  const sxx = points.reduce((s, [x]) => s + (x - mx) ** 2, 0);
  const sxy = points.reduce((s, [x, y]) => s + (x - mx) * (y - my), 0);
  const b = sxx ? sxy / sxx : 0;
  return { a: my - b * mx, b };
}

export type Analysis = ReturnType<typeof analyse>;

/**
 * Which sizes fit a 128 MB isolate. Two linear fits over the sweep (fresh process each):
 * - isolate estimate (exact WASM memory + JS copies): what V8 accounts for the isolate; the basis
 *   of the recommendation;
 * - RSS growth of one cold request: an upper bound (it also holds WASM compilation, workerd's own
 *   buffers and not yet collected garbage, which the isolate limit does not see).
 */
export function analyse(limit: LimitRecord[]) {
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

export function renderMarkdown(
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
