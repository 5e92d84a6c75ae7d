/** Logging, rounding and sleeping for the codec bench. */
import { round as roundTo } from '../stats.ts';

export { setTimeout as sleep } from 'node:timers/promises';

export const say = (line: string) => console.log(`[bench] ${line}`);
/** Rounded for the report, or null where there is no number (JSON has no NaN). */
export const round = (x: number, digits = 1) => (Number.isFinite(x) ? roundTo(x, digits) : null);
export const mb = (kb: number | null | undefined) => (kb == null ? null : round(kb / 1024));

/** Progress on one rewritten line on a terminal; a few lines otherwise. */
export function progress(what: string, n: number, total: number) {
  if (process.stdout.isTTY) {
    process.stdout.write(`\r[bench] ${what} ${n}/${total}   `);
    if (n === total) process.stdout.write('\n');
  } else if (n === 1 || n === total || n % 5 === 0) {
    say(`${what} ${n}/${total}`);
  }
}
