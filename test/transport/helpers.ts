// Test helpers shared by the transport tests.
import { expect } from 'vitest';
import { KvwireError } from '../../lib/errors.js';

/** Fills `buf` with a deterministic pattern derived from `seed`; returns it. */
export function fill<T extends Uint8Array>(buf: T, seed: number): T {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

/** Expects `fn` to throw a KvwireError with `code` (and a message matching `msg`). */
export function expectCode(fn: () => unknown, code: string, msg?: RegExp): KvwireError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(KvwireError);
  const e = caught as KvwireError;
  expect(e.code, e.message).toBe(code);
  if (msg) expect(e.message).toMatch(msg);
  return e;
}

/** Expects `p` to reject with a KvwireError with `code` (and a message matching `msg`). */
export async function expectRejectCode(p: Promise<unknown>, code: string, msg?: RegExp): Promise<KvwireError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(KvwireError);
  const e = caught as KvwireError;
  expect(e.code, e.message).toBe(code);
  if (msg) expect(e.message).toMatch(msg);
  return e;
}
