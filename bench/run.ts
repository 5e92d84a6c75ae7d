/**
 * `npm run bench [-- --quick] [--model tiny|resnet50] [--backend auto|wasm|tensorflow|cpu]`
 *
 * One run, one report: bench/results/bench.{md,json}. The first line (printed and written) names
 * the machine, Node, the backend actually selected and the model. Sections, each one function that
 * returns its markdown and its JSON:
 *
 *   1. engineSection: the bare engine (bench/engine.ts), no HTTP and no Redis.
 *
 * `--quick` runs fewer batches (the numbers are noisier); `--model tiny` uses the tiny test model
 * (test/helpers/tiny-model.ts) so the whole run takes seconds, for CI.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BACKEND_CHOICES, type BackendChoice } from '../gpu-worker/config.ts';
import { selectBackend, type SelectedBackend } from '../gpu-worker/backend.ts';
import { BUILTIN_MODEL } from '../gpu-worker/model/builtin.ts';
import type { PreprocessMode } from '../gpu-worker/model/preprocess.ts';
import { benchEngine, countParamsInManifest, type EngineProgress, type EngineResult } from './engine.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const RESULTS_DIR = join(HERE, 'results');

export interface RunSettings {
  quick: boolean;
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
  return `${cpu}, ${availableParallelism()} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GB RAM`;
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
  };
}

export async function engineSection(settings: RunSettings, model: ModelUnderTest, log: (line: string) => void): Promise<Section & { results: EngineResult[] }> {
  const plan = engineSettings(settings, availableParallelism());
  const started = Date.now();
  const steps = plan.replicas.length * plan.batchSizes.length;
  let step = 0;
  const results = await benchEngine({
    model: model.spec,
    preprocess: model.preprocess,
    backend: settings.backend,
    ...plan,
    onProgress: (event: EngineProgress) => {
      if (event.kind === 'loading') log(`  ${event.replicas} replica(s): loading the model`);
      if (event.kind === 'warming') log(`  [${++step}/${steps}] batch ${event.batchSize} x ${event.replicas} replica(s): warming up`);
      // Every batch on a terminal (in place), about every quarter in a log.
      const quarter = Math.max(1, Math.ceil((event.kind === 'batch' ? event.total : 1) / 4));
      if (event.kind === 'batch' && (process.stdout.isTTY || event.done % quarter === 0 || event.done === event.total)) {
        const line = `  [${step}/${steps}] batch ${event.batchSize} x ${event.replicas} replica(s): ${event.done}/${event.total} batches`;
        if (process.stdout.isTTY) process.stdout.write(`\r${line}${event.done === event.total ? '\n' : ''}`);
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
    `${model.name} through \`${results[0]?.backend}\` (${results[0]?.backendDetail}); random uint8 tensors; each replica is its own process; ${plan.warmup} warm-up batch(es) per batch size; whole section ${seconds} s.`,
    '',
    '| batch | replicas | batches/replica | median ms/batch | ms/img | img/s per replica | aggregate img/s | vs 1 replica |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
    '- **median ms/batch**: one `Classifier.classifyWithStats` call (tensor build, predict, top-5 read back), median over every replica\'s timed batches.',
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
      model: { type: 'string', default: 'resnet50' },
      backend: { type: 'string', default: 'auto' },
    },
  });
  if (values.model !== 'tiny' && values.model !== 'resnet50') throw new Error(`--model: expected tiny or resnet50, got ${values.model}`);
  if (!(BACKEND_CHOICES as readonly string[]).includes(values.backend)) throw new Error(`--backend: expected one of ${BACKEND_CHOICES.join(', ')}, got ${values.backend}`);
  return { quick: values.quick, model: values.model, backend: values.backend as BackendChoice };
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
    console.log(`\n## 1. ${'Bare engine'}`);
    const engine = await engineSection(settings, model, (line) => console.log(line));
    if (engine.results.some((r) => r.backend !== backend.name)) {
      throw new Error(`the replicas ran on ${engine.results[0]?.backend}, this process selected ${backend.name}`);
    }
    sections.push(engine);

    const seconds = ((Date.now() - started) / 1000).toFixed(0);
    const markdown = [
      header,
      '',
      `One-run benchmark (\`npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}\`); ${new Date().toISOString().slice(0, 10)}; whole run ${seconds} s.`,
      ...sections.flatMap((s, i) => ['', `## ${i + 1}. ${s.title}`, '', s.markdown]),
      '',
    ].join('\n');
    for (const s of sections) console.log(`\n## ${s.title}\n\n${s.markdown}`);

    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, 'bench.md'), markdown);
    writeFileSync(
      join(RESULTS_DIR, 'bench.json'),
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
    console.log(`\nwrote ${resolve(RESULTS_DIR, 'bench.md')} and bench.json (${seconds} s)`);
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
