import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { defaultRegistry } from '../../lib/metrics.js';
import { failureReason } from '../../lib/pd/index.js';
import { metricValue, pair, prompt, until, type Pair } from './helpers.js';

const NAMES = [
  'kvwire_pd_transfer_latency_seconds',
  'kvwire_pd_transfer_bytes_total',
  'kvwire_pd_transfer_failures_total',
  'kvwire_pd_inflight_transfers',
  'kvwire_pd_queue_depth',
  'kvwire_pd_lease_expirations_total',
  'kvwire_pd_handshake_latency_seconds',
  'kvwire_pd_blocks_freed_total',
  'kvwire_pd_leases_held',
  'kvwire_pd_descriptors_total',
  'kvwire_pd_blocks_total',
  'kvwire_pd_lease_extensions_total',
  'kvwire_pd_lease_extensions_refused_total',
  'kvwire_pd_lease_heartbeats_received_total',
  'kvwire_pd_lease_heartbeats_sent_total',
  'kvwire_pd_leases_kept_alive',
  'kvwire_pd_leases_lost_total',
];

describe('P/D metrics', () => {
  let p: Pair | undefined;
  afterEach(async () => {
    await p?.close();
    p = undefined;
  });

  it('go to the injected registry, named kvwire_pd_*, labelled by engine', async () => {
    p = await pair();
    const reqs = [
      { id: 'a', tokens: prompt(40) },
      { id: 'b', tokens: prompt(33, 500) },
    ];
    let bytes = 0;
    for (const r of reqs) bytes += (await p.decode.decode(r, p.prefill.prefill(r))).pull!.bytes;
    await until(() => p!.prefill.coordinator.leases === 0, 'leases to be freed');
    const text = await p.registry.metrics();
    for (const name of NAMES) expect(text).toContain(`# TYPE ${name} `);
    expect(await defaultRegistry().metrics()).not.toContain('kvwire_pd_transfer_bytes_total');
    expect(await metricValue(p.registry, 'kvwire_pd_transfer_bytes_total', { engine: 'decode-0' })).toBe(bytes);
    expect(await metricValue(p.registry, 'kvwire_pd_transfer_latency_seconds', { engine: 'decode-0' })).toBe(2);
    expect(await metricValue(p.registry, 'kvwire_pd_handshake_latency_seconds', { engine: 'decode-0' })).toBe(1);
    expect(
      await metricValue(p.registry, 'kvwire_pd_blocks_freed_total', { engine: 'prefill-0', reason: 'notified' }),
    ).toBe(6);
    expect(await metricValue(p.registry, 'kvwire_pd_leases_held', { engine: 'prefill-0' })).toBe(0);
    expect(await metricValue(p.registry, 'kvwire_pd_inflight_transfers', { engine: 'decode-0' })).toBe(0);
    expect(text).toContain('kvwire_pd_leases_kept_alive{engine="decode-0"} 0');
    expect(await metricValue(p.registry, 'kvwire_pd_descriptors_total', { stage: 'uncoalesced' })).toBeGreaterThan(
      await metricValue(p.registry, 'kvwire_pd_descriptors_total', { stage: 'posted' }),
    );
  });

  it('name failure reasons after the error codes', () => {
    expect(failureReason(ErrorCode.TIMEOUT)).toBe('timeout');
    expect(failureReason(ErrorCode.PEER_LOST)).toBe('peer_lost');
    expect(failureReason(ErrorCode.LEASE_EXPIRED)).toBe('lease_expired');
    expect(failureReason(ErrorCode.INCOMPATIBLE)).toBe('incompatible');
    expect(failureReason(ErrorCode.UNAUTHORIZED)).toBe('unauthorized');
    expect(failureReason(ErrorCode.CANCELLED)).toBe('cancelled');
    expect(failureReason('ERR_SOMETHING_ELSE')).toBe('transport');
  });
});
