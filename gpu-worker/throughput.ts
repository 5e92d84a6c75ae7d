/**
 * What this worker measures of its own speed, for its heartbeat: the edge divides its backlog by
 * the live workers' images per second to tell, at admission, whether a new request can be
 * answered before its deadline (edge/broker/admission.ts).
 *
 * The rate that matters is the one under load, when batches are full: a batch of one on a GPU
 * takes about as long as a full one, so the rate of partial batches says little of what the
 * worker can do. Hence: the recent full batches' rate; before any, the warm-up's full batch; with
 * neither, the recent batches' rate (a lower bound).
 *
 * @example
 * const throughput = new Throughput(32);
 * throughput.warmedUp(410);            // one full batch took 410 ms
 * throughput.record(32, 395);          // after each batch
 * throughput.load();                   // { imagesPerSec: 80, batchMs: 395, longestBatchMs: 410 }
 */
import type { HeartbeatLoad } from './heartbeat.ts';

/** Batches remembered, and for how long at most. */
const WINDOW_BATCHES = 32;
const WINDOW_MS = 60_000;

interface BatchTime {
  images: number;
  ms: number;
  at: number;
}

export class Throughput {
  private readonly batches: BatchTime[] = [];
  private warmUpRate: number | undefined;
  private warmUpMs = 0;
  /** The longest batch ever seen (the warm-up's included): how long this worker may be silent. */
  private longest = 0;

  constructor(private readonly batchSize: number) {}

  /** A full batch of the warm-up took `ms`. */
  warmedUp(ms: number): void {
    if (ms > 0) this.warmUpRate = (this.batchSize * 1000) / ms;
    this.warmUpMs = ms;
    this.longest = Math.max(this.longest, ms);
  }

  /** A batch of `images` jobs took `ms` from read to answers written. */
  record(images: number, ms: number, now = Date.now()): void {
    this.batches.push({ images, ms: Math.max(ms, 0.001), at: now });
    this.longest = Math.max(this.longest, ms);
    if (this.batches.length > WINDOW_BATCHES) this.batches.shift();
  }

  load(now = Date.now()): HeartbeatLoad & { longestBatchMs?: number } {
    const recent = this.batches.filter((batch) => now - batch.at <= WINDOW_MS);
    const rate = (batches: BatchTime[]) =>
      batches.length === 0 ? undefined : (batches.reduce((sum, b) => sum + b.images, 0) * 1000) / batches.reduce((sum, b) => sum + b.ms, 0);
    const imagesPerSec = rate(recent.filter((batch) => batch.images >= this.batchSize)) ?? this.warmUpRate ?? rate(recent);
    return {
      ...(imagesPerSec !== undefined && { imagesPerSec: round(imagesPerSec) }),
      // The recent batches' mean; before any, the warm-up's full batch (an estimate needs both).
      ...(recent.length > 0
        ? { batchMs: round(recent.reduce((sum, b) => sum + b.ms, 0) / recent.length) }
        : this.warmUpMs > 0 && { batchMs: round(this.warmUpMs) }),
      ...(this.longest > 0 && { longestBatchMs: this.longest }),
    };
  }
}

const round = (value: number) => Math.round(value * 100) / 100;
