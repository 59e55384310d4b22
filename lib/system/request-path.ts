/**
 * What one request went through, read from what came back with it: the router's decision
 * (`x-kvwire-decision`) and the `Server-Timing` entries of the router, the sidecar and the engines.
 * From those: the path it took (P/D, decode-only, a P/D that fell back to decode-only because the
 * prefill failed, a decode that recomputed because its KV pull failed) and its timeline.
 *
 * Server-Timing names (docs/system.md): `router`; `sidecar-prefill` (the whole prefill leg,
 * retries included) or `sidecar-fallback` (desc: why it ran decode-only); from the prefill engine
 * `prefill-queue`, `prefill-compute`, `prefill-kv-store`; from the decode engine `decode-queue`,
 * `decode-kv-pull` (with `bytes=` and `blocks=`), `decode-kv-load`, `decode-compute` and
 * `decode-recompute` when the pull failed; a request served without P/D has `queue` and `compute`.
 *
 * @packageDocumentation
 */
import type { RequestRecord } from './client.js';
import type { ServerTimingEntry } from './server-timing.js';

/** The router's decision, from its header's first part. */
export interface ParsedDecision {
  /** Decode endpoint name. */
  readonly decode: string;
  /** Prefill endpoint name, or null for decode-only. */
  readonly prefill: string | null;
  /** `disaggregated` or `decode_only`. */
  readonly kind: string;
  /** The P/D decider's reason (`uncached_at_least_threshold`, ...). */
  readonly reason: string;
  /** Prompt tokens, when known. */
  readonly promptTokens?: number;
  /** Tokens the chosen decode worker holds, per the index. */
  readonly cachedTokens?: number;
  /** The scorer that set the winner apart. */
  readonly wonBy?: string;
}

/** Parses `decode=d1 prefill=p0 pd=disaggregated reason=... prompt=N cached=N won_by=...; ...`. */
export function parseDecision(header: string | undefined): ParsedDecision | undefined {
  if (header === undefined) return undefined;
  const head = header.split(';')[0]!;
  const kv = new Map<string, string>();
  for (const part of head.trim().split(/\s+/)) {
    const eq = part.indexOf('=');
    if (eq > 0) kv.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const decode = kv.get('decode');
  const kind = kv.get('pd');
  if (decode === undefined || kind === undefined) return undefined;
  const num = (k: string): number | undefined => {
    const v = Number(kv.get(k));
    return kv.has(k) && Number.isFinite(v) ? v : undefined;
  };
  const prompt = num('prompt');
  const cached = num('cached');
  const prefill = kv.get('prefill');
  return {
    decode,
    prefill: prefill === undefined || prefill === '-' ? null : prefill,
    kind,
    reason: kv.get('reason') ?? 'unknown',
    ...(prompt === undefined ? {} : { promptTokens: prompt }),
    ...(cached === undefined ? {} : { cachedTokens: cached }),
    ...(kv.has('won_by') ? { wonBy: kv.get('won_by')! } : {}),
  };
}

/** The path a request took. */
export type RequestPath = 'pd' | 'decode-only' | 'fallback' | 'recomputed' | 'failed';

const has = (t: readonly ServerTimingEntry[], name: string): boolean => t.some((e) => e.name === name);

/** The path of a request (see the module documentation). */
export function pathOf(r: RequestRecord): RequestPath {
  if (r.error !== undefined) return 'failed';
  const d = parseDecision(r.decision);
  if (d === undefined || d.kind !== 'disaggregated') return 'decode-only';
  if (has(r.timing, 'sidecar-fallback')) return 'fallback';
  if (has(r.timing, 'decode-recompute')) return 'recomputed';
  // Without the sidecar's entry: a decode engine that ran the request as a plain one got no KV.
  if (!has(r.timing, 'decode-kv-pull') && has(r.timing, 'compute')) return 'fallback';
  return 'pd';
}

/** The KV pull of a request, when its decode engine reported one. */
export interface PullTiming {
  /** Bytes READ from the prefill (0 when every block was cached on the decode worker). */
  readonly bytes: number;
  /** Blocks READ. */
  readonly blocks: number;
  /** Duration, ms. */
  readonly ms: number;
  /** The READs themselves, ms. */
  readonly transferMs?: number;
  /** Waiting for pull capacity, ms. */
  readonly queueMs?: number;
  /** The handshake this pull paid, ms. */
  readonly handshakeMs?: number;
  /** UCX transport (`sm`, `tcp`, ...). */
  readonly transport?: string;
}

/** The `decode-kv-pull` entry of a request. */
export function pullOf(r: RequestRecord): PullTiming | undefined {
  const e = r.timing.find((x) => x.name === 'decode-kv-pull');
  if (e === undefined || e.dur === undefined) return undefined;
  const num = (k: string): number | undefined => {
    const v = Number(e.params[k]);
    return e.params[k] !== undefined && Number.isFinite(v) ? v : undefined;
  };
  const [transferMs, queueMs, handshakeMs] = [num('transfer'), num('queue'), num('handshake')];
  return {
    bytes: num('bytes') ?? 0,
    blocks: num('blocks') ?? 0,
    ms: e.dur,
    ...(transferMs === undefined ? {} : { transferMs }),
    ...(queueMs === undefined ? {} : { queueMs }),
    ...(handshakeMs === undefined ? {} : { handshakeMs }),
    ...(e.params['transport'] === undefined ? {} : { transport: e.params['transport'] }),
  };
}

/** A segment of a request's timeline, ms from the request's start. */
export interface Stage {
  /** What (`router`, `prefill leg`, `prefill compute`, `KV transfer`, `generation`, ...). */
  readonly name: string;
  /** The component family it belongs to (for colour): router, sidecar, prefill, transfer, decode, client. */
  readonly lane: 'router' | 'sidecar' | 'prefill' | 'transfer' | 'decode' | 'client';
  /** Start, ms after the request was sent. */
  readonly start: number;
  /** Duration, ms. */
  readonly dur: number;
}

const dur = (t: readonly ServerTimingEntry[], name: string): number => t.find((e) => e.name === name)?.dur ?? 0;

/**
 * A request's timeline: the router's decision, the sidecar's prefill leg (with the prefill
 * engine's queue, compute and KV store at its end), the decode engine's queue, KV transfer, KV
 * load and compute, then the generation the client saw (first token to end). Segments the
 * components did not report are left out; the gaps between segments are HTTP and proxying.
 */
export function stagesOf(r: RequestRecord): Stage[] {
  const t = r.timing;
  const out: Stage[] = [];
  const router = dur(t, 'router');
  if (router > 0) out.push({ name: 'router', lane: 'router', start: 0, dur: router });
  let at = router;
  const leg = dur(t, 'sidecar-prefill');
  if (leg > 0) {
    out.push({ name: 'prefill leg', lane: 'sidecar', start: at, dur: leg });
    // The prefill engine's parts end where the leg ends (what precedes them is HTTP and JSON).
    let end = at + leg;
    for (const [name, label, lane] of [
      ['prefill-kv-store', 'KV store', 'prefill'],
      ['prefill-compute', 'prefill compute', 'prefill'],
      ['prefill-queue', 'prefill queue', 'prefill'],
    ] as const) {
      const d = dur(t, name);
      if (d <= 0) continue;
      end -= d;
      out.push({ name: label, lane, start: Math.max(at, end), dur: d });
    }
    at += leg;
  }
  for (const [name, label, lane] of [
    ['decode-queue', 'decode queue', 'decode'],
    ['queue', 'queue', 'decode'],
    ['decode-kv-pull', 'KV transfer', 'transfer'],
    ['decode-kv-load', 'KV load', 'decode'],
    ['decode-recompute', 'recompute', 'decode'],
    ['decode-compute', 'decode compute', 'decode'],
    ['compute', 'compute', 'decode'],
  ] as const) {
    const d = dur(t, name);
    if (d <= 0) continue;
    out.push({ name: label, lane, start: at, dur: d });
    at += d;
  }
  if (r.firstToken !== undefined && r.end !== undefined) {
    const first = r.firstToken - r.start;
    if (out.length === 0) out.push({ name: 'to first token', lane: 'client', start: 0, dur: first });
    out.push({ name: 'generation', lane: 'client', start: first, dur: Math.max(0, r.end - r.firstToken) });
  }
  return out;
}
