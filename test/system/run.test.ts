/**
 * The demo at data-plane scale: the synthetic runtime (Llama-3-8B's KV shape, here 2 layers so the
 * test stays small), every KV byte checked by the engines, every output compared with the single
 * worker; and the options the demo refuses.
 */
import { describe, expect, it } from 'vitest';
import { runSystemDemo } from '../../lib/system/run.js';

describe('the demo on the synthetic runtime', () => {
  it('runs the whole path, hands KV off in 2-layer Llama-3-8B blocks, every output matched', async () => {
    const r = await runSystemDemo({
      runtime: 'synthetic',
      model: 'llama-3-8b',
      layers: 2,
      requests: 12,
      concurrency: 3,
      routerListen: { host: '127.0.0.1', port: 0 },
    });
    const s = r.summary;
    expect(s.problems).toEqual([]);
    expect(s.requests).toEqual({ total: 12, ok: 12, failed: 0 });
    expect(s.reference).toEqual({ matched: 12, checked: 12, by: 'token ids' });
    expect(s.ok).toBe(true);
    // 2 layers x K and V x 16 tokens x 8 KV heads x 128 x bf16.
    expect(s.handoff.bytesPerBlock).toBe(2 * 2 * 16 * 8 * 128 * 2);
    expect(s.handoff.handoffs).toBeGreaterThan(0);
    expect(s.paths.pd).toBe(s.handoff.handoffs);
    // The per-request pulls the decode engines reported add up to their counters.
    const pulled = r.records.reduce((n, x) => {
      const e = x.timing.find((t) => t.name === 'decode-kv-pull');
      return n + Number(e?.params['bytes'] ?? 0);
    }, 0);
    expect(pulled).toBe(s.handoff.bytes);
    expect(r.components.map((c) => c.ended)).toEqual(new Array(8).fill('exit code 0'));
  }, 600_000);

  it('refuses a drill that cannot happen', async () => {
    await expect(runSystemDemo({ requests: 5, killPrefillAfter: 5 })).rejects.toThrow(
      /killPrefillAfter must be between 1 and requests - 1 \(4\), got 5/,
    );
  });
});
