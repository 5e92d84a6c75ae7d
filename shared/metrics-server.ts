/**
 * The HTTP server of a tier's Prometheus registry: `GET /metrics`, and `routes` beside it (the
 * worker's health probes). Both tiers serve their metrics on a port of their own, away from the
 * traffic. A port already taken is logged, not fatal: serving matters more than metrics.
 *
 * @example
 * const server = await serveMetrics(registry, { port: 9464, host: '0.0.0.0', log, routes: { '/livez': () => ({ status: 200, body: {} }) } });
 * await server?.close();
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from './log.ts';

export interface MetricsServer {
  port: number;
  close(): Promise<void>;
}

/** A JSON route: its status and body, computed per request. */
export type JsonRoute = () => { status: number; body: unknown };

export async function serveMetrics(
  registry: Registry,
  options: { port: number; host: string; log: Logger; routes?: Record<string, JsonRoute> },
): Promise<MetricsServer | undefined> {
  const routes = options.routes ?? {};
  const paths = ['/metrics', ...Object.keys(routes)];
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '/').split('?')[0]!;
    const route = request.method === 'GET' ? routes[path] : undefined;
    if (route) {
      const { status, body } = route();
      response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
      return;
    }
    if (request.method !== 'GET' || path !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: try GET ${paths.join(', ')}\n`);
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: Error) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${error.message}\n`),
    );
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => resolve());
    });
  } catch (error) {
    options.log.error({ err: error, port: options.port }, 'could not serve /metrics; running without it');
    return undefined;
  }
  const { port } = server.address() as AddressInfo;
  options.log.info({ port, host: options.host, paths }, 'serving /metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a scraper's keep-alive connection must not hold the exit up
      }),
  };
}
