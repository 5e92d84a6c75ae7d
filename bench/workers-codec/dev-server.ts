/** `wrangler dev` running the bench Worker, and the requests the bench times against it. */
import { freePort } from '../../dev/redis-server.ts';
import type { ResizeMode } from '../../edge/image/codec.ts';
import { progress, sleep } from './helpers.ts';
import type { TestImage } from './images.ts';
import { type ProcInfo, descendants } from './proc.ts';
import { CONFIG, REPO_ROOT, WRANGLER_JS } from './settings.ts';
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface DevServer {
  child: ChildProcess;
  url: string;
  /** The workerd process that runs the bench Worker. */
  workerPid: number;
  /** wrangler's proxy workerd (forwards requests to the Worker), when told apart. */
  proxyPid: number | null;
  log: string[];
}

export const running = new Set<ChildProcess>();
/** Set on Ctrl-C: no new wrangler dev is started while shutting down. */
let stopping = false;

/** Whether a shutdown has begun (Ctrl-C); from then on no wrangler dev starts. */
export const isStopping = () => stopping;

/** Begin the shutdown: returns false when it had begun already. */
export function beginStopping(): boolean {
  if (stopping) return false;
  stopping = true;
  return true;
}

/** Kills a wrangler dev process group: SIGTERM (wrangler disposes workerd), then SIGKILL. */
export async function stopDev(child: ChildProcess, graceMs = 4000): Promise<void> {
  if (!child.pid) return;
  const pgid = child.pid;
  const alive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  try {
    process.kill(pgid, 'SIGTERM');
  } catch {
    // already gone
  }
  const deadline = Date.now() + graceMs;
  while (alive() && Date.now() < deadline) await sleep(100);
  if (alive()) {
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {
      // raced with exit
    }
  }
  running.delete(child);
}

/** Synchronous last resort on exit: SIGKILL every group still running. */
export function killAllSync() {
  for (const child of running) {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  running.clear();
}

export async function startDev(): Promise<DevServer> {
  if (stopping) throw new Error('stopping');
  const port = await freePort();
  const inspectorPort = await freePort();
  const child = spawn(
    process.execPath,
    [
      WRANGLER_JS,
      'dev',
      '--config',
      CONFIG,
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--inspector-port',
      String(inspectorPort),
      '--show-interactive-dev-session=false',
    ],
    {
      cwd: REPO_ROOT,
      // Own process group, so wrangler, esbuild and both workerd processes are killed together.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        WRANGLER_SEND_METRICS: 'false',
        // Do not fetch Request.cf from workers.cloudflare.com (offline; the placeholder is fine).
        CLOUDFLARE_CF_FETCH_ENABLED: 'false',
        NO_COLOR: '1',
        FORCE_COLOR: '0',
      },
    },
  );
  running.add(child);
  const log: string[] = [];
  const ready = new Promise<void>((resolveReady, reject) => {
    const onLine = (line: string) => {
      log.push(line);
      if (log.length > 200) log.shift();
      if (line.includes('Ready on')) resolveReady();
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', onLine);
    child.once('exit', (code, signal) =>
      reject(new Error(`wrangler dev exited (${signal ?? `code ${code}`}) before "Ready on":\n${log.slice(-20).join('\n')}`)),
    );
  });
  ready.catch(() => {});
  const timeout = sleep(90_000).then(() => {
    throw new Error(`wrangler dev not ready after 90 s:\n${log.slice(-20).join('\n')}`);
  });
  try {
    await Promise.race([ready, timeout]);
  } catch (error) {
    await stopDev(child);
    throw error;
  }
  const url = `http://127.0.0.1:${port}`;
  // Miniflare runs two workerd processes: wrangler's proxy (on --port) and the Worker itself
  // (on a random port, with the inspector). The Worker is the one started with --inspector-addr.
  let workerds: ProcInfo[] = [];
  for (let i = 0; i < 50 && workerds.length === 0; i++) {
    workerds = descendants(child.pid!).filter((p) => p.comm === 'workerd' || /\/workerd\s/.test(p.cmdline));
    if (!workerds.length) await sleep(100);
  }
  if (!workerds.length) {
    await stopDev(child);
    throw new Error('no workerd process under wrangler dev');
  }
  const worker =
    workerds.find((p) => p.cmdline.includes('--inspector-addr')) ??
    workerds.find((p) => !p.cmdline.includes(`entry=127.0.0.1:${port} `)) ??
    workerds[workerds.length - 1]!;
  const proxy = workerds.find((p) => p.pid !== worker.pid) ?? null;
  return { child, url, workerPid: worker.pid, proxyPid: proxy?.pid ?? null, log };
}

// Requests

export interface TensorAnswer {
  status: number;
  ms: number;
  body: {
    tensorBytes?: number;
    checksum?: string;
    wasmMemoryBytes?: number | null;
    error?: string;
    message?: string;
  };
}

export async function post(url: string, body: Uint8Array<ArrayBuffer>): Promise<TensorAnswer> {
  const start = performance.now();
  const response = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
  const text = await response.text();
  const ms = performance.now() - start;
  let parsed: TensorAnswer['body'];
  try {
    parsed = JSON.parse(text) as TensorAnswer['body'];
  } catch {
    parsed = { error: 'non_json', message: text.slice(0, 300) };
  }
  return { status: response.status, ms, body: parsed };
}

/** Like post, but a dropped connection (crashed workerd) becomes status 0. */
export async function tryPost(url: string, body: Uint8Array<ArrayBuffer>): Promise<TensorAnswer> {
  try {
    return await post(url, body);
  } catch (error) {
    const cause = (error as { cause?: Error }).cause;
    return {
      status: 0,
      ms: NaN,
      body: { error: 'request_failed', message: `${(error as Error).message}${cause ? `: ${cause.message}` : ''}` },
    };
  }
}

export async function expectTensor(url: string, body: Uint8Array<ArrayBuffer>): Promise<TensorAnswer> {
  const answer = await post(url, body);
  if (answer.status !== 200 || answer.body.tensorBytes !== 150_528) {
    throw new Error(`POST ${url} -> ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`);
  }
  return answer;
}

export async function timeNoop(server: DevServer, image: TestImage, runs: number, what: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 1; i <= runs; i++) {
    const answer = await post(`${server.url}/noop`, image.bytes);
    if (answer.status !== 200) throw new Error(`/noop -> ${answer.status}`);
    samples.push(answer.ms);
    progress(what, i, runs);
  }
  return samples;
}

export async function timeTensor(server: DevServer, image: TestImage, mode: ResizeMode, runs: number, what: string) {
  const samples: number[] = [];
  let last: TensorAnswer | undefined;
  for (let i = 1; i <= runs; i++) {
    last = await expectTensor(`${server.url}/tensor?mode=${mode}`, image.bytes);
    samples.push(last.ms);
    progress(what, i, runs);
  }
  return { samples, checksum: last?.body.checksum ?? null, wasmMemoryBytes: last?.body.wasmMemoryBytes ?? null };
}
