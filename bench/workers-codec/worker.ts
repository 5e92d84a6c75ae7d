/**
 * Bench Worker: the production Workers codec (probe + photon decode + TypeScript resize) behind
 * two endpoints, so run.ts can time it inside workerd from the client side.
 *
 * - `POST /tensor?mode=squash|center-crop`: probe + toTensor on the body; answers the tensor's
 *   length and a checksum (so the work cannot be skipped) and the size of photon's WASM memory.
 * - `POST /noop`: reads the body and answers its length: the transport baseline for that body.
 * - `GET /stats`: photon's WASM memory size (linear memory never shrinks: it is the WASM peak).
 *
 * Timing is not taken here: inside workerd Date.now()/performance.now() do not advance during
 * pure CPU work (Spectre mitigation).
 */
import { ApiError } from '../../edge/errors.ts';
import { RESIZE_MODES, type ResizeMode } from '../../edge/image/codec.ts';
import { probeImage } from '../../edge/image/probe.ts';
import { createPhotonCodec, createPhoton } from '../../edge/cloudflare-workers/photon-codec.ts';
import { checksum } from './checksum.ts';

interface Env {
  BENCH_MAX_PIXELS?: string;
}

// One codec per isolate, as in edge/cloudflare-workers/index.ts; its decoder runs photon on an instance of
// its own (not photon's module-wide one), so the WASM memory is read from the decoder.
const decoder = createPhoton();
const codec = createPhotonCodec(decoder);

/** The most WASM memory the decoder's instances reached (linear memory never shrinks). */
const wasmMemoryBytes = () => decoder.stats().peakWasmBytes || null;

async function tensor(request: Request, env: Env, url: URL): Promise<Response> {
  const mode = (url.searchParams.get('mode') ?? 'squash') as ResizeMode;
  if (!RESIZE_MODES.includes(mode)) return Response.json({ error: `unknown mode ${mode}` }, { status: 400 });
  const bytes = new Uint8Array(await request.arrayBuffer());
  const info = probeImage(bytes, Number(env.BENCH_MAX_PIXELS ?? 100e6));
  const out = await codec.toTensor(bytes, info, mode);
  return Response.json({
    ...info,
    bodyBytes: bytes.byteLength,
    tensorBytes: out.length,
    checksum: checksum(out),
    wasmMemoryBytes: wasmMemoryBytes(),
  });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    try {
      if (request.method === 'POST' && url.pathname === '/tensor') return await tensor(request, env, url);
      if (request.method === 'POST' && url.pathname === '/noop') {
        const body = await request.arrayBuffer();
        return Response.json({ bodyBytes: body.byteLength });
      }
      if (request.method === 'GET' && url.pathname === '/stats') return Response.json({ wasmMemoryBytes: wasmMemoryBytes() });
      return Response.json({ error: 'not found' }, { status: 404 });
    } catch (error) {
      const status = error instanceof ApiError ? error.status : 500;
      const code = error instanceof ApiError ? error.code : 'internal_error';
      return Response.json({ error: code, message: (error as Error).message }, { status });
    }
  },
};
