import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { createRegistry } from '../../lib/metrics.js';
import { KvLayout } from '../../lib/kv/index.js';
import {
  DecodeCoordinator,
  PrefillCoordinator,
  registerKvCache,
  type BlocksFreedEvent,
  type BlocksHeldEvent,
} from '../../lib/pd/index.js';
import { Agent } from '../../lib/transport/index.js';
import { SECRET, SMALL, metricValue, pair, prompt, until, type Pair } from './helpers.js';

describe('PrefillCoordinator', () => {
  let p: Pair | undefined;
  const agents: Agent[] = [];
  afterEach(async () => {
    await p?.close();
    p = undefined;
    for (const a of agents.splice(0)) await a.close();
  });

  it('holds blocks and answers vLLM-shaped kv_transfer_params', async () => {
    p = await pair();
    const held: BlocksHeldEvent[] = [];
    p.prefill.coordinator.on('blocks-held', (e: BlocksHeldEvent) => held.push(e));
    const params = p.prefill.prefill({ id: 'req-7', tokens: prompt(50) });
    expect(params).toMatchObject({
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_engine_id: 'prefill-0',
      remote_request_id: 'req-7',
      remote_block_ids: [0, 1, 2, 3],
      remote_host: '127.0.0.1',
      remote_port: p.prefill.coordinator.port,
      tp_size: 1,
    });
    expect(params.remote_lease_token).toBeGreaterThan(0);
    expect(held).toEqual([
      expect.objectContaining({ engineId: 'prefill-0', requestId: 'req-7', blockIds: [0, 1, 2, 3] }),
    ]);
    expect(p.prefill.coordinator.leases).toBe(1);
    expect(await metricValue(p.registry, 'kvwire_pd_leases_held')).toBe(1);
  });

  it('frees the blocks when the decode side notifies, and reports why', async () => {
    p = await pair();
    const freed: BlocksFreedEvent[] = [];
    p.prefill.coordinator.on('blocks-freed', (e: BlocksFreedEvent) => freed.push(e));
    const req = { id: 'r1', tokens: prompt(33) };
    await p.decode.decode(req, p.prefill.prefill(req));
    await until(() => freed.length === 1, 'the done notification');
    expect(freed[0]).toMatchObject({ requestId: 'r1', blockIds: [0, 1, 2], reason: 'notified' });
    expect(p.prefill.pool.free).toBe(p.prefill.pool.total);
    expect(await metricValue(p.registry, 'kvwire_pd_blocks_freed_total', { reason: 'notified' })).toBe(3);
  });

  it('frees the blocks when the lease expires if the notification was dropped', async () => {
    p = await pair({ prefill: { leaseMs: 150 } });
    const expired: BlocksFreedEvent[] = [];
    p.prefill.coordinator.on('lease-expired', (e: BlocksFreedEvent) => expired.push(e));
    p.decodeAgents[0]!.faults!.set({ dropNotifications: 1 });
    const req = { id: 'r1', tokens: prompt(40) };
    const r = await p.decode.decode(req, p.prefill.prefill(req));
    expect(r.status).toBe('ready'); // the decode side has its bytes; only the "done" got lost
    expect(p.prefill.coordinator.leases).toBe(1);
    await until(() => expired.length === 1, 'the lease to expire');
    expect(expired[0]).toMatchObject({ requestId: 'r1', reason: 'expired' });
    expect(p.prefill.coordinator.leases).toBe(0);
    expect(p.prefill.pool.free).toBe(p.prefill.pool.total);
    expect(await metricValue(p.registry, 'kvwire_pd_lease_expirations_total')).toBe(1);
  });

  it('cancels on its side: by release() or by the hold signal', async () => {
    p = await pair();
    const freed: BlocksFreedEvent[] = [];
    p.prefill.coordinator.on('blocks-freed', (e: BlocksFreedEvent) => freed.push(e));
    p.prefill.prefill({ id: 'a', tokens: prompt(20) });
    expect(p.prefill.coordinator.release('a')).toBe(true);
    expect(p.prefill.coordinator.release('a')).toBe(false);
    const ac = new AbortController();
    p.prefill.prefill({ id: 'b', tokens: prompt(20) }, { signal: ac.signal });
    ac.abort();
    expect(freed.map((e) => [e.requestId, e.reason])).toEqual([
      ['a', 'cancelled'],
      ['b', 'cancelled'],
    ]);
    expect(p.prefill.pool.free).toBe(p.prefill.pool.total);
  });

  it('ignores notifications with a wrong token or of another protocol', async () => {
    p = await pair();
    const params = p.prefill.prefill({ id: 'r1', tokens: prompt(20) });
    const d = p.decodeAgents[0]!;
    const peer = await d.connect(p.prefillAgents[0]!.metadata());
    await peer.notify(JSON.stringify({ kvwire: 'done', req: 'r1', lease: params.remote_lease_token + 1 }));
    await peer.notify('kvwire:done:r1');
    await peer.notify(JSON.stringify({ kvwire: 'abort', req: 'r2', lease: params.remote_lease_token }));
    await new Promise((r) => setImmediate(r));
    expect(p.prefill.coordinator.leases).toBe(1);
    await peer.notify(JSON.stringify({ kvwire: 'abort', req: 'r1', lease: params.remote_lease_token }));
    await until(() => p!.prefill.coordinator.leases === 0, 'the abort');
    expect(p.prefill.freed.cancelled).toBe(2);
  });

  it('frees every lease when it closes', async () => {
    p = await pair();
    p.prefill.prefill({ id: 'a', tokens: prompt(20) });
    p.prefill.prefill({ id: 'b', tokens: prompt(20) });
    await p.prefill.coordinator.close();
    expect(p.prefill.freed.closed).toBe(4);
    expect(p.prefill.pool.free).toBe(p.prefill.pool.total);
    expect(() => p!.prefill.coordinator.hold({ requestId: 'c', blockIds: [1] })).toThrow(
      expect.objectContaining({ code: ErrorCode.CLOSED }),
    );
  });

  it('refuses bad holds with typed errors', async () => {
    p = await pair({ numBlocks: 8 });
    const c = p.prefill.coordinator;
    expect(() => c.hold({ requestId: '', blockIds: [1] })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    expect(() => c.hold({ requestId: 'x', blockIds: [] })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    expect(() => c.hold({ requestId: 'x', blockIds: [8] })).toThrow(
      expect.objectContaining({ code: ErrorCode.OUT_OF_BOUNDS }),
    );
    expect(() => c.hold({ requestId: 'x', blockIds: [1], leaseMs: -1 })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    const ids = p.prefill.pool.allocate(2); // onFree gives blocks back to the pool: hold only pool blocks
    c.hold({ requestId: 'x', blockIds: [ids[0]!] });
    expect(() => c.hold({ requestId: 'x', blockIds: [ids[1]!] })).toThrow(
      expect.objectContaining({ code: ErrorCode.INVALID_ARGUMENT }),
    );
    p.prefill.pool.release([ids[1]!]);
  });

  it('refuses rank agents that do not authenticate their peers, unless told they need not', async () => {
    const open = await Agent.create({ engine: 'loopback', auth: false });
    agents.push(open);
    const layout = new KvLayout({ model: SMALL, numBlocks: 4 });
    const rank = registerKvCache(open, layout, { access: 'read' });
    const e = await PrefillCoordinator.create({
      engineId: 'p',
      ranks: [rank],
      secret: SECRET,
      registry: createRegistry(),
    }).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.INVALID_ARGUMENT)).toBe(true);
    expect((e as KvwireError).message).toMatch(/does not authenticate its peers.*auth: \{ secret \}/);
    const openDecode = await Agent.create({ engine: 'loopback', auth: false });
    agents.push(openDecode);
    const d = await DecodeCoordinator.create({
      engineId: 'd',
      ranks: [registerKvCache(openDecode, layout, { access: 'none' })],
      secret: SECRET,
      registry: createRegistry(),
    }).catch((x: unknown) => x);
    expect(KvwireError.is(d, ErrorCode.INVALID_ARGUMENT)).toBe(true);
    const opted = await PrefillCoordinator.create({
      engineId: 'p',
      ranks: [rank],
      secret: SECRET,
      registry: createRegistry(),
      unauthenticatedAgents: true,
    });
    await opted.close();
  });

  it('refuses a cache decode workers could not read, and a side channel port in use', async () => {
    const agent = await Agent.create({ engine: 'loopback', auth: { secret: SECRET } });
    agents.push(agent);
    const layout = new KvLayout({ model: SMALL, numBlocks: 4 });
    const hidden = registerKvCache(agent, layout, { access: 'none' });
    await expect(
      PrefillCoordinator.create({ engineId: 'p', ranks: [hidden], secret: SECRET, registry: createRegistry() }),
    ).rejects.toMatchObject({ code: ErrorCode.INVALID_ARGUMENT, details: { field: 'regions' } });
    const other = await Agent.create({ engine: 'loopback', auth: { secret: SECRET } });
    agents.push(other);
    const ok = registerKvCache(other, layout, { access: 'read' });
    const first = await PrefillCoordinator.create({
      engineId: 'p',
      ranks: [ok],
      secret: SECRET,
      registry: createRegistry(),
    });
    const third = await Agent.create({ engine: 'loopback', auth: { secret: SECRET } });
    agents.push(third);
    const e = await PrefillCoordinator.create({
      engineId: 'q',
      ranks: [registerKvCache(third, layout, { access: 'read' })],
      secret: SECRET,
      port: first.port,
      registry: createRegistry(),
    }).catch((x: unknown) => x);
    expect(KvwireError.is(e, ErrorCode.PEER_UNREACHABLE)).toBe(true);
    expect(third.regions.map((r) => r.label)).not.toContain('kvwire-leases'); // withdrawn again
    await first.close();
  });
});
