/**
 * The queue protocol's Lua scripts. Each lives in its own `<name>.lua` file, with a header that
 * documents KEYS and ARGV. How the text is loaded is runtime-specific: `node.ts` reads the files;
 * a Workers bundle imports them as text modules.
 */
export const LUA_SCRIPT_NAMES = ['enqueue', 'deadletter', 'prune-consumers'] as const;
export type LuaScriptName = (typeof LUA_SCRIPT_NAMES)[number];
export type LuaScripts = Record<LuaScriptName, string>;
