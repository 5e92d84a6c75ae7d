/**
 * `npm run bench [-- --quick] [--model tiny|resnet50] [--engine auto|onnx|tfjs] [--provider auto|tensorrt|cuda|cpu] [--backend auto|wasm|tensorflow|cpu]`
 *
 * One run, one report: bench/results/bench.{md,json}, and SVG charts beside them (charts.ts). The first line names the machine (its GPU
 * too, from nvidia-smi), Node, the engines asked for and the model; the report's first line names
 * the engines as they loaded (provider, threads). Sections, each one function that returns its
 * markdown and its JSON:
 *
 *   1. engineSection: the bare engines (bench/engine.ts), no HTTP and no Redis: ONNX Runtime in one
 *      process on every core, TensorFlow.js with one replica and one per core, taking turns.
 *   2. conversionSection: the ONNX conversion on a cold cache, and the new session's first inference.
 *   3. e2eSection: the full pipeline (bench/pipeline.ts) on the fastest engine at concurrency 1, 8,
 *      32, 64, then the bare engine again (the machine's speed drifts), and the same stack
 *      saturated on the other engine.
 *   4. seedSection: the seed tutorial's protocol (bench/seed/) on the same engine, under the same loads.
 *   5. preprocessSection: the edge's preprocessing alone (sharp), right before what it is compared with:
 *   6. capacitySection, scaleOutSection and shardsSection: synthetic models (instant; 50 ms timer,
 *      1/2/4 workers; instant through 1/2/4 shards).
 *   7. targetsSection: the issues' ratios, from the rows above.
 *
 * `--engine` picks the engines (auto: both), `--provider` ONNX Runtime's execution provider and
 * `--backend` the tfjs backend (auto: the worker's own order; a named one must load, as in the
 * worker). On a GPU host: `--engine onnx --provider cuda` (or tensorrt), `--engine tfjs --backend
 * tensorflow`. `--quick` runs fewer batches and requests (the numbers are noisier); `--model tiny`
 * uses the tiny test model (test/helpers/tiny-model.ts) so the whole run takes a couple of
 * minutes, for CI. `--only engine,e2e,...` runs some sections (no targets table then). `--out DIR`
 * writes the results elsewhere than bench/results (the CI smoke run does).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadImages } from '../dev/stress.ts';
import {
  BACKEND_CHOICES,
  ENGINE_CHOICES,
  parseWorkerConfig,
  PROVIDER_CHOICES,
  type BackendChoice,
  type EngineChoice,
  type ProviderChoice,
} from '../gpu-worker/config.ts';
import { BUILTIN_MODEL } from '../gpu-worker/model/builtin.ts';
import type { PreprocessMode } from '../gpu-worker/model/preprocess.ts';
import { writeCharts } from './charts.ts';
import { benchConversion, type ConversionResult } from './conversion.ts';
import { benchEngine, countParamsInManifest, setupLabel, type EngineProgress, type EngineResult, type EngineSetup } from './engine.ts';
import {
  capacitySection,
  computeTargets,
  e2eSection,
  preprocessSection,
  scaleOutSection,
  seedSection,
  shardsSection,
  targetsSection,
} from './sections.ts';

export const SECTION_NAMES = ['engine', 'conversion', 'preprocess', 'e2e', 'seed', 'capacity', 'scaleout', 'shards'] as const;
export type SectionName = (typeof SECTION_NAMES)[number];

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = join(HERE, 'results');
/** The team's fixture photos, next to the repository (../shared). */
const FIXTURES_DIR = resolve(HERE, '../../shared/fixtures/images');

export interface RunSettings {
  quick: boolean;
  only: SectionName[];
  images: string;
  /** Where bench.md and bench.json go. */
  out: string;
  model: 'tiny' | 'resnet50';
  engine: EngineChoice;
  provider: ProviderChoice;
  backend: BackendChoice;
}

export interface ModelUnderTest {
  /** benchEngine's `model`: 'resnet50' or a directory. */
  spec: string;
  name: string;
  paramCount: number;
  preprocess?: PreprocessMode;
  cleanup(): Promise<void>;
}

export interface Section {
  title: string;
  markdown: string;
  json: unknown;
}

// ---------------------------------------------------------------------------------------------
// Header: machine, runtime, engines, model

export function machineLine(): string {
  let cpu = 'unknown CPU';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    // not Linux
  }
  return `${cpu}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GB RAM${gpuText()}`;
}

/** The GPU(s) nvidia-smi reports, if any: named in the header of a run on a GPU machine. */
function gpuText(): string {
  try {
    const gpus = execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 10_000,
    })
      .trim()
      .split('\n')
      .filter(Boolean);
    return gpus.length ? `, GPU: ${gpus.join('; ')}` : ', no GPU';
  } catch {
    return ', no GPU (no nvidia-smi)';
  }
}

async function prepareModel(which: RunSettings['model']): Promise<ModelUnderTest> {
  if (which === 'resnet50') {
    return { spec: 'resnet50', name: BUILTIN_MODEL.name, paramCount: BUILTIN_MODEL.paramCount, cleanup: async () => {} };
  }
  // The tiny model is made with tfjs in this process: any backend will do.
  const [{ createTinyModel }, { ensureTfjsBackend }] = await Promise.all([
    import('../test/helpers/tiny-model.ts'),
    import('../gpu-worker/engine/onnx/convert.ts'),
  ]);
  await ensureTfjsBackend();
  const tiny = await createTinyModel();
  return {
    spec: tiny.dir,
    name: 'tiny (test/helpers/tiny-model.ts)',
    paramCount: await countParamsInManifest(tiny.dir),
    preprocess: 'caffe',
    cleanup: () => tiny.cleanup(),
  };
}

/** The engine setups a run measures: ONNX Runtime in one process, tfjs with one replica and one per core. */
export function engineSetups(settings: Pick<RunSettings, 'engine' | 'provider' | 'backend'>, cores: number): EngineSetup[] {
  const setups: EngineSetup[] = [];
  if (settings.engine !== 'tfjs') setups.push({ engine: 'onnx', provider: settings.provider, replicas: 1 });
  if (settings.engine !== 'onnx')
    for (const replicas of new Set([1, Math.max(2, cores)])) setups.push({ engine: 'tfjs', provider: settings.backend, replicas });
  return setups;
}

/** 'onnx (cpu, 2 threads: onnxruntime-node 1.30.0, ...)' for each engine that ran. */
export function enginesText(results: EngineResult[]): string {
  const seen = new Map<string, string>();
  for (const r of results)
    seen.set(
      r.engine.name,
      `${r.engine.name} (${r.engine.provider}, ${r.engine.threads} thread${r.engine.threads === 1 ? '' : 's'} per replica: ${r.engine.detail.replace(/; session in \d+ ms$/, '')})`,
    );
  return [...seen.values()].join(', ');
}

// ---------------------------------------------------------------------------------------------
// Section 1: the bare engines

export function engineSettings(settings: RunSettings, cores: number) {
  const quick = settings.quick;
  return {
    setups: engineSetups(settings, cores),
    batchSizes: settings.model === 'tiny' ? [1, 4, 16] : [1, 8, 32],
    // About the same number of images per batch size, at least 2 (quick) or 3 batches.
    repeats: (batchSize: number) => Math.max(quick ? 2 : 3, Math.ceil((quick ? 12 : 48) / batchSize)),
    warmup: quick ? 1 : 2,
    // The setups take turns in rounds (this VM's speed drifts by minutes).
    rounds: quick ? 2 : 3,
  };
}

export async function engineSection(
  settings: RunSettings,
  model: ModelUnderTest,
  log: (line: string) => void,
): Promise<Section & { results: EngineResult[] }> {
  const plan = engineSettings(settings, availableParallelism());
  const started = Date.now();
  const step = (batchSize: number) => `[${plan.batchSizes.indexOf(batchSize) + 1}/${plan.batchSizes.length}] batch ${batchSize}`;
  const results = await benchEngine({
    model: model.spec,
    preprocess: model.preprocess,
    ...plan,
    onProgress: (event: EngineProgress) => {
      if (event.kind === 'loading') log(`  ${event.setup}: loading the engine and model`);
      if (event.kind === 'warming') log(`  ${step(event.batchSize)} ${event.setup}: warming up`);
      // Every batch on a terminal (in place), each turn's end in a log.
      if (event.kind === 'batch' && (process.stdout.isTTY || event.roundEnd)) {
        const line = `  ${step(event.batchSize)} ${event.setup}, round ${event.round}/${event.rounds}: ${event.done}/${event.total} batches`;
        if (process.stdout.isTTY) process.stdout.write(`\r${line}${event.roundEnd ? '\n' : ''}`);
        else log(line);
      }
    },
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  // Ratios against the slowest setup's single process at the same batch size (tfjs wasm here, when it ran).
  const baseline = plan.setups.find((s) => s.engine === 'tfjs' && s.replicas === 1) ?? plan.setups[0]!;
  const base = new Map(results.filter((r) => r.setup === setupLabel(baseline)).map((r) => [r.batchSize, r.aggregateImgPerSec]));
  const rows = results.map((r) => {
    const one = base.get(r.batchSize);
    const ratio = one ? `${(r.aggregateImgPerSec / one).toFixed(2)}x` : '-';
    return `| ${r.setup} | ${r.engine.provider} | ${r.engine.threads} | ${r.batchSize} | ${r.repeats} | ${r.medianMs} | ${r.medianMsPerImage} | ${r.imgPerSec} | ${r.aggregateImgPerSec} | ${r.cpuMsPerImage} | ${ratio} |`;
  });
  const markdown = [
    `${model.name} on ${enginesText(results)}; random uint8 tensors; each replica is its own process, loaded as a worker loads its engine; ${plan.warmup} warm-up batch(es) per batch size; the setups take turns in ${plan.rounds} rounds per batch size (fewer when there are fewer batches), so their ratios are measured side by side in time; whole section ${seconds} s.`,
    '',
    `| engine | provider / backend | threads per replica | batch | batches/replica | median ms/batch | ms/img | img/s per replica | aggregate img/s | CPU ms/img | vs ${setupLabel(baseline)} |`,
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    "- **median ms/batch**: one `classifyWithStats` call (tensor in, inference, top-5 read back), median over every replica's timed batches.",
    "- **img/s per replica**: batch / median ms. **aggregate img/s**: all replicas' images / wall time from the common start to the last replica done.",
    '- **CPU ms/img**: user + system CPU time of the replica processes (all their threads) over the timed batches, per image.',
    `- **vs ${setupLabel(baseline)}**: aggregate img/s over that setup's at the same batch size.`,
  ].join('\n');
  return {
    title: 'Bare engines (no HTTP, no Redis)',
    markdown,
    json: { settings: { ...plan, repeats: Object.fromEntries(plan.batchSizes.map((b) => [b, plan.repeats(b)])) }, results },
    results,
  };
}

// ---------------------------------------------------------------------------------------------
// Section 2: the ONNX conversion

export async function conversionSection(
  settings: RunSettings,
  model: ModelUnderTest,
  log: (line: string) => void,
): Promise<Section & { result: ConversionResult }> {
  log('  a fresh process, an empty cache: read the tfjs files, convert, write the cache, open a session, infer');
  const result = await benchConversion({
    model: model.spec,
    preprocess: model.preprocess,
    warm: settings.quick || settings.model === 'tiny' ? 5 : 20,
  });
  log(`    converted in ${result.convertMs} ms; first inference ${result.firstMs} ms, warm ${result.warmMedianMs} ms`);
  const markdown = [
    `What a worker's first start with ONNX Runtime does before it serves, in a process of its own with an empty ONNX cache (the tfjs files already downloaded), then a session on the ${result.provider} provider and ${result.warm + 1} inferences of one image:`,
    '',
    '| step | ms |',
    '|---|---:|',
    `| read model.json and the weight shards | ${result.readMs} |`,
    `| build the tfjs model, convert to ONNX (${result.nodes} nodes, ${(result.onnxBytes / 1e6).toFixed(1)} MB), write the cache | ${result.convertMs} |`,
    `| ... of which the converter itself | ${result.converterMs} |`,
    `| ONNX Runtime session (graph optimisation) | ${result.sessionMs} |`,
    `| first inference | ${result.firstMs} |`,
    `| warm inference (median of ${result.warm}) | ${result.warmMedianMs} |`,
    '',
    'Later starts read the cached graph instead (its sha256 checked): the session is the only cost left.',
  ].join('\n');
  return { title: 'ONNX conversion (cold cache)', markdown, json: result, result };
}

// ---------------------------------------------------------------------------------------------
// Main

export function parseRunArgs(argv: string[]): RunSettings {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string', default: SECTION_NAMES.join(',') },
      images: { type: 'string', default: FIXTURES_DIR },
      out: { type: 'string', default: RESULTS_DIR },
      model: { type: 'string', default: 'resnet50' },
      engine: { type: 'string', default: 'auto' },
      provider: { type: 'string', default: 'auto' },
      backend: { type: 'string', default: 'auto' },
    },
  });
  const oneOf = <T extends string>(name: string, value: string, choices: readonly T[]): T => {
    if (!(choices as readonly string[]).includes(value)) throw new Error(`--${name}: expected one of ${choices.join(', ')}, got ${value}`);
    return value as T;
  };
  const model = oneOf('model', values.model, ['tiny', 'resnet50'] as const);
  const provider = oneOf('provider', values.provider, PROVIDER_CHOICES);
  const backend = oneOf('backend', values.backend, BACKEND_CHOICES);
  // As in the worker, by the worker's own rules: naming a provider or a backend names its engine.
  const engine = parseWorkerConfig({
    ENGINE: oneOf('engine', values.engine, ENGINE_CHOICES),
    EXECUTION_PROVIDER: provider,
    BACKEND: backend,
  }).engine;
  const only = values.only
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const unknown = only.filter((name) => !(SECTION_NAMES as readonly string[]).includes(name));
  if (unknown.length) throw new Error(`--only: unknown section(s) ${unknown.join(', ')}; expected some of ${SECTION_NAMES.join(', ')}`);
  return {
    quick: values.quick,
    model,
    engine,
    provider,
    backend,
    only: only as SectionName[],
    images: values.images,
    out: resolve(values.out),
  };
}

async function main(): Promise<void> {
  const settings = parseRunArgs(process.argv.slice(2));
  const started = Date.now();
  const model = await prepareModel(settings.model);
  try {
    const asked = engineSetups(settings, availableParallelism())
      .map((s) => (s.engine === 'onnx' ? `onnx (EXECUTION_PROVIDER=${settings.provider})` : `tfjs (BACKEND=${settings.backend})`))
      .filter((text, i, all) => all.indexOf(text) === i)
      .join(', ');
    const machine = `Machine: ${machineLine()}; Node ${process.version}`;
    const modelText = `model ${model.name}, ${model.paramCount.toLocaleString('en-US')} params`;
    console.log(`${machine}; engines ${asked}; ${modelText}`);
    console.log(`${new Date().toISOString().slice(0, 10)}${settings.quick ? ', --quick' : ''}`);

    const sections: Section[] = [];
    const log = (line: string) => console.log(line);
    const want = (name: SectionName) => settings.only.includes(name);
    const images = await loadImages(settings.images);
    let step = 0;
    const begin = (title: string) => console.log(`\n## ${++step}. ${title}`);

    // The engine rows are inputs of the e2e and seed sections (which engine, request counts, bare medians).
    let engine: Awaited<ReturnType<typeof engineSection>> | undefined;
    if (want('engine') || want('e2e') || want('seed')) {
      begin('Bare engines');
      engine = await engineSection(settings, model, log);
      log(`  engines: ${enginesText(engine.results)}`);
      sections.push(engine);
    }
    let conversion, preprocess, e2e, seed, capacity, scaleOut, shards;
    if (want('conversion') && settings.engine !== 'tfjs') {
      begin('ONNX conversion');
      sections.push((conversion = await conversionSection(settings, model, log)));
    }
    if (want('e2e')) {
      begin('End to end');
      sections.push((e2e = await e2eSection(settings, model, images, engine!.results, log)));
    }
    if (want('seed')) {
      begin('Seed-protocol baseline');
      sections.push((seed = await seedSection(settings, model, images, engine!.results, log)));
    }
    // Right before capacity, which is compared with it: this machine's speed drifts over minutes.
    if (want('preprocess') || want('capacity')) {
      begin('Edge preprocessing alone');
      sections.push((preprocess = await preprocessSection(images, settings, log)));
    }
    if (want('capacity')) {
      begin('Pipeline capacity');
      sections.push((capacity = await capacitySection(settings, images, log)));
    }
    if (want('scaleout')) {
      begin('Scale-out');
      sections.push((scaleOut = await scaleOutSection(settings, images, log)));
    }
    if (want('shards')) {
      begin('Shards');
      sections.push((shards = await shardsSection(settings, images, log)));
    }
    if (engine && preprocess && e2e && capacity && scaleOut) {
      const targets = targetsSection(
        computeTargets({
          engine: engine.results,
          conversion: conversion?.result,
          preprocess: preprocess.result,
          e2e,
          seed,
          capacity,
          scaleOut,
          shards,
          cores: availableParallelism(),
        }),
      );
      sections.unshift(targets);
    }

    // The report names the engines as they loaded, not only as they were asked for.
    const header = `${machine}; engines ${engine ? enginesText(engine.results) : asked}; ${modelText}`;
    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    const sectionsJson = Object.fromEntries(sections.map((s) => [s.title, s.json]));
    mkdirSync(settings.out, { recursive: true });
    const charts = await writeCharts(settings.out, sectionsJson);
    const markdown = [
      header,
      '',
      `One-run benchmark (\`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`); ${new Date().toISOString().slice(0, 10)}; whole run ${seconds} s.`,
      ...sections.flatMap((s, i) => ['', `## ${i + 1}. ${s.title}`, '', s.markdown]),
      '',
      charts,
    ].join('\n');
    for (const s of sections) console.log(`\n## ${s.title}\n\n${s.markdown}`);

    writeFileSync(join(settings.out, 'bench.md'), markdown);
    writeFileSync(
      join(settings.out, 'bench.json'),
      `${JSON.stringify(
        {
          header,
          date: new Date().toISOString(),
          settings,
          machine: machineLine(),
          node: process.version,
          engines: engine ? [...new Map(engine.results.map((r) => [r.setup, { setup: r.setup, ...r.engine }])).values()] : [],
          model: { name: model.name, paramCount: model.paramCount },
          sections: sectionsJson,
        },
        null,
        2,
      )}\n`,
    );
    console.log(`\nwrote ${join(settings.out, 'bench.md')}, bench.json and the charts (${seconds} s)`);
  } finally {
    await model.cleanup();
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
