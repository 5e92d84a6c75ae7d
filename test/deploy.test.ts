/**
 * deploy/: the GPU worker's two images (Dockerfile: ONNX Runtime on CUDA 12; Dockerfile.tfjs:
 * TensorFlow.js on CUDA 11.2), compose file, systemd unit and fly.toml. No Docker daemon or GPU
 * here, so each file is read with a real parser (dockerfile-ast, yaml, smol-toml) and checked for
 * what a deploy depends on; the unit goes through `systemd-analyze verify`; and the worker is
 * started the way each image and the unit start it (the Dockerfile's COPY set, its CMD and ENV,
 * the unit's ExecStart) against a real redis-server, with the image's HEALTHCHECK run against it.
 * The Workers edge bundle (`wrangler deploy --dry-run`) is checked by workers-bundle.test.ts.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { cp, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { DockerfileParser, type Dockerfile, type Instruction } from 'dockerfile-ast';
import { parse as parseToml } from 'smol-toml';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from '../dev/processes.ts';
import { freePort, hasRedisServer, startRedisServer } from '../dev/redis-server.ts';
import { selectBackend } from '../gpu-worker/engine/tfjs/backend.ts';
import { createTinyModel } from './helpers/tiny-model.ts';

// The tiny model is made with tfjs in this process.
await selectBackend('wasm');

const run = promisify(execFile);
const DEPLOY = join(REPO_ROOT, 'deploy');
const COMPOSE = join(DEPLOY, 'gpu-worker/compose.yaml');
const UNIT = join(DEPLOY, 'gpu-worker/resnet-edge-worker.service');
const FLY = join(DEPLOY, 'fly/fly.toml');

/** Each image, and what must hold for it. */
const IMAGES = [
  {
    file: 'Dockerfile',
    what: 'ONNX Runtime',
    // onnxruntime-node's GPU providers: CUDA 12.x with cuDNN 9.x (NVIDIA's "-cudnn-" tags of CUDA 12.3+ carry cuDNN 9).
    baseImage: /^(?:docker\.io\/)?nvidia\/cuda:12\.\d+(?:\.\d+)?-cudnn(?:9)?-runtime-ubuntu\d+\.\d+(?:@sha256:[0-9a-f]{64})?$/,
    env: { ENGINE: 'onnx', EXECUTION_PROVIDER: 'cuda' },
    // The GPU providers installed at build time, and checked for.
    install: [
      /ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install/,
      /libonnxruntime_providers_cuda\.so/,
      /libonnxruntime_providers_tensorrt\.so/,
    ],
    prefetchEngine: 'onnx',
  },
  {
    file: 'Dockerfile.tfjs',
    what: 'TensorFlow.js',
    // tfjs-node-gpu 4.x loads libtensorflow 2.9, built for CUDA 11.2 + cuDNN 8.
    baseImage: /^(?:docker\.io\/)?nvidia\/cuda:11\.2(?:\.\d+)?-cudnn8-runtime-ubuntu\d+\.\d+(?:@sha256:[0-9a-f]{64})?$/,
    env: { BACKEND: 'tensorflow', TF_FORCE_GPU_ALLOW_GROWTH: 'true' },
    install: [/npm ci\b/, /@tensorflow\/tfjs-node-gpu/, /scripts\/install\.js gpu download/],
    prefetchEngine: 'tfjs',
  },
] as const;

// ---------------------------------------------------------------- Dockerfile helpers

interface Stage {
  name: string | null;
  /** The FROM image with ARG defaults substituted. */
  image: string;
  instructions: Instruction[];
}

/** `file`: under deploy/. */
function parseDockerfile(file: string): { dockerfile: Dockerfile; stages: Stage[]; args: Map<string, string> } {
  const dockerfile = DockerfileParser.parse(readFileSync(join(DEPLOY, file), 'utf8'));
  const args = new Map(dockerfile.getInitialARGs().map((arg) => [arg.getProperty()!.getName(), arg.getProperty()!.getValue() ?? '']));
  const froms = dockerfile.getFROMs();
  const stages = froms.map((from, i) => {
    const start = from.getRange().start.line;
    const end = froms[i + 1]?.getRange().start.line ?? Number.POSITIVE_INFINITY;
    return {
      name: from.getBuildStage(),
      image: substitute(from.getImage()!, args),
      instructions: dockerfile.getInstructions().filter((ins) => ins.getRange().start.line > start && ins.getRange().start.line < end),
    };
  });
  return { dockerfile, stages, args };
}

/** `${NAME}` / `$NAME` replaced by the build arguments' defaults, as a build without --build-arg sees them. */
const substitute = (text: string, args: Map<string, string>) =>
  text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => args.get((a ?? b)!) ?? whole);

/** The image a stage ultimately starts from, following `FROM <stage>` links. */
function rootImage(stages: Stage[], stage: Stage): string {
  const parent = stages.find((s) => s.name === stage.image);
  return parent ? rootImage(stages, parent) : stage.image;
}

const keyword = (stage: Stage, name: string) => stage.instructions.filter((ins) => ins.getKeyword() === name);
const flag = (ins: Instruction, name: string) =>
  (ins as unknown as { getFlags(): { getName(): string; getValue(): string | null }[] }).getFlags().find((f) => f.getName() === name);
/** A stage's ENV, build arguments substituted (`args`: the defaults a plain build uses). */
const envOf = (stage: Stage, args = new Map<string, string>()) =>
  Object.fromEntries(
    keyword(stage, 'ENV').flatMap((ins) =>
      (ins as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] })
        .getProperties()
        .map((p) => [p.getName(), p.getValue() === null ? null : substitute(p.getValue()!, args)]),
    ),
  ) as Record<string, string | null>;
/** COPY instructions that read the build context (not --from another stage): [sources, dest]. */
const contextCopies = (stage: Stage) =>
  keyword(stage, 'COPY')
    .filter((ins) => !flag(ins, 'from'))
    .map((ins) => {
      const args = ins.getArguments().map((a) => a.getValue());
      return { sources: args.slice(0, -1), dest: args.at(-1)! };
    });

/**
 * An image's working directory as the image has it (only what the final stage copies from the
 * context, node_modules linked), its CMD and its environment (`cacheDir`: MODEL_CACHE_DIR in it).
 */
async function imageFiles(file: string, options: { workDir: string; cacheDir?: string }) {
  const { dockerfile, stages, args } = parseDockerfile(file);
  const final = stages.at(-1)!;
  const cmd = JSON.parse(keyword(final, 'CMD').at(-1)!.getArgumentsContent()!) as string[];
  const dir = await mkdtemp(join(tmpdir(), options.workDir));
  for (const { sources, dest } of contextCopies(final)) {
    for (const source of sources) {
      const target = dest.endsWith('/') ? join(dir, dest, basename(source)) : join(dir, dest);
      await cp(join(REPO_ROOT, source), target, { recursive: true });
    }
  }
  await symlink(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'));
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? dir,
    ...envOf(final, args),
    ...(options.cacheDir && { MODEL_CACHE_DIR: join(dir, options.cacheDir) }),
  } as Record<string, string>;
  return { dockerfile, cmd, dir, env };
}

/**
 * An image's CMD run from its files (imageFiles), resolved once its output shows `readyText`;
 * rejects with everything it printed if it exits first or takes over a minute.
 */
async function startImageCmd(cmd: string[], dir: string, env: Record<string, string>, readyText: string) {
  const child = spawn(process.execPath, cmd.slice(1), { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  try {
    await new Promise<void>((ready, fail) => {
      const timer = setTimeout(() => fail(new Error(`no ${readyText} within 60 s:\n${output}`)), 60_000);
      child.stdout.on('data', () => {
        if (!output.includes(readyText)) return;
        clearTimeout(timer);
        ready();
      });
      void exited.then((code) => {
        clearTimeout(timer);
        fail(new Error(`${cmd.join(' ')} exited ${code}:\n${output}`));
      });
    });
  } catch (error) {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw error;
  }
  return { child, exited };
}

/** The HEALTHCHECK command of `dockerfile`, as Docker runs it (through a shell), with `env`: its exit status. */
const runHealthcheck = (dockerfile: Dockerfile, env: Record<string, string>) =>
  spawnSync(
    '/bin/sh',
    [
      '-c',
      dockerfile
        .getHEALTHCHECKs()
        .at(-1)!
        .getArgumentsContent()!
        .replace(/^.*?\bCMD\s+/s, ''),
    ],
    { env },
  ).status;

// ---------------------------------------------------------------- systemd unit helpers

/** Key -> values of a unit file (repeated keys keep every value). */
function unitSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (match) settings.set(match[1]!, [...(settings.get(match[1]!) ?? []), match[2]!]);
  }
  return settings;
}

const systemdAnalyze =
  ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find((path) => existsSync(path)) ??
  (spawnSync('systemd-analyze', ['--version']).status === 0 ? 'systemd-analyze' : undefined);

// ================================================================ tests

describe.each(IMAGES)('deploy/gpu-worker/$file ($what)', (image) => {
  const { stages, args } = parseDockerfile(join('gpu-worker', image.file));
  const final = stages.at(-1)!;

  it("runs on the CUDA runtime image its engine is built for, with the engine's settings and a non-root user", () => {
    for (const stage of stages) expect(rootImage(stages, stage), `stage ${stage.name}`).toMatch(image.baseImage);
    expect(envOf(final, args)).toMatchObject(image.env);
    const users = keyword(final, 'USER').map((ins) => ins.getArgumentsContent()?.trim());
    expect(users.length).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^(root|0)(:|$)/);
    expect(keyword(final, 'STOPSIGNAL').map((ins) => ins.getArgumentsContent()?.trim())).toEqual(['SIGTERM']);
  });

  it('installs the GPU libraries its engine needs and prefetches the model at build time into the cache the worker reads', () => {
    const runs = stages.flatMap((stage) => keyword(stage, 'RUN').map((ins) => ({ stage, text: ins.getArgumentsContent() ?? '' })));
    for (const step of image.install)
      expect(
        runs.some(({ text }) => step.test(text)),
        `a RUN step matching ${step}`,
      ).toBe(true);
    const prefetch = runs.find(({ text }) => /npm run worker:prefetch|gpu-worker\/model\/prefetch\.ts/.test(text));
    expect(prefetch, 'a RUN step runs the prefetch CLI').toBeDefined();
    // For the image's engine: the ONNX image converts the graph at build time, the tfjs one does not.
    expect(prefetch!.text).toMatch(new RegExp(`ENGINE=${image.prefetchEngine}\\b`));
    // The npm script exists and names the CLI that exists.
    const scripts = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>;
    expect(scripts['worker:prefetch']).toBe('tsx gpu-worker/model/prefetch.ts');
    expect(existsSync(join(REPO_ROOT, 'gpu-worker/model/prefetch.ts'))).toBe(true);
    // Prefetched into MODEL_CACHE_DIR as set for that step, and the final stage copies that very
    // directory and points the worker at it.
    const cacheAtBuild = envOf(prefetch!.stage).MODEL_CACHE_DIR;
    expect(cacheAtBuild).toMatch(/^\//);
    const fromPrefetch = keyword(final, 'COPY').filter((ins) => flag(ins, 'from')?.getValue() === prefetch!.stage.name);
    expect(fromPrefetch.some((ins) => ins.getArguments()[0]?.getValue() === cacheAtBuild)).toBe(true);
    expect(envOf(final).MODEL_CACHE_DIR).toBe(cacheAtBuild);
  });

  it('copies only sources that exist, from stages that exist, and ignores local state in the context', () => {
    for (const stage of stages) {
      for (const { sources } of contextCopies(stage)) {
        for (const source of sources) expect(existsSync(join(REPO_ROOT, source)), `COPY ${source}`).toBe(true);
      }
      for (const ins of keyword(stage, 'COPY').filter((i) => flag(i, 'from'))) {
        expect(stages.map((s) => s.name)).toContain(flag(ins, 'from')!.getValue());
      }
    }
    const copied = contextCopies(final).flatMap((c) => c.sources);
    expect(copied.sort()).toEqual(['gpu-worker', 'package-lock.json', 'package.json', 'shared', 'tsconfig.json']);
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const entry of ['**/node_modules', '.git', 'bench/results', 'dist', 'deploy/gpu-worker/worker.env'])
      expect(ignored).toContain(entry);
  });
});

describe('deploy/gpu-worker/compose.yaml', () => {
  const compose = parseYaml(readFileSync(COMPOSE, 'utf8'));
  const service = compose.services['gpu-worker'];

  it('reserves an NVIDIA GPU and builds the ONNX Runtime image from the repo root (or the tfjs one, when asked)', () => {
    const devices = service.deploy.resources.reservations.devices as { driver: string; capabilities: string[] }[];
    expect(devices.some((d) => d.driver === 'nvidia' && d.capabilities.includes('gpu'))).toBe(true);
    const context = resolve(DEPLOY, 'gpu-worker', service.build.context);
    expect(context).toBe(resolve(REPO_ROOT));
    // Compose's ${VAR:-default}, as a plain `up` and as the documented tfjs variant see it.
    const dockerfile = (vars: Record<string, string>) =>
      String(service.build.dockerfile).replace(/\$\{(\w+):-([^}]*)\}/g, (_, name: string, fallback: string) => vars[name] ?? fallback);
    expect(dockerfile({})).toBe('deploy/gpu-worker/Dockerfile');
    expect(dockerfile({ WORKER_DOCKERFILE: 'Dockerfile.tfjs' })).toBe('deploy/gpu-worker/Dockerfile.tfjs');
    for (const file of [dockerfile({}), dockerfile({ WORKER_DOCKERFILE: 'Dockerfile.tfjs' })])
      expect(existsSync(join(context, file)), file).toBe(true);
    expect(readFileSync(COMPOSE, 'utf8')).toContain('WORKER_DOCKERFILE=Dockerfile.tfjs');
  });

  it('takes its settings from an env file, never inline, and the real env file is ignored by git', () => {
    expect(service.env_file).toContain('worker.env');
    // No inline environment that could hold a secret, and no Redis URL anywhere in the file.
    const inline = Object.keys(service.environment ?? {});
    expect(inline.filter((key) => /REDIS|UPSTASH|TOKEN|PASSWORD|SECRET|KEY/i.test(key))).toEqual([]);
    expect(readFileSync(COMPOSE, 'utf8')).not.toMatch(/rediss?:\/\//);
    // The example exists and holds a placeholder, not a password.
    const example = readFileSync(join(DEPLOY, 'gpu-worker/worker.env.example'), 'utf8');
    expect(example).toMatch(/^REDIS_URL=rediss?:\/\/[^\n]*CHANGE_ME/m);
    expect(readFileSync(join(DEPLOY, 'gpu-worker/.gitignore'), 'utf8').split('\n')).toContain('worker.env');
  });

  it('restarts the worker, gives it time to finish its batch on SIGTERM, and publishes the metrics port', () => {
    expect(service.restart).toMatch(/^(always|unless-stopped|on-failure)/);
    expect(service.stop_signal).toBe('SIGTERM');
    const grace = /^(\d+)(s|m)$/.exec(service.stop_grace_period);
    expect(grace).not.toBeNull();
    expect(Number(grace![1]) * (grace![2] === 'm' ? 60 : 1)).toBeGreaterThanOrEqual(30);
    expect((service.ports as string[]).some((p) => p.endsWith(':9464'))).toBe(true);
  });
});

describe('deploy/gpu-worker/resnet-edge-worker.service', () => {
  const text = readFileSync(UNIT, 'utf8');
  const settings = unitSettings(text);
  const one = (key: string) => settings.get(key)?.at(-1);

  it('runs node directly as a dedicated user, with the GPU settings, SIGTERM and hardening', () => {
    expect(one('User')).toMatch(/^[a-z][a-z0-9-]*$/);
    expect(one('User')).not.toBe('root');
    expect(one('WorkingDirectory')).toBe('/opt/resnet-edge');
    expect(one('EnvironmentFile')).toBe('/etc/resnet-edge/worker.env');
    expect(settings.get('Environment')).toEqual(expect.arrayContaining(['EXECUTION_PROVIDER=cuda', 'TF_FORCE_GPU_ALLOW_GROWTH=true']));
    expect(one('ExecStart')).toMatch(/^\/\S+\/node --import tsx gpu-worker\/main\.ts$/);
    expect(one('Restart')).toBe('on-failure');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('TimeoutStopSec')).toBeDefined();
    expect(one('NoNewPrivileges')).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('PrivateTmp')).toBe('yes');
    // The model cache must stay writable under ProtectSystem=strict.
    const cache = settings
      .get('Environment')!
      .find((e) => e.startsWith('MODEL_CACHE_DIR='))!
      .split('=')[1]!;
    expect(settings.get('ReadWritePaths')?.some((path) => cache.startsWith(`${path}/`))).toBe(true);
    // PrivateDevices would hide /dev/nvidia*.
    expect(settings.has('PrivateDevices')).toBe(false);
  });

  // verify exits 0 even for unknown keys or unparsable values (it only warns), so the check is
  // "exit 0 and not a single line about this unit". It also checks ExecStart= exists: when this
  // machine's node is elsewhere than the unit's path, the copy points at this machine's node.
  // User= needs no such help: verify does not look the user up.
  it.skipIf(!systemdAnalyze)(
    `passes systemd-analyze verify${systemdAnalyze ? '' : ' (skipped: systemd-analyze is not installed here)'}`,
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'unit-verify-'));
      const verify = async (unitText: string) => {
        const path = join(dir, basename(UNIT));
        await writeFile(path, unitText);
        const result = await run(systemdAnalyze!, ['verify', '--man=no', path]).then(
          ({ stderr }) => ({ code: 0, stderr }),
          (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
        );
        const lines = result.stderr.split('\n').filter((line) => line.includes(basename(UNIT)));
        return { code: result.code, lines };
      };
      try {
        const node = one('ExecStart')!.split(' ')[0]!;
        const local = existsSync(node) ? text : text.replace(`ExecStart=${node} `, `ExecStart=${process.execPath} `);
        expect(await verify(local)).toEqual({ code: 0, lines: [] });
        // The check can fail: a misspelt key and a missing executable are both reported.
        expect((await verify(local.replace('ProtectSystem=strict', 'ProtectSystm=strict'))).lines.join('\n')).toMatch(/Unknown key/);
        expect((await verify(local.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'))).code).not.toBe(0);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('deploy/fly/fly.toml', () => {
  const text = readFileSync(FLY, 'utf8');

  it('asks for an A100 machine, runs the ONNX Runtime image on CUDA, stops with SIGTERM, and says plainly that Fly GPUs are deprecated', () => {
    const fly = parseToml(text) as {
      vm: { size: string }[];
      kill_signal: string;
      http_service?: unknown;
      metrics?: { port: number };
      env: Record<string, string>;
    };
    expect(fly.env).toMatchObject({ ENGINE: 'onnx', EXECUTION_PROVIDER: 'cuda' });
    expect(text).toContain('--dockerfile deploy/gpu-worker/Dockerfile\n');
    expect(fly.vm.map((vm) => vm.size)).toEqual(['a100-40gb']);
    expect(fly.kill_signal).toBe('SIGTERM');
    expect(fly.http_service).toBeUndefined();
    expect(fly.metrics?.port).toBe(9464);
    const header = text.slice(0, text.search(/^[a-z_]+\s*=/m));
    expect(header).toMatch(/^#.*deprecated/im);
    expect(header).toMatch(/August 1, 2026/);
    expect(header).toMatch(/compose|systemd/);
  });
});

describe.each(IMAGES)('$file and the unit start a real worker', (image) => {
  const imageDir = () => imageFiles(join('gpu-worker', image.file), { workDir: 'worker-image-', cacheDir: 'models' });

  it.skipIf(!hasRedisServer())(
    'from the files the Dockerfile copies, with its CMD; the HEALTHCHECK passes; SIGTERM exits 0',
    async () => {
      const { dockerfile, cmd, dir, env: imageEnv } = await imageDir();
      // The unit runs the same command line.
      const unitExec = unitSettings(readFileSync(UNIT, 'utf8')).get('ExecStart')!.at(-1)!.split(' ');
      expect(unitExec.slice(1)).toEqual(cmd.slice(1));
      expect(cmd[0]).toBe('node');
      const redis = await startRedisServer();
      try {
        const metricsPort = await freePort();
        const env = {
          ...imageEnv,
          // No GPU or weights here: the synthetic model loads no engine.
          MODEL: 'synthetic:instant',
          REDIS_URL: redis.url,
          KEY_PREFIX: `deploy${process.pid}`,
          METRICS_PORT: String(metricsPort),
        } as Record<string, string>;
        const { child, exited } = await startImageCmd(cmd, dir, env, '"msg":"worker ready"');
        try {
          const check = (port: number) => runHealthcheck(dockerfile, { ...env, METRICS_PORT: String(port) });
          expect(check(metricsPort)).toBe(0);
          expect(check(await freePort())).not.toBe(0);

          child.kill('SIGTERM');
          expect(await exited).toBe(0);
        } finally {
          if (child.exitCode === null) child.kill('SIGKILL');
        }
      } finally {
        await redis.stop();
        await rm(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );

  it('with a real model and no GPU, exits 2 saying why instead of serving from the CPU', async () => {
    const { cmd, dir, env } = await imageDir();
    const tiny = await createTinyModel({ seed: 3 });
    try {
      const result = await run(process.execPath, cmd.slice(1), {
        cwd: dir,
        env: { ...env, MODEL: tiny.dir, PREPROCESS: 'caffe', REDIS_URL: 'redis://127.0.0.1:9', METRICS_PORT: '0' },
        timeout: 60_000,
      }).then(
        () => ({ code: 0, stderr: '' }),
        (error: { code: number; stderr: string }) => error,
      );
      expect(result.code).toBe(2);
      const setting = image.file === 'Dockerfile' ? 'EXECUTION_PROVIDER=cuda' : 'BACKEND=tensorflow';
      expect(result.stderr).toMatch(new RegExp(`^${setting}: nothing could start here: `, 'm'));
    } finally {
      await tiny.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('deploy/edge/Dockerfile (the Node edge)', () => {
  const file = 'edge/Dockerfile';
  const { stages } = parseDockerfile(file);
  const final = stages.at(-1)!;

  it("runs on Node 20 as the image's unprivileged user, copies the edge's sources only, and stops on SIGTERM", () => {
    for (const stage of stages)
      expect(rootImage(stages, stage), `stage ${stage.name}`).toMatch(/^node:20(?:[.\-\w]*)?(?:@sha256:[0-9a-f]{64})?$/);
    expect(keyword(final, 'USER').at(-1)?.getArgumentsContent()?.trim()).toBe('node');
    expect(keyword(final, 'STOPSIGNAL').map((ins) => ins.getArgumentsContent()?.trim())).toEqual(['SIGTERM']);
    const copied = contextCopies(final).flatMap((c) => c.sources);
    expect(copied.sort()).toEqual(['edge', 'package-lock.json', 'package.json', 'shared', 'tsconfig.json']);
    for (const source of contextCopies(stages[0]!).flatMap((c) => c.sources))
      expect(existsSync(join(REPO_ROOT, source)), `COPY ${source}`).toBe(true);
  });

  it.skipIf(!hasRedisServer())(
    'from the files it copies, with its CMD and ENV: the edge serves, the HEALTHCHECK passes, SIGTERM exits 0',
    async () => {
      const { dockerfile, cmd, dir, env: imageEnv } = await imageFiles(file, { workDir: 'edge-image-' });
      expect(cmd[0]).toBe('node');
      const redis = await startRedisServer();
      try {
        const port = await freePort();
        const env = { ...imageEnv, REDIS_URL: redis.url, PORT: String(port) };
        const { child, exited } = await startImageCmd(cmd, dir, env, '"msg":"edge listening"');
        try {
          // No worker: /readyz says why it is not ready, /healthz is up, and so is the HEALTHCHECK.
          expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(503);
          expect(runHealthcheck(dockerfile, env)).toBe(0);
          expect(runHealthcheck(dockerfile, { ...env, PORT: String(await freePort()) })).not.toBe(0);
          child.kill('SIGTERM');
          expect(await exited).toBe(0);
        } finally {
          if (child.exitCode === null) child.kill('SIGKILL');
        }
      } finally {
        await redis.stop();
        await rm(dir, { recursive: true, force: true });
      }
    },
    90_000,
  );
});
