import { readFileSync } from 'node:fs';
import { LUA_SCRIPT_NAMES, type LuaScripts } from './scripts.ts';

/** Read the Lua scripts from disk (Node only). */
export function loadLuaScripts(): LuaScripts {
  return Object.fromEntries(
    LUA_SCRIPT_NAMES.map((name) => [name, readFileSync(new URL(`./${name}.lua`, import.meta.url), 'utf8')]),
  ) as LuaScripts;
}
