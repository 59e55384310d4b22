import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { Slots } from '../../lib/engine/serving/slots.js';

describe('compute slots', () => {
  it('runs up to the slot count, queues FIFO up to the bound, refuses beyond, honours abort', async () => {
    const s = new Slots(1, 1);
    await s.acquire();
    const order: number[] = [];
    const waiting = s.acquire().then(() => order.push(1));
    await expect(s.acquire()).rejects.toMatchObject({ code: ErrorCode.CAPACITY });
    expect(s.waiting).toBe(1);
    s.release();
    await waiting;
    expect(order).toEqual([1]);
    const ac = new AbortController();
    const aborted = s.acquire(ac.signal);
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: ErrorCode.CANCELLED });
    expect(s.waiting).toBe(0);
    s.release();
    expect(s.running).toBe(0);
  });
});
