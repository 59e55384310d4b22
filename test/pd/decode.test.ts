import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import type { BlocksFreedEvent } from '../../lib/pd/index.js';
import { metricValue, pair, prompt, until, type Pair } from './helpers.js';

/** Every decode block is free or in the prefix cache; every prefill block is free; no lease is held. */
async function allBack(p: Pair): Promise<void> {
  await until(() => p.prefill.coordinator.leases === 0, 'the prefill to free every lease');
  expect(p.prefill.pool.free).toBe(p.prefill.pool.total);
  p.decode.drain();
  expect(p.decode.pool.free).toBe(p.decode.pool.total);
  expect(p.decode.coordinator.activeRequests).toBe(0);
  expect(p.decode.coordinator.inFlightBytes).toBe(0);
}

describe('DecodeCoordinator', () => {
  let p: Pair | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('reads only the blocks it does not hold (partial prefix hits), byte-exact', async () => {
    p = await pair();
    const shared = prompt(64, 7); // 4 full blocks
    const a = { id: 'a', tokens: [...shared, ...prompt(10, 900)] };
    const b = { id: 'b', tokens: [...shared, ...prompt(27, 500)] };
    const ra = await p.decode.decode(a, p.prefill.prefill(a));
    expect([ra.blocks, ra.blocksCached, ra.pull?.blocksRead]).toEqual([5, 0, 5]);
    const rb = await p.decode.decode(b, p.prefill.prefill(b));
    expect([rb.blocks, rb.blocksCached, rb.pull?.blocksRead]).toEqual([6, 4, 2]);
    expect(rb.pull?.bytes).toBe(2 * p.decode.ranks[0]!.layout.bytesPerBlock);
    expect(rb.verifiedBytes).toBe(6 * p.decode.ranks[0]!.layout.bytesPerBlock); // the cached prefix is checked too
    // A prompt entirely in the prefix cache reads nothing, but the prefill is still told.
    const c = { id: 'c', tokens: shared };
    const rc = await p.decode.decode(c, p.prefill.prefill(c));
    expect([rc.blocksCached, rc.pull?.blocksRead, rc.pull?.bytes]).toEqual([4, 0, 0]);
    expect(await metricValue(p.registry, 'kvwire_pd_blocks_total', { source: 'cached' })).toBe(8);
    await allBack(p);
  });

  it('coalesces contiguous blocks into one descriptor per tensor', async () => {
    p = await pair();
    const r = await p.decode.decode(
      { id: 'a', tokens: prompt(16 * 8) },
      p.prefill.prefill({ id: 'a', tokens: prompt(16 * 8) }),
    );
    const tensors = p.decode.ranks[0]!.layout.tensors.length;
    expect(r.pull?.descriptors).toEqual({ uncoalesced: 8 * tensors, posted: tensors });
  });

  it('times out a stalled transfer, and frees the blocks on both sides', async () => {
    p = await pair({ decode: { timeoutMs: 150 } });
    const freed: BlocksFreedEvent[] = [];
    p.prefill.coordinator.on('blocks-freed', (e: BlocksFreedEvent) => freed.push(e));
    p.decodeAgents[0]!.faults!.set({ stall: true });
    const req = { id: 'r1', tokens: prompt(40) };
    const e = await p.decode.decode(req, p.prefill.prefill(req)).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.TIMEOUT)).toBe(true);
    p.decodeAgents[0]!.faults!.clear();
    await allBack(p);
    expect(freed.map((f) => f.reason)).toEqual(['cancelled']); // told by the abort notification, not the lease
    expect(await metricValue(p.registry, 'kvwire_pd_transfer_failures_total', { reason: 'timeout' })).toBe(1);
  });

  it('under policy recompute, a timeout tells the caller to prefill locally', async () => {
    p = await pair({ decode: { timeoutMs: 100, policy: 'recompute' } });
    p.decodeAgents[0]!.faults!.set({ stall: true });
    const req = { id: 'r1', tokens: prompt(40) };
    const r = await p.decode.decode(req, p.prefill.prefill(req));
    expect(r.status).toBe('recompute');
    expect(r.reason?.code).toBe(ErrorCode.TIMEOUT);
    expect(r.verifiedBytes).toBe(3 * p.decode.ranks[0]!.layout.bytesPerBlock);
    p.decodeAgents[0]!.faults!.clear();
    await allBack(p);
  });

  it('fails with PEER_LOST when the prefill dies mid-transfer, and frees its blocks', async () => {
    p = await pair();
    p.decodeAgents[0]!.faults!.set({ delayMs: 200 });
    const req = { id: 'r1', tokens: prompt(40) };
    const pending = p.decode.decode(req, p.prefill.prefill(req)).catch((x: unknown) => x);
    await until(() => p!.decode.coordinator.inFlightBytes > 0, 'the transfer to start');
    p.prefillAgents[0]!.faults!.kill();
    const e = await pending;
    expect(KvwireError.is(e, ErrorCode.PEER_LOST)).toBe(true);
    expect(p.decode.pool.free).toBe(p.decode.pool.total);
    expect(p.decode.coordinator.remoteEngines).toBe(0);
    expect(await metricValue(p.registry, 'kvwire_pd_transfer_failures_total', { reason: 'peer_lost' })).toBe(1);
  });

  it('cancellation on the decode side stops the transfer and frees both sides', async () => {
    p = await pair();
    const freed: BlocksFreedEvent[] = [];
    p.prefill.coordinator.on('blocks-freed', (e: BlocksFreedEvent) => freed.push(e));
    p.decodeAgents[0]!.faults!.set({ delayMs: 5000 });
    const ac = new AbortController();
    const req = { id: 'r1', tokens: prompt(40) };
    const pending = p.decode
      .decode(req, p.prefill.prefill(req), { signal: ac.signal, policy: 'recompute' })
      .catch((x: unknown) => x);
    await until(() => p!.decode.coordinator.inFlightBytes > 0, 'the transfer to start');
    ac.abort();
    const e = await pending;
    expect(KvwireError.is(e, ErrorCode.CANCELLED)).toBe(true); // cancellation is not recomputed
    p.decodeAgents[0]!.faults!.clear();
    await allBack(p);
    expect(freed.map((f) => [f.requestId, f.reason])).toEqual([['r1', 'cancelled']]);
  });

  it('cancellation on the prefill side mid-transfer fails the pull with LEASE_EXPIRED', async () => {
    p = await pair();
    p.decodeAgents[0]!.faults!.set({ delayMs: 100 });
    const req = { id: 'r1', tokens: prompt(40) };
    const ac = new AbortController();
    const params = p.prefill.prefill(req, { signal: ac.signal });
    const pending = p.decode.decode(req, params).catch((x: unknown) => x);
    await until(() => p!.decode.coordinator.inFlightBytes > 0, 'the transfer to start');
    ac.abort();
    const e = await pending;
    expect(KvwireError.is(e, ErrorCode.LEASE_EXPIRED)).toBe(true);
    expect((e as Error).message).toMatch(/cancelled/);
    await allBack(p);
  });

  it('a lease that expired before the pull is LEASE_EXPIRED, never silently stale bytes', async () => {
    p = await pair({ prefill: { leaseMs: 20 } });
    const req = { id: 'r1', tokens: prompt(40) };
    const params = p.prefill.prefill(req);
    await until(() => p!.prefill.coordinator.leases === 0, 'the lease to expire');
    // Another request reuses the freed blocks (and writes other bytes into them).
    p.prefill.prefill({ id: 'r2', tokens: prompt(40, 5000) }, { leaseMs: 60_000 });
    const e = await p.decode.decode(req, params).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.LEASE_EXPIRED)).toBe(true);
    expect((e as Error).message).toMatch(/expired/);
    expect(await metricValue(p.registry, 'kvwire_pd_transfer_failures_total', { reason: 'lease_expired' })).toBe(1);
    p.prefill.coordinator.release('r2');
    await allBack(p);
  });

  it('the fake decode catches bytes that were corrupted in flight', async () => {
    p = await pair();
    p.decodeAgents[0]!.faults!.set({ corrupt: 1 });
    const req = { id: 'r1', tokens: prompt(40) };
    const e = await p.decode.decode(req, p.prefill.prefill(req)).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.CORRUPTED)).toBe(true);
    await allBack(p);
  });

  it('queues pulls beyond the limits and shows the queue depth', async () => {
    p = await pair({ decode: { maxConcurrentRequests: 2 } });
    p.decodeAgents[0]!.faults!.set({ delayMs: 60 });
    const reqs = Array.from({ length: 6 }, (_, i) => ({ id: `r${i}`, tokens: prompt(20, 1000 * i) }));
    const params = reqs.map((r) => p!.prefill.prefill(r));
    const results = Promise.all(reqs.map((r, i) => p!.decode.decode(r, params[i])));
    await until(() => p!.decode.coordinator.queueDepth === 4, 'four pulls to queue');
    expect(await metricValue(p.registry, 'kvwire_pd_queue_depth')).toBe(4);
    expect(p.decode.coordinator.activeRequests).toBe(2);
    expect((await results).every((r) => r.status === 'ready')).toBe(true);
    expect(p.decode.coordinator.queueDepth).toBe(0);
    expect(await metricValue(p.registry, 'kvwire_pd_queue_depth')).toBe(0);
    await allBack(p);
  });

  it('fails with CAPACITY when the local cache has no room, and releases the prefill', async () => {
    p = await pair({ decode: { numBlocks: 2, policy: 'fail' } });
    const req = { id: 'r1', tokens: prompt(40) };
    await expect(p.decode.decode(req, p.prefill.prefill(req))).rejects.toMatchObject({ code: ErrorCode.CAPACITY });
    await allBack(p);
  });

  it('rejects bad pull arguments with typed errors', async () => {
    p = await pair();
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(40) });
    const c = p.decode.coordinator;
    await expect(c.pull({ requestId: 'x', kvTransferParams: { ...params, tp_size: -1 } })).rejects.toMatchObject({
      code: ErrorCode.INVALID_ARGUMENT,
      details: { field: 'tp_size' },
    });
    await expect(c.pull({ requestId: 'x', kvTransferParams: params, cachedPrefixBlocks: 4 })).rejects.toMatchObject({
      details: { field: 'cachedPrefixBlocks' },
    });
    await expect(c.pull({ requestId: 'x', kvTransferParams: params, localBlockIds: [1] })).rejects.toMatchObject({
      details: { field: 'localBlockIds' },
    });
    await expect(c.pull({ requestId: 'x', kvTransferParams: params, timeoutMs: 0 })).rejects.toMatchObject({
      details: { field: 'timeoutMs' },
    });
    // Caller-owned destination blocks work too, and are not freed by the coordinator.
    const mine = p.decode.pool.allocate(3);
    const r = await c.pull({ requestId: 'x', kvTransferParams: params, localBlockIds: mine });
    expect(r.status === 'ready' && r.localBlockIds).toEqual(mine);
    p.decode.pool.release(mine);
    // A lease slot beyond the prefill's table fails the pull, which gives the lease back at once.
    const other = p.prefill.prefill({ id: 'r2', tokens: prompt(40, 3000) });
    await expect(
      c.pull({ requestId: 'y', kvTransferParams: { ...other, remote_lease_slot: 1e9 } }),
    ).rejects.toMatchObject({ details: { field: 'remote_lease_slot' } });
    await allBack(p);
  });

  it('close() ends pulls in flight and frees their blocks', async () => {
    p = await pair();
    p.decodeAgents[0]!.faults!.set({ delayMs: 5000 });
    const req = { id: 'r1', tokens: prompt(40) };
    const pending = p.decode.decode(req, p.prefill.prefill(req)).catch((x: unknown) => x);
    await until(() => p!.decode.coordinator.inFlightBytes > 0, 'the transfer to start');
    await p.decode.coordinator.close();
    expect(KvwireError.is(await pending, ErrorCode.CLOSED)).toBe(true);
    await until(() => p!.prefill.coordinator.leases === 0, 'the abort notification');
    expect(p.decode.pool.free).toBe(p.decode.pool.total);
    await expect(p.decode.coordinator.pull({ requestId: 'y', kvTransferParams: {} })).rejects.toMatchObject({
      code: ErrorCode.CLOSED,
    });
  });
});
