// Test helpers shared by the transport tests.
import { readdirSync, readFileSync } from 'node:fs';
import { expect } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { fillPattern } from '../fixtures/pattern.js';

/** Fills `buf` with a deterministic pattern derived from `seed` (the fixtures' pattern); returns it. */
export const fill = fillPattern;

/** Expects `fn` to throw a KvwireError with `code` (and a message matching `msg`). */
export function expectCode(fn: () => unknown, code: string, msg?: RegExp): KvwireError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  return expectKvwireError(caught, code, msg);
}

/** Expects `p` to reject with a KvwireError with `code` (and a message matching `msg`). */
export async function expectRejectCode(p: Promise<unknown>, code: string, msg?: RegExp): Promise<KvwireError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  return expectKvwireError(caught, code, msg);
}

/** Expects `caught` to be a KvwireError with `code` (and a message matching `msg`). */
function expectKvwireError(caught: unknown, code: string, msg?: RegExp): KvwireError {
  expect(caught, `expected ${code}`).toBeInstanceOf(KvwireError);
  const e = caught as KvwireError;
  expect(e.code, e.message).toBe(code);
  if (msg) expect(e.message).toMatch(msg);
  return e;
}

/** The ids of this process's threads named `name` (/proc/self/task/<tid>/comm). */
export function threadsNamed(name: string): number[] {
  return readdirSync('/proc/self/task')
    .filter((tid) => {
      try {
        return readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === name;
      } catch {
        return false; // the thread ended while we looked
      }
    })
    .map(Number);
}
