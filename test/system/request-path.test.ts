import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../../lib/system/client.js';
import { parseDecision, pathOf, pullOf, stagesOf } from '../../lib/system/request-path.js';
import { parseServerTiming } from '../../lib/system/server-timing.js';

const PD =
  'decode=decode-1 prefill=prefill-0 pd=disaggregated reason=uncached_at_least_threshold prompt=781 cached=0 won_by=tie; decode-1 total=3.00 prefix-cache=0.00 load=1.00 kv-utilization=1.00 session-affinity=n/a blocks=0 load=0';
const ONLY =
  'decode=decode-0 prefill=- pd=decode_only reason=uncached_below_threshold prompt=604 cached=528 won_by=prefix-cache; decode-0 total=4.00';

function record(decision: string | undefined, timing: string, extra: Partial<RequestRecord> = {}): RequestRecord {
  return {
    index: 0,
    id: 'r',
    session: 's0',
    turn: 0,
    systemPrompt: 0,
    messages: [],
    maxTokens: 16,
    start: 1000,
    firstToken: 1300,
    end: 1500,
    text: 'x',
    timing: parseServerTiming(timing),
    ...(decision === undefined ? {} : { decision }),
    ...extra,
  };
}

describe('what a request went through', () => {
  it("parses the router's decision header", () => {
    expect(parseDecision(PD)).toEqual({
      decode: 'decode-1',
      prefill: 'prefill-0',
      kind: 'disaggregated',
      reason: 'uncached_at_least_threshold',
      promptTokens: 781,
      cachedTokens: 0,
      wonBy: 'tie',
    });
    expect(parseDecision(ONLY)).toMatchObject({ prefill: null, kind: 'decode_only', cachedTokens: 528 });
    expect(parseDecision(undefined)).toBeUndefined();
    expect(parseDecision('nonsense')).toBeUndefined();
  });

  it('tells P/D, decode-only, a fallback, a recompute and a failure apart', () => {
    expect(pathOf(record(PD, 'router;dur=1, sidecar-prefill;dur=50, decode-kv-pull;dur=4;bytes=100;blocks=2'))).toBe(
      'pd',
    );
    expect(pathOf(record(ONLY, 'router;dur=1, queue;dur=0, compute;dur=30'))).toBe('decode-only');
    expect(pathOf(record(PD, 'router;dur=1, sidecar-fallback;desc="unreachable", queue;dur=1, compute;dur=30'))).toBe(
      'fallback',
    );
    // Without the sidecar's entry, a decode engine that ran a P/D request as a plain one got no KV.
    expect(pathOf(record(PD, 'queue;dur=1, compute;dur=30'))).toBe('fallback');
    expect(pathOf(record(PD, 'sidecar-prefill;dur=50, decode-kv-pull;dur=4, decode-recompute;desc="PEER_LOST"'))).toBe(
      'recomputed',
    );
    expect(pathOf(record(PD, '', { error: 'HTTP 502' }))).toBe('failed');
  });

  it('reads the KV pull and lays the stages out from the request start', () => {
    const r = record(
      PD,
      'router;dur=2, sidecar-prefill;dur=50, prefill-queue;dur=5, prefill-compute;dur=30, prefill-kv-store;dur=10, decode-queue;dur=1, decode-kv-pull;dur=4;bytes=1048576;blocks=8, decode-kv-load;dur=6, decode-compute;dur=3',
    );
    expect(pullOf(r)).toEqual({ bytes: 1048576, blocks: 8, ms: 4 });
    const stages = stagesOf(r);
    expect(stages.map((s) => [s.name, s.start, s.dur])).toEqual([
      ['router', 0, 2],
      ['prefill leg', 2, 50],
      ['KV store', 42, 10],
      ['prefill compute', 12, 30],
      ['prefill queue', 7, 5],
      ['decode queue', 52, 1],
      ['KV transfer', 53, 4],
      ['KV load', 57, 6],
      ['decode compute', 63, 3],
      ['generation', 300, 200],
    ]);
    // Nothing reported by the components: what the client saw.
    expect(stagesOf(record(undefined, '')).map((s) => s.name)).toEqual(['to first token', 'generation']);
  });
});
