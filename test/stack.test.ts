/**
 * `npm start` as a user runs it, with WORKERS=2 and the real Keras ResNet50: the seed's beagle
 * gives Keras' answer, and 50 concurrent requests are each answered once and correctly. A worker
 * killed is started again while the other serves; Ctrl-C (SIGINT to the stack's process group, as
 * a terminal sends it) stops every tier once, in order.
 */
import { readFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../dev/redis-server.ts';
import { spawnTier, type TierProcess } from '../dev/processes.ts';
import { waitFor } from './helpers/faults.ts';
import { FIXTURES } from './helpers/images.ts';

interface ManifestEntry {
  file: string;
  expected_class: string;
  keras_reference?: Record<string, number>;
}
const manifest: ManifestEntry[] = JSON.parse(await readFile(`${FIXTURES}manifest.json`, 'utf8'));

let stack: TierProcess;
let url: string;
const output: string[] = [];

beforeAll(async () => {
  const port = await freePort();
  url = `http://localhost:${port}`;
  stack = spawnTier({
    name: 'stack',
    entry: 'dev/stack.ts',
    env: { WORKERS: '2', PORT: String(port), REDIS_URL: undefined, BATCH_SIZE: undefined },
    readyMessage: 'Ready:',
    print: (line) => output.push(line),
    detached: true, // its own process group, like a shell's foreground job
  });
  await stack.ready;
}, 240_000);

/** Tiers run in process groups of their own: whatever the outcome, none may outlive the test. */
function killLeftovers() {
  for (const match of output.join('\n').matchAll(/started \(pid (\d+)\)/g)) {
    try {
      process.kill(Number(match[1]), 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

afterAll(async () => {
  if (!stack) return;
  if (stack.child.exitCode !== null) return killLeftovers();
  const exited = new Promise((resolve) => stack.child.once('exit', resolve));
  // Ctrl-C: the terminal signals the whole foreground process group.
  process.kill(-stack.child.pid!, 'SIGINT');
  await exited;
  killLeftovers();
  expect(stack.child.exitCode).toBe(0);
  const text = output.join('\n');
  const order = ['[stack] stopping the edge', '[stack] stopping 2 worker(s)', '[stack] stopping the queue', '[stack] stopped'].map((line) =>
    text.indexOf(line),
  );
  expect(order.every((at) => at >= 0)).toBe(true);
  expect([...order].sort((a, b) => a - b)).toEqual(order);
  // Each worker got one signal (the stack's SIGTERM), not the terminal's SIGINT as well.
  const stopping = output.filter((line) => line.includes('stopping after the batch in hand'));
  expect(stopping).toHaveLength(2);
  for (const line of stopping) expect(line).toContain('reason=SIGTERM');
  expect(text).not.toContain('stopping now, without finishing the batch');
}, 60_000);

async function classify(file: string) {
  const body = new FormData();
  body.append('image', new Blob([new Uint8Array(await readFile(FIXTURES + file))]), file);
  const response = await fetch(`${url}/predict`, { method: 'POST', body });
  return { status: response.status, body: await response.json() };
}

describe('npm start (WORKERS=2, Keras ResNet50)', () => {
  it('prints the curl line to try', () => {
    expect(output.join('\n')).toContain(`curl -F image=@../shared/fixtures/images/beagle.jpg ${url}/predict`);
  });

  it('serves with ONNX Runtime on the CPU by default here, the cores shared out over the two workers, and says so', () => {
    const ready = output.filter((line) => line.includes('] worker ready'));
    expect(ready).toHaveLength(2);
    const threads = Math.max(1, Math.floor(availableParallelism() / 2));
    for (const line of ready) expect(line).toContain(`engine=onnx provider=cpu threads=${threads}`);
  });

  it("classifies the seed's beagle like Keras: beagle 0.9901 +- 0.01", async () => {
    const reference = manifest.find((m) => m.file === 'beagle.jpg')!.keras_reference!.beagle!;
    const { status, body } = await classify('beagle.jpg');
    expect(status).toBe(200);
    expect(body.predictions).toHaveLength(5);
    expect(body.predictions[0].label).toBe('beagle');
    expect(Math.abs(body.predictions[0].probability - reference)).toBeLessThanOrEqual(0.01);
    expect(body.model).toBe('keras-resnet50-imagenet');
  });

  it('answers 50 concurrent requests exactly once each, with the same answer as alone', async () => {
    const files = manifest.map((m) => m.file);
    const alone = new Map<string, { label: string; probability: number }>();
    for (const file of files) {
      const { status, body } = await classify(file);
      expect(status).toBe(200);
      alone.set(file, body.predictions[0]);
    }
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => files[i % files.length]!).map(async (file) => ({ file, ...(await classify(file)) })),
    );
    for (const { file, status, body } of results) {
      expect(status, JSON.stringify(body)).toBe(200);
      expect(body.predictions[0].label).toBe(alone.get(file)!.label);
      // Batched float math may differ from batch-of-1 in the last digits.
      expect(body.predictions[0].probability).toBeCloseTo(alone.get(file)!.probability, 3);
    }
    expect(new Set(results.map((r) => r.body.id)).size).toBe(50);
    expect(new Set(results.map((r) => r.body.worker)).size).toBe(2);
  }, 120_000);

  it('keeps serving when a worker dies, and starts it again', async () => {
    const started = output.find((line) => line.includes('[stack] worker-1 started (pid'))!;
    const pid = Number(/pid (\d+)/.exec(started)![1]);
    process.kill(pid, 'SIGKILL');
    await waitFor(
      () => output.some((line) => line.includes('worker-1 exited unexpectedly (SIGKILL); restarting it in 1 s')),
      10_000,
      'the stack to see it die',
    );
    // The edge and the other worker serve meanwhile.
    const during = await classify('beagle.jpg');
    expect(during.status).toBe(200);
    expect(during.body.worker).not.toContain(String(pid));
    await waitFor(() => output.some((line) => line.includes('[stack] worker-1 is back')), 120_000, 'worker-1 to be back');
    const restarted = output.filter((line) => line.includes('[stack] worker-1 started (pid'));
    expect(restarted).toHaveLength(2);
    const { status } = await classify('beagle.jpg');
    expect(status).toBe(200);
  }, 150_000);
});
