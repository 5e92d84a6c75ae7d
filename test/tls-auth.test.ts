/**
 * The production connection, as to Upstash over TCP: `rediss://default:<password>@host:port`.
 * A real redis-server with TLS (`--tls-port`, a CA and certificate made here with openssl) and
 * `requirepass`; both tiers over it: a gpu-worker child process (synthetic model) and the Node
 * edge's ioredis broker.
 *
 * Right CA and password: served. An untrusted certificate or a wrong password: one clear line
 * naming the cause (the worker exits 2 at start; the edge answers 503 at once and logs why), and
 * the password appears in no log line and no error body.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startRedisServer, type RedisServerHandle } from '../dev/redis-server.ts';
import { createLogger } from '../shared/log.ts';
import { colourPng, predict } from './helpers/faults.ts';
import { spawnWorker, startLocalEdge, viaTcp } from './helpers/fixtures.ts';
import { parseEdgeConfig } from '../edge/config.ts';

const PASSWORD = 'tls-test-password-d41d8cd98f';
let dir: string;
let redisServer: RedisServerHandle;
let tlsPort: number;
let image: Buffer;
const files = { ca: '', otherCa: '' };

const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });

/** A self-signed CA certificate `<name>.crt` with its key `<name>.key`, valid for two days. */
const selfSignedCa = (name: string, commonName: string) =>
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '2',
    '-subj',
    `/CN=${commonName}`,
  );

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'redis-tls-'));
  // A CA, a server certificate it signs (for 127.0.0.1 and localhost), and a CA that signed nothing.
  selfSignedCa('ca', 'resnet-edge test CA');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  await writeFile(join(dir, 'san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.crt',
    '-days',
    '2',
    '-extfile',
    'san.cnf',
  );
  selfSignedCa('other', 'another CA');
  files.ca = join(dir, 'ca.crt');
  files.otherCa = join(dir, 'other.crt');
  tlsPort = await freePort();
  redisServer = await startRedisServer({
    args: [
      '--tls-port',
      String(tlsPort),
      '--tls-cert-file',
      join(dir, 'server.crt'),
      '--tls-key-file',
      join(dir, 'server.key'),
      '--tls-ca-cert-file',
      files.ca,
      '--tls-auth-clients',
      'no',
      '--requirepass',
      PASSWORD,
    ],
  });
  image = await colourPng(2);
}, 60_000);

afterAll(async () => {
  await redisServer?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The URL, with `password` (none: no userinfo); tlsPort is known only once beforeAll has run. */
const url = (password?: string) => `rediss://${password === undefined ? '' : `default:${password}@`}127.0.0.1:${tlsPort}`;

/** A worker that should fail: its exit code and everything it printed. */
async function failingWorker(env: Record<string, string>) {
  const worker = spawnWorker('tls-w-bad', { MODEL: 'synthetic:instant', KEY_PREFIX: 'tls', ...env });
  const stderr: string[] = [];
  worker.tier.child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString()));
  const { code } = await worker.exited;
  return { code, stderr: stderr.join(''), all: [...worker.lines, stderr.join('')].join('\n') };
}

describe('TLS and AUTH (rediss://default:<password>@...)', () => {
  it('both tiers serve with the right CA and password', async () => {
    const worker = spawnWorker('tls-w', {
      REDIS_URL: url(PASSWORD),
      REDIS_TLS_CA: files.ca,
      MODEL: 'synthetic:instant',
      KEY_PREFIX: 'tls',
    });
    const lines: string[] = [];
    const edge = await startLocalEdge(
      viaTcp(url(PASSWORD)),
      createLogger('edge', 'info', { write: (line: string) => void lines.push(line) }),
      { REDIS_TLS_CA: files.ca, KEY_PREFIX: 'tls' },
    );
    try {
      await worker.tier.ready;
      const replies = await Promise.all(Array.from({ length: 4 }, () => predict(edge.url, image)));
      expect(replies.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect([...lines, ...worker.lines].join('\n')).not.toContain(PASSWORD);
    } finally {
      await edge.close();
      await worker.tier.stop(2000);
    }
  });

  it.each([
    [
      'a certificate from a CA it does not trust',
      PASSWORD,
      'none',
      /the TLS certificate of Redis is not trusted \(SELF_SIGNED_CERT_IN_CHAIN.*set REDIS_TLS_CA/,
    ],
    ['REDIS_TLS_CA naming another CA', PASSWORD, 'other', /the TLS certificate of Redis is not trusted/],
    ['a wrong password', 'not-the-password', 'ca', /Redis refused the credentials in REDIS_URL \(WRONGPASS/],
    ['no password', undefined, 'ca', /Redis refused the credentials in REDIS_URL \(NOAUTH/],
  ] as const)('the worker exits 2 at start on %s, saying so in one line', async (_what, password, trust, reason) => {
    const ca = trust === 'ca' ? files.ca : trust === 'other' ? files.otherCa : undefined;
    const { code, stderr, all } = await failingWorker({ REDIS_URL: url(password), ...(ca && { REDIS_TLS_CA: ca }) });
    expect(code).toBe(2);
    const said = stderr
      .trim()
      .split('\n')
      .filter((line) => !line.startsWith('{'));
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(reason);
    expect(all).not.toContain(PASSWORD);
    expect(all).not.toContain('not-the-password');
  });

  it.each([
    ['an untrusted certificate', PASSWORD, false, /not trusted/],
    ['a wrong password', 'not-the-password', true, /refused the credentials/],
  ] as const)('the edge answers 503 at once on %s and logs the reason, no password anywhere', async (_what, password, trusted, reason) => {
    const lines: string[] = [];
    const edge = await startLocalEdge(
      viaTcp(url(password)),
      createLogger('edge', 'info', { write: (line: string) => void lines.push(line) }),
      {
        KEY_PREFIX: 'tls',
        ...(trusted && { REDIS_TLS_CA: files.ca }),
      },
    );
    try {
      const reply = await predict(edge.url, image);
      expect(reply.status).toBe(503);
      expect(reply.body.error).toMatchObject({ code: 'broker_unavailable', message: expect.stringMatching(reason) });
      expect(reply.doneAt - reply.sentAt).toBeLessThan(5_000); // not held until the 30 s deadline
      expect(lines.some((line) => reason.test(line))).toBe(true);
      const everything = [...lines, JSON.stringify(reply.body)].join('\n');
      expect(everything).not.toContain(PASSWORD);
      expect(everything).not.toContain('not-the-password');
    } finally {
      await edge.close();
    }
  });

  it('refuses REDIS_TLS_CA with a redis:// URL, naming the variable; a bad URL is shown without its password', () => {
    expect(() => parseEdgeConfig({ REDIS_URL: 'redis://127.0.0.1:6379', REDIS_TLS_CA: '/ca.pem' })).toThrow(
      /REDIS_TLS_CA: set, but REDIS_URL is not rediss:\/\//,
    );
    expect(() => parseEdgeConfig({ REDIS_URL: `http://default:${PASSWORD}@host:6379` })).toThrow(
      /REDIS_URL: .*\(got "http:\/\/\*\*\*@host:6379"\)/,
    );
    expect(() => parseEdgeConfig({ REDIS_URL: `redis://default:a/b${PASSWORD}@host:6379:x` })).not.toThrow(new RegExp(PASSWORD));
    expect(() => parseEdgeConfig({ UPSTASH_REDIS_REST_URL: 'ftp://x', UPSTASH_REDIS_REST_TOKEN: PASSWORD })).not.toThrow(
      new RegExp(PASSWORD),
    );
  });
});
