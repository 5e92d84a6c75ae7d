/**
 * Child processes for the local stack and end-to-end tests: each tier runs as its own Node
 * process (as in production), its pino JSON lines shown as short readable lines, and readiness
 * taken from a known log message instead of a sleep.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface TierProcess {
  name: string;
  child: ChildProcess;
  /** Resolves when a log line with `readyMessage` appears; rejects if the process exits first. */
  ready: Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

export interface SpawnTierOptions {
  name: string;
  /** Entry file relative to the repo root, run with tsx... */
  entry?: string;
  /** ...or a whole command line (program, then arguments). */
  command?: string[];
  env: Record<string, string | undefined>;
  /** A log message (pino `msg`), or text within a plain-text line, that means "ready". */
  readyMessage: string;
  /** Where formatted log lines go; default stdout. Pass null to drop them. */
  print?: ((line: string) => void) | null;
  /**
   * Run it in a process group of its own, so that a terminal's Ctrl-C (SIGINT to the foreground
   * group) reaches only the parent, which then stops it once (`stop()`), in its own order.
   */
  detached?: boolean;
}

/** The repo root: children run from here so `--import tsx` and relative entries resolve. */
export const REPO_ROOT = new URL('..', import.meta.url).pathname;

/**
 * The Cloudflare Workers edge in local workerd: `wrangler dev --env local` on 127.0.0.1:`port`,
 * offline. The REST URL and token reach the Worker as secrets from `envFile` (a private
 * `.dev.vars`-style file), never on a command line.
 */
export function wranglerDev(
  port: number,
  envFile: string,
  args: string[] = [],
): Pick<SpawnTierOptions, 'command' | 'env' | 'readyMessage'> {
  return {
    command: [
      process.execPath,
      `${REPO_ROOT}node_modules/wrangler/bin/wrangler.js`,
      'dev',
      '--env',
      'local',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--show-interactive-dev-session=false',
      '--env-file',
      envFile,
      ...args,
    ],
    env: { WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false' },
    readyMessage: 'Ready on',
  };
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

/** `{"level":30,"msg":"worker ready","engine":"onnx"}` -> `worker ready engine=onnx`. */
export function formatLogLine(line: string): { text: string; msg?: string } {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line);
  } catch {
    return { text: line };
  }
  if (typeof record !== 'object' || record === null) return { text: line };
  const { level, msg, time: _time, pid: _pid, hostname: _hostname, name: _name, ...rest } = record;
  const extras = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : k === 'err' && isSerializedError(v) ? v.message : JSON.stringify(v)}`)
    .join(' ');
  const label = typeof level === 'number' && level >= 40 ? `${LEVELS[level]} ` : '';
  return { text: `${label}${String(msg ?? '')}${extras ? ` ${extras}` : ''}`, msg: typeof msg === 'string' ? msg : undefined };
}

/** Signal a tier, and with `group` its process group (children included). */
export function killTier(child: ChildProcess, group: boolean, signal: NodeJS.Signals): void {
  try {
    if (group && child.pid) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // gone already
  }
}

/** pino's `err` serializer output ({ type, message, stack }): the short line shows the message only. */
const isSerializedError = (value: unknown): value is { message: string } =>
  typeof value === 'object' && value !== null && typeof (value as { message?: unknown }).message === 'string';

export function spawnTier({
  name,
  entry,
  command,
  env,
  readyMessage,
  print = console.log,
  detached = false,
}: SpawnTierOptions): TierProcess {
  const [program, ...args] = command ?? [process.execPath, '--import', 'tsx', entry!];
  const child = spawn(program!, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const ready = new Promise<void>((resolve, reject) => {
    const onLine = (line: string) => {
      const { text, msg } = formatLogLine(line);
      print?.(`[${name}] ${text}`);
      if (msg === readyMessage || (msg === undefined && text.includes(readyMessage))) resolve();
    };
    createInterface({ input: child.stdout! }).on('line', onLine);
    createInterface({ input: child.stderr! }).on('line', (line) => print?.(`[${name}] ${line}`));
    child.once('exit', (code, signal) => reject(new Error(`${name} exited (${signal ?? `code ${code}`}) before it was ready`)));
  });
  ready.catch(() => {}); // callers that never await readiness must not see an unhandled rejection
  return {
    name,
    child,
    ready,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      // SIGTERM to the tier itself (a supervisor or wrangler passes it on once); past the grace
      // period SIGKILL to its whole group when it has one, so no grandchild is left behind.
      child.kill('SIGTERM');
      const timer = setTimeout(() => killTier(child, detached, 'SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
