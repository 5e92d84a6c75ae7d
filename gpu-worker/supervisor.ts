/**
 * INFERENCE_PROCESSES > 1: run that many copies of this worker as child processes of one
 * supervisor. The tfjs wasm backend computes on a single thread in Node, so a CPU-only box on it
 * serves about N times more with N processes on N cores; ONNX Runtime and GPUs want one process.
 *
 * Each child is `main.ts` again (forked with the same execArgv, so tsx keeps working) with
 * INFERENCE_PROCESSES=1 and CONSUMER_NAME=<name>-<slot>. A child that crashes is restarted after
 * a backoff (1 s, doubling to 30 s; reset once a child has run for a minute), under the same
 * consumer name so its unacknowledged jobs stay attributed to that slot. Each child serves its own
 * Prometheus /metrics on METRICS_PORT+<slot> (slots 1..N), none on METRICS_PORT itself. SIGTERM/SIGINT are
 * forwarded; the supervisor exits when all children have.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { CONFIG_EXIT_CODE } from '../shared/config.ts';
import type { Logger } from '../shared/log.ts';
import type { WorkerConfig } from './config.ts';

const MIN_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 30_000;
const HEALTHY_AFTER_MS = 60_000;
/** A child exiting with this code has a configuration problem: restarting cannot help. */
/** Set on the children, so they leave Ctrl-C to the supervisor and exit if it disappears. */
export const SUPERVISED_ENV = 'RN_WORKER_SUPERVISED';

/** Message a child sends its supervisor over IPC once it is ready. */
export interface ChildReadyMessage {
  type: 'ready';
  consumer: string;
}

export function superviseProcesses(config: WorkerConfig, log: Logger): Promise<number> {
  const count = config.inferenceProcesses;
  const slots: { child?: ChildProcess; startedAt: number; failures: number; timer?: NodeJS.Timeout }[] = [];
  const readySlots = new Set<number>();
  let stopping = false;
  let exitCode = 0;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => (finish = resolve));

  const spawnSlot = (slot: number) => {
    const consumer = `${config.consumerName}-${slot + 1}`;
    const child = fork(process.argv[1]!, process.argv.slice(2), {
      execArgv: process.execArgv,
      env: {
        ...process.env,
        INFERENCE_PROCESSES: '1',
        // The cores shared out over the children (a child alone would take them all).
        INFERENCE_THREADS: String(config.inferenceThreads),
        CONSUMER_NAME: consumer,
        // One /metrics port per child (each its own process and registry); the supervisor serves none.
        METRICS_PORT: config.metricsPort > 0 ? String(config.metricsPort + slot + 1) : '0',
        [SUPERVISED_ENV]: '1',
      },
      stdio: 'inherit',
    });
    const state = (slots[slot] ??= { startedAt: 0, failures: 0 });
    state.child = child;
    state.startedAt = Date.now();
    child.on('message', (message: Partial<ChildReadyMessage>) => {
      if (message?.type !== 'ready' || readySlots.has(slot)) return;
      readySlots.add(slot);
      if (readySlots.size === count) log.info({ processes: count }, 'all inference processes ready');
    });
    child.on('exit', (code, signal) => {
      state.child = undefined;
      if (stopping) {
        if (slots.every((s) => !s.child)) finish(exitCode);
        return;
      }
      if (code === CONFIG_EXIT_CODE) {
        log.fatal({ consumer, code }, 'inference process exited with a configuration error; stopping');
        exitCode = CONFIG_EXIT_CODE;
        stopAll('SIGTERM');
        if (slots.every((s) => !s.child)) finish(exitCode);
        return;
      }
      if (Date.now() - state.startedAt > HEALTHY_AFTER_MS) state.failures = 0;
      const delay = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** state.failures);
      state.failures++;
      log.error({ consumer, code, signal, restartInMs: delay }, 'inference process exited; restarting');
      state.timer = setTimeout(() => spawnSlot(slot), delay);
    });
  };

  const stopAll = (signal: NodeJS.Signals) => {
    stopping = true;
    for (const state of slots) {
      clearTimeout(state.timer);
      state.child?.kill(signal);
    }
  };

  let signals = 0;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      // A second signal means "now": kill the children instead of letting them drain.
      signals++;
      log.info({ signal, processes: count }, signals === 1 ? 'stopping inference processes' : 'killing inference processes');
      stopAll(signals === 1 ? 'SIGTERM' : 'SIGKILL');
      if (slots.every((s) => !s.child)) finish(exitCode);
    });
  }

  log.info({ processes: count, consumer: config.consumerName }, 'starting inference processes');
  for (let slot = 0; slot < count; slot++) spawnSlot(slot);
  return finished;
}
