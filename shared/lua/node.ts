/**
 * The scripts on Node: read once from their files, and registered on an ioredis connection by
 * its `scripts` option (redisConnectionOptions passes it to every connection of both tiers), as
 * commands typed below. ioredis sends EVALSHA, and EVAL once when Redis does not know the script.
 * The types are on every Redis, but only a connection made with the option has the commands: a
 * plain `new Redis(url)` throws "is not a function" when one is called.
 */
import { readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import { numberOfKeys, SCRIPT_FILES, type ScriptName, type ScriptSources } from './scripts.ts';

export const scriptSources: ScriptSources = Object.fromEntries(
  Object.entries(SCRIPT_FILES).map(([name, file]) => [name, readFileSync(new URL(`./${file}`, import.meta.url), 'utf8')]),
) as ScriptSources;

/** ioredis' `scripts` option: each script as a command named after it. */
export const ioredisScripts = Object.fromEntries(
  (Object.keys(SCRIPT_FILES) as ScriptName[]).map((name) => [name, { lua: scriptSources[name], numberOfKeys: numberOfKeys(name) }]),
);

// The commands the `scripts` option defines, on connections and pipelines (the arguments as in
// each file's header).
declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** complete-n.lua: XACK's reply (1: this call answered, 0: answered before) per answered job, then per dropped entry. */
    completeJobs(
      numberOfKeys: number,
      stream: string,
      ...rest: string[] /* result keys, then group, ttlMs, (entryId, reply, json) per job, dropped entry ids */
    ): Result<number[], Context>;
    /** enqueue-1.lua: the new entry id, or the backlog (an integer) when it is at `maxBacklog`. */
    enqueueJob(stream: string, maxBacklog: number, ...fields: (string | Uint8Array)[]): Result<string | number, Context>;
    /** deadletter-3.lua: 1 if this call dead-lettered and answered the job, 0 if it was answered before. */
    deadLetterJob(
      stream: string,
      deadLetter: string,
      resultKey: string,
      group: string,
      entryId: string,
      resultJson: string,
      ttlMs: number,
      reply: string,
      maxLen: number,
      ...record: string[]
    ): Result<number, Context>;
    /** prune-consumers-2.lua: the names of the consumers removed. */
    pruneConsumers(stream: string, workers: string, group: string, minIdleMs: number): Result<string[], Context>;
  }
}
