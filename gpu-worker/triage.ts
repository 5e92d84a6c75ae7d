/**
 * Sort a batch's stream entries before any compute: jobs to run, jobs answered with an error
 * without running (malformed, or given up on), and entries acked without an answer (nobody waits
 * for them, or there is nowhere to send one). Pure: the clock and the delivery count are given.
 */
import { type InvalidJob, type Job, parseEntry, type StreamEntry } from './jobs.ts';

export interface Triage {
  /** To run. */
  live: Job[];
  /** Answerable but not runnable: answered `bad_request`. */
  invalid: InvalidJob[];
  /**
   * Delivered more than MAX_DELIVERIES times, each delivery ending with its worker gone: not run
   * again (it may be what kills workers) but dead-lettered, expired or not, so that the dead-letter
   * stream shows every poison job.
   */
  overDelivered: Job[];
  /** Past their deadline: the edge has answered 504, so no compute is spent on them. */
  expired: Job[];
  /** No id or reply channel: dropped with the reason. */
  unanswerable: { entryId: string; message: string }[];
  /** The shortest time a job here was given (deadline - enqueuedAt), for the configuration check. */
  shortestDeadlineMs?: number;
}

export function triage(entries: StreamEntry[], context: { now: number; deliveries: number; maxDeliveries: number }): Triage {
  const sorted: Triage = { live: [], invalid: [], overDelivered: [], expired: [], unanswerable: [] };
  for (const entry of entries) {
    const parsed = parseEntry(entry);
    if (parsed.kind === 'unanswerable') {
      sorted.unanswerable.push({ entryId: parsed.entryId, message: parsed.message });
      continue;
    }
    if (parsed.kind === 'invalid') {
      sorted.invalid.push(parsed);
      continue;
    }
    if (context.deliveries > context.maxDeliveries) sorted.overDelivered.push(parsed);
    else if (parsed.deadline <= context.now) sorted.expired.push(parsed);
    else sorted.live.push(parsed);
    const givenMs = parsed.deadline - parsed.enqueuedAt;
    sorted.shortestDeadlineMs = Math.min(sorted.shortestDeadlineMs ?? givenMs, givenMs);
  }
  return sorted;
}
