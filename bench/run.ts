/**
 * `npm run bench [-- --quick] [--model tiny|resnet50] [--backend auto|wasm|tensorflow|cpu]`
 *
 * One run, one report: bench/results/bench.{md,json}. The first line (printed and written) names
 * the machine, Node, the backend actually selected and the model. Sections, each one function that
 * returns its markdown and its JSON:
 *
 *   1. engineSection: the bare engine (bench/engine.ts), no HTTP and no Redis.
 *   2. e2eSection: the full pipeline (bench/pipeline.ts) at concurrency 1, 8, 32, 64, then the bare
 *      engine again at its batch size (the machine's speed drifts).
 *   3. seedSection: the seed tutorial's protocol (bench/seed/) under the same loads.
 *   4. preprocessSection: the edge's preprocessing alone (sharp), right before what it is compared with:
 *   5. capacitySection and scaleOutSection: synthetic models (instant; 50 ms timer, 1/2/4 workers).
 *   6. targetsSection: the issue's ratios, from the rows above.
 *
 * `--quick` runs fewer batches and requests (the numbers are noisier); `--model tiny` uses the
 * tiny test model (test/helpers/tiny-model.ts) so the whole run takes about a minute, for CI.
 * `--only engine,e2e,...` runs some sections (no targets table then). `--out DIR` writes the
 * results elsewhere than bench/results (the CI smoke run does).
 * `--backend tensorflow` runs the engine and the workers on @tensorflow/tfjs-node(-gpu); the
 * header then names the GPU (nvidia-smi) if there is one.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BACKEND_CHOICES, type BackendChoice } from '../gpu-worker/config.ts';
import { selectBackend, type SelectedBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { BUILTIN_MODEL } from '../gpu-worker/model/builtin.ts';
import type { PreprocessMode } from '../gpu-worker/model/preprocess.ts';
import { benchEngine, countParamsInManifest, type EngineProgress, type EngineResult } from './engine.ts';
import { execFileSync } from 'node:child_process';
import { loadImages } from '../dev/stress.ts';
import {
  capacitySection,
  computeTargets,
  e2eSection,
  preprocessSection,
  scaleOutSection,
  seedSection,
  targetsSection,
} from './sections.ts';

export const SECTION_NAMES = ['engine', 'preprocess', 'e2e', 'seed', 'capacity', 'scaleout'] as const;
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
// Header: machine, runtime, backend, model

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
    const gpus = execFileSync('nvidia-smi', ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader'], { encoding: 'utf8', timeout: 10_000 })
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
  const { createTinyModel } = await import('../test/helpers/tiny-model.ts');
  const tiny = await createTinyModel();
  return {
    spec: tiny.dir,
    name: 'tiny (test/helpers/tiny-model.ts)',
    paramCount: await countParamsInManifest(tiny.dir),
    preprocess: 'caffe',
    cleanup: () => tiny.cleanup(),
  };
}

// ---------------------------------------------------------------------------------------------
// Section 1: the bare engine

export function engineSettings(settings: RunSettings, cores: number) {
  const quick = settings.quick;
  return {
    batchSizes: settings.model === 'tiny' ? [1, 4, 16] : [1, 8, 32],
    replicas: [...new Set([1, Math.max(2, cores)])],
    // About the same number of images per batch size, at least 2 (quick) or 3 batches.
    repeats: (batchSize: number) => Math.max(quick ? 2 : 3, Math.ceil((quick ? 12 : 48) / batchSize)),
    warmup: quick ? 1 : 2,
    // The replica counts take turns in rounds (this VM's speed drifts by minutes).
    rounds: quick ? 2 : 3,
  };
}

export async function engineSection(settings: RunSettings, model: ModelUnderTest, log: (line: string) => void): Promise<Section & { results: EngineResult[] }> {
  const plan = engineSettings(settings, availableParallelism());
  const started = Date.now();
  const step = (batchSize: number) => `[${plan.batchSizes.indexOf(batchSize) + 1}/${plan.batchSizes.length}] batch ${batchSize}`;
  const results = await benchEngine({
    model: model.spec,
    preprocess: model.preprocess,
    backend: settings.backend,
    ...plan,
    onProgress: (event: EngineProgress) => {
      if (event.kind === 'loading') log(`  ${event.replicas} replica(s): loading the model`);
      if (event.kind === 'warming') log(`  ${step(event.batchSize)} x ${event.replicas} replica(s): warming up`);
      // Every batch on a terminal (in place), each turn's end in a log.
      if (event.kind === 'batch' && (process.stdout.isTTY || event.roundEnd)) {
        const line = `  ${step(event.batchSize)} x ${event.replicas} replica(s), round ${event.round}/${event.rounds}: ${event.done}/${event.total} batches`;
        if (process.stdout.isTTY) process.stdout.write(`\r${line}${event.roundEnd ? '\n' : ''}`);
        else log(line);
      }
    },
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const base = new Map(results.filter((r) => r.replicas === 1).map((r) => [r.batchSize, r.aggregateImgPerSec]));
  const rows = results.map((r) => {
    const one = base.get(r.batchSize);
    const ratio = one ? `${(r.aggregateImgPerSec / one).toFixed(2)}x` : '-';
    return `| ${r.batchSize} | ${r.replicas} | ${r.repeats} | ${r.medianMs} | ${r.medianMsPerImage} | ${r.imgPerSec} | ${r.aggregateImgPerSec} | ${ratio} |`;
  });
  const markdown = [
    `${model.name} through \`${results[0]?.backend}\` (${results[0]?.backendDetail}); random uint8 tensors; each replica is its own process; ${plan.warmup} warm-up batch(es) per batch size; the replica counts take turns in ${plan.rounds} rounds per batch size (fewer when there are fewer batches), so their ratio is measured side by side in time; whole section ${seconds} s.`,
    '',
    '| batch | replicas | batches/replica | median ms/batch | ms/img | img/s per replica | aggregate img/s | vs 1 replica |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    '- **median ms/batch**: one `TfjsClassifier.classifyWithStats` call (tensor build, predict, top-5 read back), median over every replica\'s timed batches.',
    '- **img/s per replica**: batch / median ms. **aggregate img/s**: all replicas\' images / wall time from the common start to the last replica done.',
    '- **vs 1 replica**: aggregate img/s over the 1-replica aggregate at the same batch size (ideal: the replica count).',
  ].join('\n');
  return { title: 'Bare engine (no HTTP, no Redis)', markdown, json: { settings: { ...plan, repeats: Object.fromEntries(plan.batchSizes.map((b) => [b, plan.repeats(b)])) }, results }, results };
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
      backend: { type: 'string', default: 'auto' },
    },
  });
  if (values.model !== 'tiny' && values.model !== 'resnet50') throw new Error(`--model: expected tiny or resnet50, got ${values.model}`);
  if (!(BACKEND_CHOICES as readonly string[]).includes(values.backend)) throw new Error(`--backend: expected one of ${BACKEND_CHOICES.join(', ')}, got ${values.backend}`);
  const only = values.only.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = only.filter((name) => !(SECTION_NAMES as readonly string[]).includes(name));
  if (unknown.length) throw new Error(`--only: unknown section(s) ${unknown.join(', ')}; expected some of ${SECTION_NAMES.join(', ')}`);
  return { quick: values.quick, model: values.model, backend: values.backend as BackendChoice, only: only as SectionName[], images: values.images, out: resolve(values.out) };
}

async function main(): Promise<void> {
  const settings = parseRunArgs(process.argv.slice(2));
  const started = Date.now();
  // Selected here too (the children select their own and must agree) to name it in the first line
  // and so the tiny model can be built.
  const backend: SelectedBackend = await selectBackend(settings.backend);
  const model = await prepareModel(settings.model);
  try {
    const header = `Machine: ${machineLine()}; Node ${process.version}; backend ${backend.name} (${backend.package}: ${backend.detail}); model ${model.name}, ${model.paramCount.toLocaleString('en-US')} params`;
    console.log(header);
    console.log(`${new Date().toISOString().slice(0, 10)}${settings.quick ? ', --quick' : ''}`);

    const sections: Section[] = [];
    const log = (line: string) => console.log(line);
    const want = (name: SectionName) => settings.only.includes(name);
    const images = await loadImages(settings.images);
    let step = 0;
    const begin = (title: string) => console.log(`\n## ${++step}. ${title}`);

    // The engine rows are inputs of the e2e and seed sections (request counts, bare medians).
    let engine: Awaited<ReturnType<typeof engineSection>> | undefined;
    if (want('engine') || want('e2e') || want('seed')) {
      begin('Bare engine');
      engine = await engineSection(settings, model, log);
      if (engine.results.some((r) => r.backend !== backend.name)) {
        throw new Error(`the replicas ran on ${engine.results[0]?.backend}, this process selected ${backend.name}`);
      }
      sections.push(engine);
    }
    let preprocess, e2e, seed, capacity, scaleOut;
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
    if (engine && preprocess && e2e && capacity && scaleOut) {
      const targets = targetsSection(
        computeTargets({ engine: engine.results, preprocess: preprocess.result, e2e, seed, capacity, scaleOut, cores: availableParallelism() }),
      );
      sections.unshift(targets);
    }

    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    const markdown = [
      header,
      '',
      `One-run benchmark (\`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`); ${new Date().toISOString().slice(0, 10)}; whole run ${seconds} s.`,
      ...sections.flatMap((s, i) => ['', `## ${i + 1}. ${s.title}`, '', s.markdown]),
      '',
    ].join('\n');
    for (const s of sections) console.log(`\n## ${s.title}\n\n${s.markdown}`);

    mkdirSync(settings.out, { recursive: true });
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
          backend: { name: backend.name, package: backend.package, detail: backend.detail },
          model: { name: model.name, paramCount: model.paramCount },
          sections: Object.fromEntries(sections.map((s) => [s.title, s.json])),
        },
        null,
        2,
      )}\n`,
    );
    console.log(`\nwrote ${join(settings.out, 'bench.md')} and bench.json (${seconds} s)`);
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
