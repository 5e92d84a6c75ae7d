/**
 * shared/z85.ts against the ZeroMQ spec (RFC 32): its test vector, round trips, JSON safety, and
 * refusal of malformed text (the worker relies on it to answer bad_request instead of running junk).
 */
import { describe, expect, it } from 'vitest';
import { TENSOR_BYTES } from './tensor.ts';
import { z85Decode, z85Encode, z85Length } from './z85.ts';
import { randomImage } from '../test/helpers/tiny-model.ts';

const HELLO = Uint8Array.of(0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b);

describe('z85', () => {
  it('encodes and decodes the spec test vector', () => {
    expect(z85Encode(HELLO)).toBe('HelloWorld');
    expect(z85Decode('HelloWorld')).toEqual(HELLO);
    expect(z85Decode(new TextEncoder().encode('HelloWorld'))).toEqual(HELLO);
  });

  it('round-trips the extremes and a whole tensor, 5 characters per 4 bytes', () => {
    expect(z85Encode(new Uint8Array(4))).toBe('00000');
    expect(z85Encode(Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toBe('%nSc0');
    expect(z85Decode('%nSc0')).toEqual(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    expect(z85Encode(new Uint8Array(0))).toBe('');
    const tensor = randomImage(42);
    const text = z85Encode(tensor);
    expect(text).toHaveLength(z85Length(TENSOR_BYTES));
    expect(text).toHaveLength(188_160);
    expect(z85Decode(text)).toEqual(tensor);
    const every = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7919) & 0xff);
    expect(z85Decode(z85Encode(every))).toEqual(every);
  });

  it('produces text that JSON carries unescaped', () => {
    const text = z85Encode(Uint8Array.from({ length: 85 * 4 * 4 }, (_, i) => (i * 131) & 0xff));
    expect(JSON.stringify(text)).toBe(`"${text}"`);
  });

  it('refuses bad lengths, characters outside the alphabet and groups over 32 bits', () => {
    expect(() => z85Encode(new Uint8Array(3))).toThrow(/multiple of 4/);
    expect(() => z85Decode('Hello1')).toThrow(/multiple of 5, got 6/);
    expect(() => z85Decode('Hello Worl')).toThrow(/byte 32 at 5 is outside the alphabet/);
    expect(() => z85Decode('Hell"')).toThrow(/outside the alphabet/);
    expect(() => z85Decode('Hellé')).toThrow(/non-ASCII/);
    expect(() => z85Decode(Uint8Array.of(0x48, 0x65, 0x6c, 0x6c, 0xe9))).toThrow(/byte 233 at 4 is outside the alphabet/);
    expect(() => z85Decode('%nSc1')).toThrow(/exceeds 32 bits/);
    expect(() => z85Decode('#####')).toThrow(/exceeds 32 bits/);
  });
});
