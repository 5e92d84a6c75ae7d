/**
 * Pick the fastest tfjs backend this machine can run, once at start:
 *
 *   @tensorflow/tfjs-node-gpu (libtensorflow + CUDA) -> @tensorflow/tfjs-node (libtensorflow, CPU)
 *   -> @tensorflow/tfjs-backend-wasm (portable, SIMD, one thread in Node) -> @tensorflow/tfjs-backend-cpu
 *
 * The native packages are optionalDependencies: they download libtensorflow at install time, so
 * they are often missing, or present but broken (wrong CUDA, missing .so). Any import error skips
 * them, not only "not installed". Everything uses the one `@tensorflow/tfjs-core`: the native
 * packages register a backend named 'tensorflow' in tfjs' process-global engine, and we check it
 * really became the active backend.
 */
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs-core';
import type { BackendChoice } from '../../config.ts';

export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

export interface SelectedBackend {
  name: BackendName;
  /** Package that provides it, e.g. '@tensorflow/tfjs-backend-wasm'. */
  package: string;
  /** Human-readable: what it runs on. */
  detail: string;
  /** Threads one inference computes on (libtensorflow: its default pool, one per core). */
  threads: number;
  /** libtensorflow found a usable GPU. */
  gpu: boolean;
  /** Packages tried before it and why each was not used. */
  skipped: { package: string; reason: string }[];
}

export const NATIVE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
const WASM_PACKAGE = '@tensorflow/tfjs-backend-wasm';
const CPU_PACKAGE = '@tensorflow/tfjs-backend-cpu';

export class BackendError extends Error {
  override name = 'BackendError';

  constructor(
    message: string,
    /** Each package tried, and why it could not be used. */
    readonly skipped: SelectedBackend['skipped'],
  ) {
    super(message);
  }
}

/**
 * @param choice  'auto' tries all in order; any other value insists on that backend.
 * @param options.nativePackages  override the native candidates (tests use a broken module).
 */
export async function selectBackend(choice: BackendChoice, options: { nativePackages?: string[] } = {}): Promise<SelectedBackend> {
  const skipped: SelectedBackend['skipped'] = [];
  const fail = (wanted: string) =>
    new BackendError(
      `BACKEND=${choice}: ${wanted} could not be used: ${skipped.map((s) => `${s.package}: ${s.reason}`).join('; ')}`,
      skipped,
    );

  if (choice === 'auto' || choice === 'tensorflow') {
    for (const pkg of options.nativePackages ?? NATIVE_PACKAGES) {
      try {
        return { ...(await useNative(pkg)), skipped };
      } catch (error) {
        skipped.push({ package: pkg, reason: describeImportError(error, pkg) });
      }
    }
    if (choice === 'tensorflow') throw fail('no native TensorFlow binding (install @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node)');
  }

  if (choice === 'auto' || choice === 'wasm') {
    try {
      return { ...(await useWasm()), skipped };
    } catch (error) {
      skipped.push({ package: WASM_PACKAGE, reason: describeImportError(error, WASM_PACKAGE) });
      if (choice === 'wasm') throw fail('the wasm backend');
    }
  }

  try {
    await import(CPU_PACKAGE);
    if (!(await tf.setBackend('cpu'))) throw new Error('tf.setBackend("cpu") failed');
    await tf.ready();
    return { name: 'cpu', package: CPU_PACKAGE, detail: 'plain JavaScript (about 20x slower than wasm)', threads: 1, gpu: false, skipped };
  } catch (error) {
    skipped.push({ package: CPU_PACKAGE, reason: describeImportError(error, CPU_PACKAGE) });
    throw fail('no backend');
  }
}

async function useNative(pkg: string): Promise<Omit<SelectedBackend, 'skipped'>> {
  await import(pkg);
  if (!tf.findBackendFactory('tensorflow')) {
    throw new Error('imported, but no "tensorflow" backend appeared in @tensorflow/tfjs-core (a mismatched tfjs-core version?)');
  }
  if (!(await tf.setBackend('tensorflow')) || tf.getBackend() !== 'tensorflow') {
    throw new Error('the "tensorflow" backend failed to initialise');
  }
  await tf.ready();
  // tfjs-node-gpu falls back to the CPU silently when CUDA is unusable; its backend knows.
  const onGpu = (tf.backend() as { isUsingGpuDevice?: boolean }).isUsingGpuDevice;
  const device = onGpu === undefined ? '' : onGpu ? ', on the GPU' : ', on the CPU (no usable GPU)';
  return {
    name: 'tensorflow',
    package: pkg,
    detail: `libtensorflow via ${pkg}${device}`,
    threads: availableParallelism(),
    gpu: onGpu === true,
  };
}

/**
 * The wasm backend's Emscripten runtime, when it initialises in Node, adds process listeners for
 * 'uncaughtException' and 'unhandledRejection' that re-throw: any unhandled rejection anywhere in
 * the process (a dropped Redis command, say) would then crash it. We remove exactly the listeners
 * that appeared during its import + initialisation (a before/after diff; other listeners stay);
 * main.ts installs logging handlers of its own.
 */
async function useWasm(): Promise<Omit<SelectedBackend, 'skipped'>> {
  const events = ['uncaughtException', 'unhandledRejection'];
  const emitter: NodeJS.EventEmitter = process; // plain EventEmitter typing: both events, one loop
  const before = new Map(events.map((event) => [event, new Set(emitter.listeners(event))]));
  try {
    const wasm = (await import(WASM_PACKAGE)) as { getThreadsCount?: () => number };
    if (!(await tf.setBackend('wasm'))) throw new Error('tf.setBackend("wasm") failed');
    await tf.ready();
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const threads = wasm.getThreadsCount?.() ?? 1;
    return {
      name: 'wasm',
      package: WASM_PACKAGE,
      detail: `WebAssembly${simd ? ' with SIMD' : ''}, ${threads} thread${threads === 1 ? '' : 's'} (run one process per core)`,
      threads,
      gpu: false,
    };
  } finally {
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)?.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
}

function describeImportError(error: unknown, pkg: string): string {
  const err = error as NodeJS.ErrnoException;
  if ((err.code === 'ERR_MODULE_NOT_FOUND' || err.code === 'MODULE_NOT_FOUND') && err.message.includes(pkg)) return 'not installed';
  // npm ci runs no install script here (.npmrc), and the tfjs-node packages fetch libtensorflow and
  // their binding in theirs.
  if (/tfjs_binding\.node\) can not be found/.test(String(err?.message))) {
    return 'installed without its native binding (its install script, which downloads libtensorflow, has not run: docs/engines.md#on-a-gpu)';
  }
  const firstLine = String(err?.message ?? error).split('\n')[0];
  return `${err?.code ?? err?.name ?? 'Error'}: ${firstLine}`;
}
