/**
 * `wrangler deploy --dry-run` bundles the Workers edge offline, and the compressed bundle stays
 * under Cloudflare's Worker size limit (10 MB gzip on paid plans; 3 MB on Free).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { REPO_ROOT } from '../dev/processes.ts';

const PAID_PLAN_LIMIT_KIB = 10 * 1024;
const FREE_PLAN_LIMIT_KIB = 3 * 1024;

it('bundles offline under the Workers size limit', async () => {
  const outdir = await mkdtemp(join(tmpdir(), 'workers-bundle-'));
  try {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [`${REPO_ROOT}node_modules/wrangler/bin/wrangler.js`, 'deploy', '--dry-run', '--outdir', outdir],
      { cwd: REPO_ROOT, env: { ...process.env, WRANGLER_SEND_METRICS: 'false' } },
    );
    const size = /Total Upload: ([\d.]+) KiB \/ gzip: ([\d.]+) KiB/.exec(stdout);
    expect(size, stdout).not.toBeNull();
    const gzipKiB = Number(size![2]);
    console.log(`Workers bundle: ${size![1]} KiB, ${gzipKiB} KiB gzip`);
    expect(gzipKiB).toBeLessThanOrEqual(PAID_PLAN_LIMIT_KIB);
    expect(gzipKiB, 'fits the Free plan too (docs/cloudflare-workers.md says so)').toBeLessThanOrEqual(FREE_PLAN_LIMIT_KIB);
    const files = await readdir(outdir);
    expect(files).toContain('index.js');
    expect(files.some((f) => f.endsWith('.wasm'))).toBe(true);
  } finally {
    await rm(outdir, { recursive: true, force: true });
  }
}, 120_000);
