import { describe, expect, it } from 'vitest';
import type { WorkerHeartbeat } from '../shared/protocol.ts';
import { deadConsumers, type ConsumersReply, type PendingSummaryReply } from './consumers.ts';

const now = 1_000_000;
const consumer = (name: string, idle: number) => ['name', name, 'pending', 0, 'idle', idle];
const beat = (id: string, expiresAt: number) => ({ id, expiresAt }) as WorkerHeartbeat;

describe('deadConsumers', () => {
  const consumers: ConsumersReply = [
    consumer('dead', 9_000),
    consumer('dead-unlisted', 9_000),
    consumer('alive-busy', 9_000),
    consumer('just-read', 100),
    consumer('idle-nothing-held', 9_000),
    consumer('me', 9_000),
  ];
  const pending: PendingSummaryReply = [
    5,
    '1-0',
    '5-0',
    [
      ['dead', '2'],
      ['dead-unlisted', '1'],
      ['alive-busy', '1'],
      ['just-read', '1'],
      ['me', '1'],
    ],
  ];
  const heartbeats = [
    beat('dead', now - 1),
    beat('alive-busy', now + 500),
    beat('just-read', now - 1),
    beat('idle-nothing-held', now - 1),
    beat('me', now - 1),
  ];

  it('is a consumer holding jobs, with its heartbeat stale or gone, and idle as long', () => {
    expect(deadConsumers({ consumers, pending, heartbeats }, { self: 'me', now, idleMs: 6_000 })).toEqual([
      { name: 'dead', pending: 2, idleMs: 9_000 },
      { name: 'dead-unlisted', pending: 1, idleMs: 9_000 },
    ]);
  });

  it('finds nothing without the stream or group (null replies)', () => {
    expect(deadConsumers({ consumers: null, pending: null, heartbeats }, { self: 'me', now, idleMs: 6_000 })).toEqual([]);
    expect(deadConsumers({ consumers, pending: [0, null, null, null], heartbeats }, { self: 'me', now, idleMs: 6_000 })).toEqual([]);
  });
});
