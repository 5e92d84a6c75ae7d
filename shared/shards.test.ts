import { describe, expect, it } from 'vitest';
import { parseEdgeConfig } from '../edge/config.ts';
import { parseWorkerConfig } from '../gpu-worker/config.ts';
import { parseQueues } from './shards.ts';

const edge = { prefix: 'rn', rest: true };

describe('QUEUES', () => {
  it('takes a comma list of Redis URLs, or JSON entries with tokens, names, regions and prefixes', () => {
    expect(parseQueues('redis://a:6379, rediss://:pw@b:6380', edge)).toEqual([
      { name: 'a:6379', url: 'redis://a:6379', transport: 'ioredis', prefix: 'rn' },
      { name: 'b:6380', url: 'rediss://:pw@b:6380', transport: 'ioredis', prefix: 'rn' },
    ]);
    const json = JSON.stringify([
      { url: 'https://eu1.upstash.io', token: 'T1', name: 'eu', region: 'eu' },
      { url: 'redis://c:6379', prefix: 'rn-b' },
      { url: 'redis://c:6379', prefix: 'rn-c', name: 'c2', cluster: true },
    ]);
    expect(parseQueues(json, edge)).toEqual([
      { name: 'eu', url: 'https://eu1.upstash.io', transport: 'upstash', token: 'T1', region: 'eu', prefix: 'rn' },
      { name: 'c:6379/rn-b', url: 'redis://c:6379', transport: 'ioredis', prefix: 'rn-b' },
      { name: 'c2', url: 'redis://c:6379', transport: 'ioredis', prefix: 'rn-c', cluster: true },
    ]);
  });

  it.each([
    ['', 'an empty entry'],
    ['[]', 'no shard listed'],
    ['[{"url": "redis://a"}', 'not valid JSON'],
    ['redis://a,,redis://b', 'an empty entry'],
    ['redis://a:6379,ftp://b', 'entry 2: expected a redis://, rediss:// or https:// (Upstash REST) URL (got ftp://b)'],
    ['redis://a:6379,not a url', 'entry 2: not a URL'],
    ['redis://a:6379,redis://A:6379/0', 'entry 2 (redis://A:6379/0) repeats entry 1'],
    ['redis://u:secret@a,redis://v:other@a:6379', 'entry 2 (redis://***@a:6379) repeats entry 1'],
    ['[{"url": "https://x.upstash.io"}]', 'entry 1: an Upstash REST URL needs its "token"'],
    ['[{"url": "redis://a", "token": "t"}]', 'entry 1: a "token" belongs to an Upstash REST URL'],
    ['[{"url": "redis://a", "colour": "red"}]', 'entry 1: '],
    ['[{"url": "redis://a", "name": "x"}, {"url": "redis://b", "name": "x"}]', 'entry 2 has the name "x" of entry 1'],
    ['["redis://a"]', 'entry 1: '],
    ['[{"url": "https://x.upstash.io", "token": "t", "cluster": true}]', 'entry 1: "cluster" is for a redis:// or rediss:// seed node'],
    ['[{"url": "redis://a", "cluster": "yes"}]', 'entry 1: cluster: true, or leave it out'],
  ])('refuses %j with one line naming the entry', (text, message) => {
    expect(() => parseQueues(text, edge)).toThrow(message);
  });

  it('names shards on one Redis by their prefix too, and a JSON error shows no part of the text', () => {
    expect(parseQueues('[{"url": "redis://h:1", "prefix": "a"}, {"url": "redis://h:1", "prefix": "b"}]', edge).map((s) => s.name)).toEqual([
      'h:1/a',
      'h:1/b',
    ]);
    for (const broken of ['[{"url": "https://x.io", "token": AXs3cr3tTOKEN}]', '[{"url": "https://x.io", "token": "AXs3cr3tTOKEN"},]']) {
      expect(() => parseQueues(broken, edge)).toThrow(/^not valid JSON/);
      expect(() => parseQueues(broken, edge)).not.toThrow(/s3cr3t/);
    }
  });

  it('workers take Redis URLs only, and a token never shows in an error', () => {
    expect(() => parseQueues('[{"url": "https://x.upstash.io", "token": "s3cr3t"}]', { prefix: 'rn', rest: false })).toThrow(
      /entry 1: workers connect over TCP/,
    );
    let message = '';
    try {
      parseEdgeConfig({ QUEUES: '[{"url": "https://x.upstash.io", "token": "s3cr3t"}, {"url": "ftp://y"}]' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/QUEUES: entry 2: expected a redis/);
    expect(message).not.toContain('s3cr3t');
  });

  it('is refused beside the single-broker settings, and the single-broker settings still make one shard', () => {
    expect(() => parseEdgeConfig({ QUEUES: 'redis://a,redis://b', REDIS_URL: 'redis://a' })).toThrow(/REDIS_URL: set beside QUEUES/);
    expect(() => parseEdgeConfig({ QUEUES: 'redis://a,redis://b', UPSTASH_REDIS_REST_URL: 'https://x' })).toThrow(
      /UPSTASH_REDIS_REST_URL: set beside QUEUES/,
    );
    expect(() => parseWorkerConfig({ QUEUES: 'redis://a,redis://b', REDIS_URL: 'redis://a' })).toThrow(/REDIS_URL: set beside QUEUES/);
    expect(() => parseEdgeConfig({ QUEUES: 'redis://a,redis://b', REDIS_TLS_CA: '/ca.pem' })).toThrow(/REDIS_TLS_CA: .*no QUEUES entry/);
    expect(() => parseEdgeConfig({ QUEUES: 'redis://a,redis://b', EDGE_REGION: 'eu' })).toThrow(/EDGE_REGION: no shard .*"eu"/);
    expect(() => parseEdgeConfig({ QUEUES: 'redis://a,redis://b', RATE_LIMIT: '10/1s' })).toThrow(/RATE_LIMIT: .*list one in QUEUES/);
    expect(parseEdgeConfig({ REDIS_URL: 'redis://h:1234' }).shards).toEqual([
      { name: 'h:1234', url: 'redis://h:1234', transport: 'ioredis', prefix: 'rn' },
    ]);
    expect(parseEdgeConfig({ UPSTASH_REDIS_REST_URL: 'https://x.io', UPSTASH_REDIS_REST_TOKEN: 't', KEY_PREFIX: 'p' }).shards).toEqual([
      { name: 'x.io', url: 'https://x.io', transport: 'upstash', token: 't', prefix: 'p' },
    ]);
    expect(parseWorkerConfig({ QUEUES: 'redis://a,redis://b' }).shards.map((shard) => shard.name)).toEqual(['a', 'b']);
  });
});
