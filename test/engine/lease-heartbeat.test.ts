/**
 * The engine's leases (lib/engine/serving/engine.ts): a decode request waiting for a compute slot
 * keeps the prefill's lease alive with heartbeats, past the base lease, and then pulls intact
 * KV; a request whose lease the prefill gave up meanwhile recomputes without pulling. And
 * `kvwire engine` takes the lease settings from flags and the environment.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createEngineServer, type EngineServer } from '../../lib/engine/index.js';
import { parseKvTransferParams } from '../../lib/pd/index.js';
import { startEngine, TEST_KV_SECRET } from '../fixtures/engine-process.js';
import { metric as scrape, post } from './helpers.js';

/** A metric's value from /metrics; 0 while the series does not exist yet (counters appear at their first inc). */
async function metric(base: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  try {
    return await scrape(base, name, labels);
  } catch (e) {
    if (/not found/.test((e as Error).message)) return 0;
    throw e;
  }
}

const common = {
  runtime: 'synthetic' as const,
  model: 'llama-3-8b',
  layers: 2,
  numBlocks: 64,
  maxBatchSize: 1,
  port: 0,
  secret: TEST_KV_SECRET,
  transports: 'tcp',
};

const body = (prompt: string) => ({ model: 'llama-3-8b', prompt, max_tokens: 4, temperature: 0 });

describe('engine leases', () => {
  const servers: EngineServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close(1000);
  });

  async function pdPair(leaseMs: number, heartbeatMs: number) {
    const prefill = await createEngineServer({ ...common, role: 'prefill', leaseMs, leaseExtensionMs: leaseMs });
    servers.push(prefill);
    const decode = await createEngineServer({ ...common, role: 'decode', leaseHeartbeatMs: heartbeatMs });
    servers.push(decode);
    return { prefill, decode };
  }

  it('a decode request queued for a slot keeps its lease past the base lease, then pulls', async () => {
    const { prefill, decode } = await pdPair(600, 100);
    const prompt = 'a request that waits in the decode queue for a while';
    const p = await post(`${prefill.url}/v1/completions`, {
      ...body(prompt),
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    expect(p.status).toBe(200);
    const params = parseKvTransferParams(p.body.kv_transfer_params);
    // Occupy the decode's only compute slot: the request queues behind it.
    await decode.engine.slots.acquire();
    const answer = post(`${decode.url}/v1/completions`, { ...body(prompt), kv_transfer_params: params });
    const lease = () => prefill.engine.prefill!.lease(params.remote_request_id);
    const heldAt = lease()!.heldAt;
    await waitFor(() => (lease()?.expiresAt ?? 0) - heldAt > 4 * 600, 'heartbeats to extend the lease 4 base leases');
    expect(decode.engine.slots.waiting).toBe(1);
    expect(decode.engine.decode!.leasesKeptAlive).toBe(1);
    decode.engine.slots.release();
    const d = await answer;
    expect(d.status, JSON.stringify(d.body)).toBe(200);
    expect(await metric(decode.url, 'kvwire_engine_kv_load_failures_total')).toBe(0);
    expect(await metric(decode.url, 'kvwire_pd_blocks_total', { source: 'remote' })).toBeGreaterThan(0);
    expect(await metric(prefill.url, 'kvwire_pd_lease_extensions_total')).toBeGreaterThan(3);
    expect(await metric(prefill.url, 'kvwire_pd_lease_expirations_total')).toBe(0);
    await waitFor(() => prefill.engine.prefill!.leases === 0, 'the done notification');
  });

  it('a queued request whose lease the prefill gave up recomputes without pulling', async () => {
    const { prefill, decode } = await pdPair(60_000, 50);
    const prompt = 'a request whose prefill lets go';
    const p = await post(`${prefill.url}/v1/completions`, {
      ...body(prompt),
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    const params = parseKvTransferParams(p.body.kv_transfer_params);
    await decode.engine.slots.acquire();
    const answer = post(`${decode.url}/v1/completions`, { ...body(prompt), kv_transfer_params: params });
    await waitFor(() => decode.engine.slots.waiting === 1, 'the request to queue');
    expect(prefill.engine.prefill!.release(params.remote_request_id)).toBe(true);
    await waitFor(async () => (await metric(decode.url, 'kvwire_pd_leases_lost_total')) === 1, 'a heartbeat');
    decode.engine.slots.release();
    const d = await answer;
    expect(d.status).toBe(200);
    expect(
      await metric(decode.url, 'kvwire_engine_kv_load_failures_total', { reason: 'ERR_KVWIRE_LEASE_EXPIRED' }),
    ).toBe(1);
    expect(await metric(decode.url, 'kvwire_pd_blocks_total', { source: 'remote' })).toBe(0); // nothing read
  });
});

describe('kvwire engine lease settings', () => {
  it('KVWIRE_LEASE_MS and --lease-extension-ms reach the prefill; an unread lease expires in time', async () => {
    const e = await startEngine({
      role: 'prefill',
      model: 'llama-3-8b',
      args: ['--runtime', 'synthetic', '--layers', '2', '--num-blocks', '64', '--lease-extension-ms', '700'],
      env: { KVWIRE_LEASE_MS: '700' },
    });
    try {
      const p = await post(`${e.url}/v1/completions`, {
        ...body('held for a decode that never comes'),
        max_tokens: 1,
        kv_transfer_params: { do_remote_decode: true },
      });
      expect(p.status).toBe(200);
      await waitFor(
        async () => (await metric(e.url, 'kvwire_pd_lease_expirations_total')) === 1,
        'the 700 ms lease to expire',
      );
      expect(await metric(e.url, 'kvwire_pd_leases_held')).toBe(0);
    } finally {
      expect(await e.stop()).toBe(0);
    }
  });
});

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
