import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KvwireError } from '../../lib/errors.js';
import { KvIndex } from '../../lib/kv-index/kv-index.js';
import { createRegistry, type MetricsRegistry } from '../../lib/metrics.js';
import { checkEndpoint, type EndpointInput } from '../../lib/scheduler/endpoint.js';
import { EXPLAIN_HEADER } from '../../lib/scheduler/explain.js';
import { Scheduler, statusOf, type CandidateSource } from '../../lib/scheduler/scheduler.js';
import { sessionEndpoint, sessionToken } from '../../lib/scheduler/scorers/session-affinity.js';
import type { Candidate, LoadSample } from '../../lib/scheduler/types.js';

/** A prompt of `n` tokens; `seed` makes different prompts. */
const prompt = (n: number, seed = 1): number[] => Array.from({ length: n }, (_, i) => (seed * 7919 + i * 31) % 50_000);

interface Fake {
  name: string;
  role?: 'decode' | 'prefill';
  healthy?: boolean;
  load?: Partial<LoadSample>;
  inflight?: number;
  models?: string[];
  url?: string;
}

function source(list: Fake[]): CandidateSource & { list: Fake[] } {
  return {
    list,
    candidates(role) {
      return list
        .filter((f) => (f.role ?? 'decode') === role)
        .map((f): Candidate => {
          const input: EndpointInput = {
            name: f.name,
            role: f.role ?? 'decode',
            url: f.url ?? `http://10.0.0.${list.indexOf(f) + 1}:8000`,
            models: f.models ?? ['m'],
          };
          return {
            spec: checkEndpoint(input, f.name),
            healthy: f.healthy ?? true,
            load:
              f.load === undefined
                ? undefined
                : { waiting: 0, running: 0, at: Date.now(), source: 'reported', ...f.load },
            inflight: f.inflight ?? 0,
          };
        });
    },
  };
}

async function expectStatus(p: Promise<unknown>, status: number, message: RegExp): Promise<void> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(KvwireError);
  expect(statusOf(e)).toBe(status);
  expect((e as Error).message).toMatch(message);
}

describe('Scheduler', () => {
  let index: KvIndex;
  let registry: MetricsRegistry;
  beforeEach(async () => {
    registry = createRegistry();
    index = await KvIndex.create({ registry });
  });
  afterEach(async () => index.close());

  const make = (list: Fake[], o: Partial<ConstructorParameters<typeof Scheduler>[0]> = {}): Scheduler =>
    new Scheduler({ index, endpoints: source(list), registry, ...o });

  it('sends a prompt to the decode worker that holds its prefix, and says the prefix won it', async () => {
    const p = prompt(512);
    await index.stored('d1', index.blockKeys(p.slice(0, 256)));
    const s = make([{ name: 'd0' }, { name: 'd1' }, { name: 'd2' }]);
    const d = await s.schedule({ model: 'm', tokens: p, headers: {} });
    expect(d.decode.name).toBe('d1');
    expect(d.wonBy).toBe('prefix-cache');
    expect(d.cachedTokens).toBe(256);
    expect(d.candidates[0]!.scores['prefix-cache']).toBeCloseTo(0.5);
    expect(d.candidates[1]!.scores['prefix-cache']).toBe(0);
  });

  it('goes to the least loaded worker when no prefix is cached, and load can outweigh a short prefix', async () => {
    const p = prompt(512);
    const s = make([
      { name: 'd0', load: { waiting: 5, running: 4 } },
      { name: 'd1', load: { running: 1 } },
    ]);
    const d = await s.schedule({ model: 'm', tokens: p, headers: {} });
    expect(d.decode.name).toBe('d1');
    expect(d.wonBy).toBe('load');
    // d0 holds 1 of 32 blocks (prefix 3 × 1/32 ≈ 0.09) but is 9× busier (load 1 × 0.89): d1 still wins.
    await index.stored('d0', index.blockKeys(p.slice(0, 16)));
    expect((await s.schedule({ model: 'm', tokens: p, headers: {} })).decode.name).toBe('d1');
    // With the whole prompt cached on d0, the prefix wins over the load.
    await index.stored('d0', index.blockKeys(p));
    const full = await s.schedule({ model: 'm', tokens: p, headers: {} });
    expect(full.decode.name).toBe('d0');
    expect(full.wonBy).toBe('prefix-cache');
  });

  it('weights come from the config: with prefix-cache 0 the cached worker no longer wins', async () => {
    const p = prompt(256);
    await index.stored('d0', index.blockKeys(p));
    const list = [
      { name: 'd0', load: { running: 3 } },
      { name: 'd1', load: { running: 1 } },
    ];
    expect((await make(list).schedule({ model: 'm', tokens: p, headers: {} })).decode.name).toBe('d0');
    expect(
      (await make(list, { weights: { 'prefix-cache': 0 } }).schedule({ model: 'm', tokens: p, headers: {} })).decode
        .name,
    ).toBe('d1');
    expect(() => make(list, { weights: { nope: 1 } as never })).toThrow(/names no scorer/);
    expect(() => make(list, { weights: { load: -1 } })).toThrow(/weight is a number/);
  });

  it('keeps a session on its worker through x-session-token (llm-d encoded endpoint header)', async () => {
    const s = make([{ name: 'd0' }, { name: 'd1' }, { name: 'd2' }]);
    const token = sessionToken('d2');
    expect(sessionEndpoint(token)).toBe('d2');
    expect(sessionEndpoint('not base64!')).toBeUndefined();
    for (let i = 0; i < 3; i++) {
      const d = await s.schedule({ model: 'm', tokens: prompt(64, i), headers: { 'x-session-token': token } });
      expect(d.decode.name).toBe('d2');
      expect(d.wonBy).toBe('session-affinity');
    }
    // A token naming an endpoint that is gone is no opinion.
    const d = await s.schedule({
      model: 'm',
      tokens: prompt(64),
      headers: { 'x-session-token': sessionToken('gone') },
    });
    expect(d.candidates[0]!.scores['session-affinity']).toBeUndefined();
  });

  it('filters out ejected endpoints and endpoints of other models; none left is 503, no such model 404', async () => {
    const s = make([{ name: 'd0', healthy: false }, { name: 'd1', models: ['other'] }, { name: 'd2' }]);
    for (let i = 0; i < 4; i++)
      expect((await s.schedule({ model: 'm', tokens: prompt(64, i), headers: {} })).decode.name).toBe('d2');
    await expectStatus(
      s.schedule({ model: 'nope', tokens: prompt(64), headers: {} }),
      404,
      /no decode endpoint serves model "nope"/,
    );
    await expectStatus(
      make([{ name: 'd0', healthy: false }]).schedule({ model: 'm', headers: {} }),
      503,
      /ejected by health checks \(d0\)/,
    );
  });

  it('honours the subset hint: only endpoints in it, and an empty or foreign subset is 503', async () => {
    const s = make([
      { name: 'd0', url: 'http://10.1.0.1:8000' },
      { name: 'd1', url: 'http://10.1.0.2:8000' },
    ]);
    const p = prompt(64);
    await index.stored('d0', index.blockKeys(p));
    expect(
      (await s.schedule({ model: 'm', tokens: p, headers: {}, subset: new Set(['10.1.0.2:8000']) })).decode.name,
    ).toBe('d1');
    await expectStatus(
      s.schedule({ model: 'm', tokens: p, headers: {}, subset: new Set() }),
      503,
      /subset hint \(empty\)/,
    );
    await expectStatus(
      s.schedule({ model: 'm', tokens: p, headers: {}, subset: new Set(['10.9.9.9:1']) }),
      503,
      /subset hint/,
    );
  });

  it('disaggregates when the uncached part reaches the threshold, with the least loaded prefill worker', async () => {
    const s = make(
      [
        { name: 'd0' },
        { name: 'p0', role: 'prefill', load: { running: 3 } },
        { name: 'p1', role: 'prefill', load: { running: 1 } },
      ],
      { pdThreshold: 256 },
    );
    const p = prompt(1024);
    const d = await s.schedule({ model: 'm', tokens: p, headers: {} });
    expect(d.kind).toBe('disaggregated');
    expect(d.reason).toBe('uncached_at_least_threshold');
    expect(d.prefill?.name).toBe('p1');
    expect(d.uncachedTokens).toBe(1024);
    // Cache all but 240 tokens on d0: below the threshold, decode-only.
    await index.stored('d0', index.blockKeys(p.slice(0, 784)));
    const short = await s.schedule({ model: 'm', tokens: p, headers: {} });
    expect(short.kind).toBe('decode_only');
    expect(short.reason).toBe('uncached_below_threshold');
    expect(short.uncachedTokens).toBe(240);
    expect(short.prefill).toBeUndefined();
  });

  it('runs decode-only when no prefill worker is healthy or the tokens are unknown, and says why', async () => {
    const s = make([{ name: 'd0' }, { name: 'p0', role: 'prefill', healthy: false }], { pdThreshold: 16 });
    expect((await s.schedule({ model: 'm', tokens: prompt(512), headers: {} })).reason).toBe('no_prefill_endpoint');
    const unknown = await make([{ name: 'd0' }, { name: 'p0', role: 'prefill' }]).schedule({
      model: 'm',
      headers: {},
      tokensError: 'tokenize: connection refused',
    });
    expect(unknown.kind).toBe('decode_only');
    expect(unknown.reason).toBe('tokens_unknown');
    expect(unknown.explanation).toContain('tokens_error=tokenize: connection refused');
  });

  it('treats missing or stale metrics as no data (neutral), not as idle or busy', async () => {
    // d0 has no sample: its kv-utilization is n/a (0.5); its load falls back to what is in flight.
    const s = make([
      { name: 'd0', inflight: 2 },
      { name: 'd1', load: { running: 1, kvUsage: 0.9 } },
    ]);
    const d = await s.schedule({ model: 'm', tokens: prompt(64), headers: {} });
    const byName = Object.fromEntries(d.candidates.map((c) => [c.name, c]));
    expect(byName.d0!.scores['kv-utilization']).toBeUndefined();
    expect(byName.d0!.load).toBe(2);
    expect(byName.d1!.scores['kv-utilization']).toBeCloseTo(0.1);
    expect(byName.d0!.scores.load).toBe(0);
    expect(byName.d1!.scores.load).toBeCloseTo(0.5);
    expect(d.explanation).toMatch(/kv-utilization=n\/a/);
  });

  it('spreads exact ties in turn and prefers fewer requests in flight', async () => {
    const s = make([{ name: 'd0' }, { name: 'd1' }, { name: 'd2' }], { weights: { load: 0 } });
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) {
      const d = await s.schedule({ model: 'm', tokens: prompt(64, i), headers: {} });
      expect(d.wonBy).toBe('tie');
      seen.add(d.decode.name);
    }
    expect([...seen].sort()).toEqual(['d0', 'd1', 'd2']);
    const busy = make([{ name: 'd0', inflight: 1 }, { name: 'd1' }], { weights: { load: 0 } });
    for (let i = 0; i < 3; i++) expect((await busy.schedule({ model: 'm', headers: {} })).decode.name).toBe('d1');
  });

  it('sheds with 429 when every candidate has the configured queue waiting', async () => {
    const s = make(
      [
        { name: 'd0', load: { waiting: 8 } },
        { name: 'd1', load: { waiting: 9 } },
      ],
      { shedQueueDepth: 8 },
    );
    await expectStatus(s.schedule({ model: 'm', headers: {} }), 429, /shedding/);
    const ok = make(
      [
        { name: 'd0', load: { waiting: 8 } },
        { name: 'd1', load: { waiting: 2 } },
      ],
      { shedQueueDepth: 8 },
    );
    expect((await ok.schedule({ model: 'm', headers: {} })).decode.name).toBe('d1');
  });

  it('explains each decision on one header-safe line and counts decisions by reason', async () => {
    const s = make([{ name: 'd0' }, { name: 'p0', role: 'prefill' }], { pdThreshold: 64 });
    const d = await s.schedule({ model: 'm', tokens: prompt(128), headers: {} });
    expect(d.explanation).toMatch(
      /^decode=d0 prefill=p0 pd=disaggregated reason=uncached_at_least_threshold prompt=128 cached=0 won_by=only_candidate; d0 total=/,
    );
    expect(d.explanation).toMatch(/^[\x20-\x7e]+$/);
    expect(EXPLAIN_HEADER).toBe('x-kvwire-decision');
    await s.schedule({ model: 'm', tokens: prompt(16), headers: {} });
    await s.schedule({ model: 'zzz', headers: {} }).catch(() => undefined);
    const text = await registry.metrics();
    expect(text).toContain(
      'kvwire_scheduler_decisions_total{decision="disaggregated",reason="uncached_at_least_threshold"} 1',
    );
    expect(text).toContain(
      'kvwire_scheduler_decisions_total{decision="decode_only",reason="uncached_below_threshold"} 1',
    );
    expect(text).toContain('kvwire_scheduler_rejections_total{status="404"} 1');
    expect(text).toContain('kvwire_scheduler_picks_total{endpoint="d0",won_by="only_candidate"} 2');
  });
});
