/**
 * The queue protocol's Lua scripts: one file each, named `<name>-<number of keys>.lua` (as BullMQ
 * names its scripts; `-n`: as many as the call passes), with a header of KEYS, ARGV and what it returns. Runtime-free: Node reads the
 * files (node.ts, which also registers them on every ioredis connection); a Workers bundle imports
 * them as text modules.
 */
export const SCRIPT_FILES = {
  enqueueJob: 'enqueue-1.lua',
  completeJobs: 'complete-n.lua',
  deadLetterJob: 'deadletter-3.lua',
  pruneConsumers: 'prune-consumers-2.lua',
} as const;

export type ScriptName = keyof typeof SCRIPT_FILES;
export type ScriptSources = Record<ScriptName, string>;

/** How many of a script's arguments are keys: the number in its file name; undefined for `-n` (the caller passes it first). */
export function numberOfKeys(name: ScriptName): number | undefined {
  const count = /-(\d+|n)\.lua$/.exec(SCRIPT_FILES[name])?.[1];
  return count === 'n' ? undefined : Number(count);
}
