import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import {
  NonceWindow,
  secretKey,
  signRequest,
  signResponse,
  verifyRequest,
  verifyResponse,
} from '../../lib/pd/handshake-auth.js';

const key = secretKey('0123456789abcdef0123456789abcdef');
const other = secretKey('fedcba9876543210fedcba9876543210');
const body = Buffer.from('{"v":1}');

describe('handshake authentication', () => {
  it('refuses short or missing secrets', () => {
    for (const s of ['short', new Uint8Array(8), undefined, 42]) {
      expect(() => secretKey(s)).toThrow(KvwireError);
    }
    expect(secretKey(new Uint8Array(16)).byteLength).toBe(16);
  });

  it('verifies a request signature only with the same key and the same bytes', () => {
    const sig = signRequest(key, body);
    expect(sig).toMatch(/^v1=[0-9a-f]{64}$/);
    expect(verifyRequest(key, body, sig)).toBe(true);
    expect(verifyRequest(other, body, sig)).toBe(false);
    expect(verifyRequest(key, Buffer.from('{"v":2}'), sig)).toBe(false);
    for (const bad of [undefined, '', 'v1=', `v2=${sig.slice(3)}`, sig.toUpperCase(), `${sig}0`, ['a', 'b']]) {
      expect(verifyRequest(key, body, bad as string)).toBe(false);
    }
  });

  it('binds a response to the request nonce, and never accepts a request signature as a response one', () => {
    const sig = signResponse(key, 'aa'.repeat(16), body);
    expect(verifyResponse(key, 'aa'.repeat(16), body, sig)).toBe(true);
    expect(verifyResponse(key, 'bb'.repeat(16), body, sig)).toBe(false);
    expect(verifyResponse(other, 'aa'.repeat(16), body, sig)).toBe(false);
    expect(verifyResponse(key, '', body, signRequest(key, body))).toBe(false);
  });

  it('admits a nonce once within the window, and no timestamp outside it', () => {
    const w = new NonceWindow(1000);
    expect(w.admit('n1', 10_000, 10_000)).toBe(true);
    expect(w.admit('n1', 10_000, 10_500)).toBe(false);
    expect(w.admit('n2', 8_000, 10_000)).toBe(false);
    expect(w.admit('n3', 12_000, 10_000)).toBe(false);
    expect(w.admit('n4', Number.NaN, 10_000)).toBe(false);
    // n1 is forgotten once its timestamp left the window, and it cannot be replayed then anyway.
    expect(w.admit('n5', 20_000, 20_000)).toBe(true);
    expect(w.size).toBe(1);
    expect(w.admit('n1', 10_000, 20_000)).toBe(false);
  });

  it('stays bounded', () => {
    const w = new NonceWindow(60_000, 100);
    for (let i = 0; i < 1000; i++) expect(w.admit(`n${i}`, 1000, 1000)).toBe(true);
    expect(w.size).toBeLessThanOrEqual(100);
  });

  it('is a KvwireError with INVALID_ARGUMENT for a bad secret', () => {
    expect(() => secretKey('x')).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT, details: { field: 'secret' } }),
    );
  });
});
