import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BatchStatus } from '../../lib/kv-index/metrics.js';
import { EventSequencer, type ApplyFn } from '../../lib/kv-index/sequencer.js';
import type { ApplyOutcome, IndexOp } from '../../lib/kv-index/types.js';

/**
 * A backend that decides at call time (as Redis runs commands in arrival order) and answers later,
 * in call order (as replies come back on one connection). Records what it applied.
 */
function fifoBackend(): { apply: ApplyFn; applied: number[]; fail: { on: boolean } } {
  const last = new Map<string, number>();
  const applied: number[] = [];
  const fail = { on: false };
  let tail: Promise<unknown> = Promise.resolve();
  const apply: ApplyFn = (worker, seq, force) => {
    const outcome = ((): ApplyOutcome | Error => {
      if (fail.on) return new Error('backend down');
      const l = last.get(worker);
      const base = { evictedKeys: 0, evictedHolders: 0, keys: 0 };
      if (seq !== undefined && l !== undefined) {
        if (seq <= l) return { ...base, status: 'duplicate', lastSeq: l };
        if (seq > l + 1 && !force) return { ...base, status: 'gap', lastSeq: l };
      }
      if (seq !== undefined) {
        last.set(worker, seq);
        applied.push(seq);
      }
      return { ...base, status: 'applied', lastSeq: seq };
    })();
    const reply = tail
      .then(() => new Promise((r) => setImmediate(r)))
      .then(() => {
        if (outcome instanceof Error) throw outcome;
        return outcome;
      });
    tail = reply.catch(() => undefined);
    return reply;
  };
  return { apply, applied, fail };
}

const ops: IndexOp[] = [{ type: 'cleared' }];

function sequencer(
  backend: { apply: ApplyFn },
  o: { gapTimeoutMs?: number; maxPending?: number } = {},
): { s: EventSequencer; statuses: BatchStatus[] } {
  const statuses: BatchStatus[] = [];
  const s = new EventSequencer(backend.apply, {
    gapTimeoutMs: o.gapTimeoutMs ?? 3_600_000,
    maxPending: o.maxPending ?? 1000,
    onApplied: () => undefined,
    onBatch: (st) => statuses.push(st),
  });
  return { s, statuses };
}

describe('EventSequencer', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('applies batches submitted in any order, concurrently, in sequence order and once', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.shuffledSubarray([...Array(30).keys()], { minLength: 30 }),
        fc.array(fc.integer({ min: 0, max: 29 }), { maxLength: 10 }),
        async (order, dups) => {
          const b = fifoBackend();
          const { s } = sequencer(b);
          await s.submit('w', 0, ops);
          await Promise.all([...order, ...dups].map((seq) => s.submit('w', seq + 1, ops)));
          expect(b.applied).toEqual([...Array(31).keys()]);
          expect(s.pending).toBe(0);
          s.close();
        },
      ),
      { numRuns: 50 },
    );
  });

  it('keeps workers independent', async () => {
    const b = fifoBackend();
    const { s } = sequencer(b);
    await s.submit('a', 1, ops);
    expect((await s.submit('b', 7, ops)).status).toBe('applied');
    expect((await s.submit('a', 3, ops)).status).toBe('buffered');
    expect((await s.submit('b', 8, ops)).status).toBe('applied');
    expect(s.pending).toBe(1);
    s.close();
  });

  it('skips a gap after gapTimeoutMs and applies what waited, in order', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const b = fifoBackend();
    const { s, statuses } = sequencer(b, { gapTimeoutMs: 1000 });
    await s.submit('w', 1, ops);
    await s.submit('w', 4, ops);
    await s.submit('w', 3, ops);
    await s.submit('w', 6, ops);
    await vi.advanceTimersByTimeAsync(999);
    expect(b.applied).toEqual([1]);
    await vi.advanceTimersByTimeAsync(1);
    await vi.waitFor(() => expect(b.applied).toEqual([1, 3, 4]));
    expect(statuses).toEqual(['applied', 'buffered', 'buffered', 'buffered', 'gap_skipped', 'applied']);
    expect(s.pending).toBe(1);
    s.close();
  });

  it('skips the gap when more than maxPending batches wait', async () => {
    const b = fifoBackend();
    const { s } = sequencer(b, { maxPending: 2 });
    await s.submit('w', 1, ops);
    for (const seq of [5, 4, 7]) await s.submit('w', seq, ops);
    expect(b.applied).toEqual([1, 4, 5]);
    expect(s.pending).toBe(1);
    s.close();
  });

  it('keeps waiting batches when the backend fails, and retries on the next timeout', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const b = fifoBackend();
    const { s } = sequencer(b, { gapTimeoutMs: 100 });
    await s.submit('w', 1, ops);
    await s.submit('w', 3, ops);
    b.fail.on = true;
    await vi.advanceTimersByTimeAsync(100);
    await new Promise((r) => setImmediate(r));
    expect(s.pending).toBe(1);
    b.fail.on = false;
    await vi.advanceTimersByTimeAsync(100);
    await vi.waitFor(() => expect(b.applied).toEqual([1, 3]));
    s.close();
  });

  it('stops draining a worker that is forgotten mid-drain', async () => {
    const b = fifoBackend();
    const { s } = sequencer(b);
    await s.submit('w', 1, ops);
    for (const seq of [3, 4, 5, 6]) await s.submit('w', seq, ops);
    const filling = s.submit('w', 2, ops); // applies 2, then drains 3..6 one reply at a time
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    s.forget('w');
    await filling;
    expect(b.applied.length).toBeLessThan(6);
    expect(b.applied).toEqual([1, 2, 3, 4, 5, 6].slice(0, b.applied.length));
  });

  it('forget and close drop waiting batches', async () => {
    const b = fifoBackend();
    const { s, statuses } = sequencer(b);
    await s.submit('a', 1, ops);
    await s.submit('a', 3, ops);
    await s.submit('b', 1, ops);
    await s.submit('b', 5, ops);
    s.forget('a');
    expect(s.pending).toBe(1);
    s.close();
    expect(s.pending).toBe(0);
    expect(statuses.filter((x) => x === 'dropped')).toHaveLength(2);
  });
});
