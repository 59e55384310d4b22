import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { LeaseBook, LeaseTable, type BlockLease } from '../../lib/pd/lease.js';
import { LeaseSlotState, type FreeReason } from '../../lib/pd/protocol.js';

function book(slots = 4) {
  const table = new LeaseTable(slots);
  const ended: { lease: BlockLease; reason: FreeReason }[] = [];
  const b = new LeaseBook(table, (lease, reason) => ended.push({ lease, reason }));
  return { table, b, ended };
}

describe('lease table', () => {
  it('marks a slot held with a fresh non-zero token, and records why it ended', () => {
    const { table, b } = book();
    const l = b.hold('r1', [1, 2], 1000);
    expect(l.token).toBeGreaterThan(0);
    expect(l.token).toBeLessThan(2 ** 48);
    expect(table.words[2 * l.slot]).toBe(l.token);
    expect(table.words[2 * l.slot + 1]).toBe(LeaseSlotState.HELD);
    b.end('r1', 'expired');
    expect(table.words[2 * l.slot]).toBe(l.token);
    expect(table.words[2 * l.slot + 1]).toBe(LeaseSlotState.EXPIRED);
  });

  it('reuses slots least recently freed first', () => {
    const { b } = book(3);
    const a = b.hold('a', [0], 1000);
    const c = b.hold('c', [1], 1000);
    b.end('c', 'notified');
    b.end('a', 'notified');
    const slots = ['x', 'y', 'z'].map((id) => b.hold(id, [2], 1000).slot);
    expect(slots).toEqual([2, c.slot, a.slot]);
  });

  it('refuses a lease when every slot is held, and a duplicate request id', () => {
    const { b } = book(2);
    b.hold('a', [0], 1000);
    expect(() => b.hold('a', [1], 1000)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }));
    b.hold('b', [1], 1000);
    expect(() => b.hold('c', [2], 1000)).toThrow(expect.objectContaining({ code: ErrorCode.CAPACITY }));
    b.endAll('closed');
    expect(b.size).toBe(0);
  });
});

describe('lease book', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('expires a lease once, at its deadline, and leaves no timer behind', () => {
    vi.useFakeTimers();
    const { b, ended } = book();
    b.hold('r1', [5, 6], 480_000);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(479_999);
    expect(ended).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(ended.map((e) => [e.lease.requestId, e.reason])).toEqual([['r1', 'expired']]);
    expect(vi.getTimerCount()).toBe(0);
    expect(b.size).toBe(0);
  });

  it('frees exactly once when a notification, a cancellation and the expiry race', () => {
    vi.useFakeTimers();
    const { b, ended } = book();
    const ac = new AbortController();
    const l = b.hold('r1', [1], 100, ac.signal);
    expect(b.end('r1', 'notified', l.token)?.requestId).toBe('r1');
    ac.abort();
    expect(b.end('r1', 'cancelled')).toBeUndefined();
    vi.advanceTimersByTime(1000);
    expect(ended.map((e) => e.reason)).toEqual(['notified']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('ignores an end with another lease token (a late message about an earlier lease)', () => {
    const { b, ended } = book();
    const first = b.hold('r1', [1], 1000);
    b.end('r1', 'expired');
    const second = b.hold('r1', [2], 1000);
    expect(b.end('r1', 'notified', first.token)).toBeUndefined();
    expect(b.get('r1')).toBe(second);
    expect(b.end('r1', 'notified', second.token)).toBe(second);
    expect(ended.map((e) => e.reason)).toEqual(['expired', 'notified']);
  });

  it('ends a lease as cancelled when its signal aborts, and refuses an aborted signal', () => {
    const { b, ended } = book();
    const ac = new AbortController();
    b.hold('r1', [1], 1000, ac.signal);
    ac.abort();
    expect(ended.map((e) => [e.lease.requestId, e.reason])).toEqual([['r1', 'cancelled']]);
    expect(() => b.hold('r2', [1], 1000, ac.signal)).toThrow(expect.objectContaining({ code: ErrorCode.CANCELLED }));
    b.endAll('closed');
  });

  it('extends a held lease to at least now + extension, never shorter, and expires at the new deadline', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    const { b, ended } = book();
    const l = b.hold('r1', [1, 2], 30_000);
    vi.advanceTimersByTime(20_000);
    const x = b.extend('r1', l.token, 30_000)!;
    expect(x.expiresAt).toBe(l.heldAt + 50_000);
    expect(b.get('r1')!.expiresAt).toBe(l.heldAt + 50_000);
    expect(b.remainingMs('r1')).toBe(30_000);
    // A shorter extension moves nothing.
    expect(b.extend('r1', l.token, 1_000)!.expiresAt).toBe(l.heldAt + 50_000);
    // The base deadline passes: still held (the timer re-arms for what is left).
    vi.advanceTimersByTime(29_999);
    expect(ended).toEqual([]);
    expect(b.remainingMs('r1')).toBe(1);
    vi.advanceTimersByTime(1);
    expect(ended.map((e) => [e.lease.requestId, e.reason, e.lease.expiresAt])).toEqual([
      ['r1', 'expired', l.heldAt + 50_000],
    ]);
    expect(vi.getTimerCount()).toBe(0);
    expect(b.extend('r1', l.token, 30_000)).toBeUndefined();
    expect(b.remainingMs('r1')).toBeUndefined();
  });

  it('extends nothing for another token, or a lease that ended (stale heartbeats)', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    const { b, ended } = book();
    const first = b.hold('r1', [1], 1000);
    b.end('r1', 'notified', first.token);
    expect(b.extend('r1', first.token, 60_000)).toBeUndefined();
    const second = b.hold('r1', [2], 1000);
    expect(b.extend('r1', first.token, 60_000)).toBeUndefined();
    vi.advanceTimersByTime(1000);
    expect(ended.map((e) => [e.lease.token, e.reason])).toEqual([
      [first.token, 'notified'],
      [second.token, 'expired'],
    ]);
  });

  it('rejects a bad slot count', () => {
    for (const n of [0, -1, 1.5, 2 ** 25]) expect(() => new LeaseTable(n)).toThrow(KvwireError);
  });
});
