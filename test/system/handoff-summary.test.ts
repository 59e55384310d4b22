/**
 * The hand-off summary: totals from the decode engines' counters, the breakdown of a pull from the
 * Server-Timing entries, and sentences that add up (the READs, handshakes, queue and the rest make
 * the whole pull; GB/s is bytes over the READs' time).
 */
import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/system/client.js';
import { handoffOf } from '../../lib/system/handoff-summary.js';
import type { ScrapedMetrics } from '../../lib/system/metrics-scrape.js';
import { parseServerTiming } from '../../lib/system/server-timing.js';

function record(id: string, timing: string): RequestRecord {
  return {
    index: 0,
    id,
    session: 's0',
    turn: 0,
    systemPrompt: 0,
    messages: [],
    maxTokens: 16,
    start: 0,
    end: 100,
    text: 'x',
    timing: parseServerTiming(timing),
  };
}

const sample = (name: string, value: number, labels: Record<string, string> = {}) => ({ name, labels, value });

/** Two pulls of 4 MB each: 20 ms and 30 ms of READs, the first with a 10 ms handshake. */
const records = [
  record('a', 'decode-kv-pull;dur=36;bytes=4000000;blocks=32;transfer=20;handshake=10;transport=sm'),
  record('b', 'decode-kv-pull;dur=34;bytes=4000000;blocks=32;transfer=30;queue=2;transport=sm'),
  record('c', 'queue;dur=1, compute;dur=5'),
];
const metrics: ScrapedMetrics[] = [
  {
    name: 'decode-0',
    role: 'decode',
    samples: [
      sample('kvwire_pd_transfer_latency_seconds_count', 2),
      sample('kvwire_pd_transfer_latency_seconds_sum', 0.05),
      sample('kvwire_pd_transfer_bytes_total', 8e6),
      sample('kvwire_pd_blocks_total', 64, { source: 'remote' }),
      sample('kvwire_pd_blocks_total', 10, { source: 'cached' }),
      sample('kvwire_pd_descriptors_total', 16, { stage: 'posted' }),
      sample('kvwire_pd_handshake_latency_seconds_count', 1),
      sample('kvwire_pd_handshake_latency_seconds_sum', 0.01),
      sample('kvwire_engine_kv_handoff_seconds_count', 2, { stage: 'load' }),
      sample('kvwire_engine_kv_handoff_seconds_sum', 0.01, { stage: 'load' }),
    ],
  },
  {
    name: 'prefill-0',
    role: 'prefill',
    samples: [
      sample('kvwire_engine_kv_handoff_seconds_count', 2, { stage: 'store' }),
      sample('kvwire_engine_kv_handoff_seconds_sum', 0.02, { stage: 'store' }),
      // A prefill's own counters never count as hand-offs.
      sample('kvwire_pd_transfer_bytes_total', 1e9),
    ],
  },
];

describe('the hand-off summary', () => {
  const h = handoffOf(records, metrics, { copyGbps: 10, freshCopyGbps: 1, loadAverage: 3, runtime: 'llama' });

  it('takes totals from the decode counters and the breakdown from Server-Timing', () => {
    expect(h.handoffs).toBe(2);
    expect(h.bytes).toBe(8e6);
    expect(h.bytesPerBlock).toBe(125_000);
    expect(h.bytesPerHandoff).toBe(4e6);
    expect(h.descriptorsPerHandoff).toBe(8);
    expect(h.msPerHandoff).toBeCloseTo(25);
    expect(h.gbpsPerHandoff).toBeCloseTo(0.16); // 8 MB in 50 ms of READs
    expect(h.msPerPull).toBeCloseTo(35);
    expect(h.breakdownMs).toEqual({ reads: 25, handshake: 5, queue: 1 });
    expect(h.transports).toEqual(['sm']);
    expect(h.msStore).toBeCloseTo(10);
    expect(h.msLoad).toBeCloseTo(5);
  });

  it('explains the figure in sentences whose parts add up', () => {
    const text = h.why.join('\n');
    expect(text).toContain('READ 4.00 MB on average (125,000 bytes per 16-token block');
    expect(text).toContain('8 descriptors posted after coalescing) over UCX sm in 25.0 ms');
    expect(text).toContain('0.16 GB/s, 2% of a plain memory copy');
    // 35 = 25 READs + 5 handshake + 1 queue + 4 rest.
    expect(text).toContain('took 35.0 ms on average: the READs 25.0 ms, handshakes 5.0 ms');
    expect(text).toContain('waiting for pull capacity 1.0 ms, and 4.0 ms taking blocks');
    expect(text).toContain('runs at 1.00 GB/s on this machine (measured in the same run): the READs reach 16% of that');
    expect(text).toContain('llama.cpp has no in-memory KV API');
  });

  it('names what the synthetic runtime does around the pull, and says when nothing was handed off', () => {
    const s = handoffOf(records, metrics, { copyGbps: 10, loadAverage: 0, runtime: 'synthetic' });
    expect(s.why.join('\n')).toContain('the decode checks every byte it pulled');
    expect(s.why.join('\n')).not.toContain('llama.cpp');
    expect(s.why.join('\n')).not.toContain('touched for the first time'); // not measured
    const none = handoffOf([records[2]!], [], { copyGbps: 10, loadAverage: 0, runtime: 'llama' });
    expect(none.handoffs).toBe(0);
    expect(none.why).toEqual([
      'No KV was handed off: every request ran decode-only (short uncached parts, or no prefill worker).',
    ]);
  });
});
