import { describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { Admission, type Admitted } from '../../lib/pd/admission.js';

const limits = { maxInFlightBytes: 100, maxConcurrentRequests: 2, maxQueued: 3 };

describe('admission (backpressure)', () => {
  it('admits up to the request limit, queues the rest in arrival order', async () => {
    const depths: number[] = [];
    const a = new Admission(limits, (d) => depths.push(d));
    const first = await a.acquire(10);
    const second = await a.acquire(10);
    const order: string[] = [];
    const third = a.acquire(10).then((t) => {
      order.push('third');
      return t;
    });
    const fourth = a.acquire(10).then((t) => {
      order.push('fourth');
      return t;
    });
    expect(a.queueDepth).toBe(2);
    expect(a.active).toBe(2);
    first.release();
    await third;
    expect(order).toEqual(['third']);
    second.release();
    await fourth;
    expect(order).toEqual(['third', 'fourth']);
    expect(a.queueDepth).toBe(0);
    expect(Math.max(...depths)).toBe(2);
  });

  it('bounds bytes in flight, but admits an oversized request when alone', async () => {
    const a = new Admission(limits);
    const big = await a.acquire(500);
    expect(a.inFlightBytes).toBe(500);
    let small: Admitted | undefined;
    const p = a.acquire(1).then((t) => {
      small = t;
    });
    await Promise.resolve();
    expect(small).toBeUndefined();
    big.release();
    await p;
    expect(a.inFlightBytes).toBe(1);
    const x = await a.acquire(99);
    let y: Admitted | undefined;
    const q = a.acquire(1).then((t) => {
      y = t;
    });
    expect(a.queueDepth).toBe(1);
    x.release();
    await q;
    expect(y?.bytes).toBe(1);
  });

  it('keeps strict FIFO: a small request does not overtake a large one at the head', async () => {
    const a = new Admission({ ...limits, maxConcurrentRequests: 10 });
    const held = await a.acquire(60);
    const order: string[] = [];
    const large = a.acquire(60).then((t) => {
      order.push('large');
      return t;
    });
    const small = a.acquire(10).then((t) => {
      order.push('small');
      return t;
    });
    await new Promise((r) => setImmediate(r));
    expect(order).toEqual([]);
    held.release();
    await Promise.all([large, small]);
    expect(order).toEqual(['large', 'small']);
  });

  it('gives each admitted request a distinct slot, reused after release', async () => {
    const a = new Admission(limits);
    const x = await a.acquire(1);
    const y = await a.acquire(1);
    expect(new Set([x.slot, y.slot])).toEqual(new Set([0, 1]));
    x.release();
    x.release(); // idempotent
    expect(a.active).toBe(1);
    const z = await a.acquire(1);
    expect(z.slot).toBe(x.slot);
  });

  it('removes an aborted waiter with the abort reason, and lets those behind it in', async () => {
    const a = new Admission({ ...limits, maxConcurrentRequests: 10 });
    const held = await a.acquire(90);
    const ac = new AbortController();
    const blocked = a.acquire(50, ac.signal);
    const behind = a.acquire(5);
    const reason = new KvwireError(ErrorCode.TIMEOUT, 'deadline');
    ac.abort(reason);
    await expect(blocked).rejects.toBe(reason);
    await behind;
    expect(a.queueDepth).toBe(0);
    held.release();
  });

  it('refuses beyond the queue bound and rejects waiters on close', async () => {
    const a = new Admission({ ...limits, maxConcurrentRequests: 1, maxQueued: 2 });
    await a.acquire(1);
    const w1 = a.acquire(1);
    const w2 = a.acquire(1);
    await expect(a.acquire(1)).rejects.toMatchObject({ code: ErrorCode.CAPACITY });
    a.rejectAll(new KvwireError(ErrorCode.CLOSED, 'closed'));
    await expect(w1).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    await expect(w2).rejects.toMatchObject({ code: ErrorCode.CLOSED });
    expect(a.queueDepth).toBe(0);
  });

  it('rejects bad limits', () => {
    expect(() => new Admission({ ...limits, maxConcurrentRequests: 0 })).toThrow(KvwireError);
    expect(() => new Admission({ ...limits, maxInFlightBytes: Number.NaN })).toThrow(KvwireError);
  });
});
