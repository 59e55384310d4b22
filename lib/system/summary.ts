/**
 * The demo's summary: what the requests saw (ok/failed, TTFT, tokens/s), what the router decided
 * and why, what the KV hand-offs moved and why their speed is what it is, the prefix-cache hit
 * rate, the token-for-token check against the single worker, and the fault drill's recovery.
 *
 * Client-side numbers come from the request records; KV figures from the decode engines' own
 * counters (`kvwire_pd_*`, `kvwire_engine_kv_handoff_seconds`) scraped at the end of the run, and
 * per hand-off from the `decode-kv-pull` Server-Timing entries when the engines send them.
 *
 * @packageDocumentation
 */
import { summarize, type Distribution } from '../util/stats.js';
import type { RequestRecord } from './client.js';
import type { KilledComponent } from './local-system.js';
import { sumBy, sumOf, type ScrapedMetrics } from './metrics-scrape.js';
export { mb } from './handoff-summary.js';
export type { HandoffSummary } from './handoff-summary.js';
import { handoffOf, type HandoffSummary } from './handoff-summary.js';
import type { ReferenceCheck } from './reference.js';
import { parseDecision, pathOf, type RequestPath } from './request-path.js';

/** Decisions of one kind and reason. */
export interface DecisionCount {
  /** `disaggregated` or `decode_only`. */
  readonly kind: string;
  /** The decider's reason. */
  readonly reason: string;
  /** Requests. */
  readonly count: number;
}

/** The fault drill's outcome. */
export interface DrillSummary {
  /** What was killed and when. */
  readonly killed: KilledComponent;
  /** Requests finished when it was killed. */
  readonly afterRequests: number;
  /** Seconds into the run. */
  readonly atSecond: number;
  /** Requests that had been routed to the killed worker and ran decode-only instead (sidecar fallback). */
  readonly fellBack: number;
  /** Decodes whose KV pull failed and that recomputed the prompt. */
  readonly recomputed: number;
  /** The sidecars' fallbacks by reason (their counters). */
  readonly fallbackReasons: Readonly<Record<string, number>>;
  /** Requests routed to the killed worker that were in flight when it died. */
  readonly inFlightAtKill: number;
  /** Seconds from the kill to the last request the router still sent to the killed worker, or null when it sent none. */
  readonly routedToDeadForSeconds: number | null;
  /** Requests that failed after the kill. */
  readonly failedAfter: number;
  /** True when the router's health checks had marked it unhealthy by the end of the requests. */
  readonly ejected: boolean;
  /** True when nothing failed and every output matched. */
  readonly recovered: boolean;
}

/** The whole summary. */
export interface DemoSummary {
  /** `llama` or `synthetic`. */
  readonly runtime: string;
  /** Model. */
  readonly model: string;
  /** Requests sent, ok, failed. */
  readonly requests: { readonly total: number; readonly ok: number; readonly failed: number };
  /** Time to first token, ms. */
  readonly ttftMs: Distribution;
  /** Generated tokens per second of wall time. */
  readonly tokensPerSecond: number;
  /** Generated tokens. */
  readonly completionTokens: number;
  /** Wall time of the requests, s. */
  readonly wallSeconds: number;
  /** Requests by path. */
  readonly paths: Readonly<Record<RequestPath, number>>;
  /** The router's decisions. */
  readonly decisions: readonly DecisionCount[];
  /** KV hand-offs. */
  readonly handoff: HandoffSummary;
  /** Prompt tokens, cached prompt tokens and their ratio, as the answers' usage reported them. */
  readonly prefixCache: { readonly promptTokens: number; readonly cachedTokens: number; readonly hitRate: number };
  /** The decode engines' KV events as the router's index applied them, and what won the router's picks. */
  readonly kvIndex: {
    /** Event batches applied (ZMQ, vLLM's format). */
    readonly batches: number;
    /** Events applied, by type (`stored`, `removed`, `cleared`). */
    readonly events: Readonly<Record<string, number>>;
    /** Block keys the index held at the end. */
    readonly keys: number;
    /** The router's picks by the scorer that decided them (`prefix-cache`, `session-affinity`, `load`, `tie`). */
    readonly picksWonBy: Readonly<Record<string, number>>;
  };
  /** The token-for-token check. */
  readonly reference: { readonly matched: number; readonly checked: number; readonly by: string };
  /** The drill, when one ran. */
  readonly drill?: DrillSummary;
  /** Every problem, one line each (failed requests, mismatches, components that died). */
  readonly problems: readonly string[];
  /** True when every request succeeded and every output matched. */
  readonly ok: boolean;
}

/** Inputs of {@link summarizeRun}. */
export interface RunFacts {
  /** Runtime. */
  readonly runtime: string;
  /** Model. */
  readonly model: string;
  /** The request records. */
  readonly records: readonly RequestRecord[];
  /** The reference checks (same order as records, or fewer). */
  readonly checks: readonly ReferenceCheck[];
  /** The end-of-run scrape. */
  readonly metrics: readonly ScrapedMetrics[];
  /** Memory copy speed measured in this run, GB/s. */
  readonly copyGbps: number;
  /** Copy speed into memory touched for the first time, GB/s (page faults included). */
  readonly freshCopyGbps?: number;
  /** The machine's 1-minute load average at the end of the requests. */
  readonly loadAverage?: number;
  /** The drill's kill, if any, with the number of requests done at that moment and ms since start. */
  readonly kill?: { readonly killed: KilledComponent; readonly afterRequests: number; readonly atMs: number };
  /** Other problems found (components that exited unexpectedly). */
  readonly problems?: readonly string[];
}

/** Builds the summary. */
export function summarizeRun(f: RunFacts): DemoSummary {
  const records = f.records;
  const ok = records.filter((r) => r.error === undefined);
  const problems: string[] = [...(f.problems ?? [])];
  for (const r of records) if (r.error !== undefined) problems.push(`${r.id} failed: ${r.error}`);
  const ttft = summarize(ok.map((r) => r.firstToken! - r.start));
  const completionTokens = ok.reduce((s, r) => s + (r.completionTokens ?? r.tokenIds?.length ?? 0), 0);
  const first = Math.min(...records.map((r) => r.start));
  const last = Math.max(...records.map((r) => r.end ?? r.start));
  const wallSeconds = records.length > 0 ? (last - first) / 1000 : 0;
  const paths: Record<RequestPath, number> = { pd: 0, 'decode-only': 0, fallback: 0, recomputed: 0, failed: 0 };
  for (const r of records) paths[pathOf(r)]++;
  const decisions = new Map<string, DecisionCount>();
  for (const r of ok) {
    const d = parseDecision(r.decision);
    const key = d === undefined ? 'none' : `${d.kind} ${d.reason}`;
    const prev = decisions.get(key);
    decisions.set(key, {
      kind: d?.kind ?? 'unknown',
      reason: d?.reason ?? 'no x-kvwire-decision header',
      count: (prev?.count ?? 0) + 1,
    });
  }
  const promptTokens = ok.reduce((s, r) => s + (r.promptTokens ?? 0), 0);
  const cachedTokens = ok.reduce((s, r) => s + (r.cachedTokens ?? 0), 0);
  const matched = f.checks.filter((c) => c.matched).length;
  for (const c of f.checks) if (!c.matched && c.by !== 'not compared') problems.push(`${c.id} differs: ${c.detail}`);
  const byKinds = [...new Set(f.checks.filter((c) => c.by !== 'not compared').map((c) => c.by))];
  const drill = f.kill === undefined ? undefined : drillOf(f, records, problems);
  return {
    runtime: f.runtime,
    model: f.model,
    requests: { total: records.length, ok: ok.length, failed: records.length - ok.length },
    ttftMs: ttft,
    tokensPerSecond: wallSeconds > 0 ? completionTokens / wallSeconds : 0,
    completionTokens,
    wallSeconds,
    paths,
    decisions: [...decisions.values()].sort((a, b) => b.count - a.count),
    handoff: handoffOf(f.records, f.metrics, {
      copyGbps: f.copyGbps,
      ...(f.freshCopyGbps === undefined ? {} : { freshCopyGbps: f.freshCopyGbps }),
      loadAverage: f.loadAverage ?? 0,
      runtime: f.runtime,
    }),
    prefixCache: { promptTokens, cachedTokens, hitRate: promptTokens > 0 ? cachedTokens / promptTokens : 0 },
    kvIndex: {
      batches: sumOf(f.metrics, ['router'], 'kvwire_index_event_batches_total', { status: 'applied' }),
      events: Object.fromEntries(sumBy(f.metrics, ['router'], 'kvwire_index_events_total', 'type')),
      keys: sumOf(f.metrics, ['router'], 'kvwire_index_keys'),
      picksWonBy: Object.fromEntries(sumBy(f.metrics, ['router'], 'kvwire_scheduler_picks_total', 'won_by')),
    },
    reference: { matched, checked: records.length, by: byKinds.join(', ') || 'nothing compared' },
    ...(drill === undefined ? {} : { drill }),
    problems,
    ok: records.length > 0 && ok.length === records.length && matched === records.length && problems.length === 0,
  };
}

function drillOf(f: RunFacts, records: readonly RequestRecord[], problems: readonly string[]): DrillSummary {
  const kill = f.kill!;
  const after = records.filter((r) => (r.end ?? r.start) >= kill.atMs);
  const toDead = after.filter((r) => parseDecision(r.decision)?.prefill === kill.killed.name);
  // Requests already on their way through it when it died, and those the router sent it afterwards.
  const inFlightAtKill = toDead.filter((r) => r.start < kill.atMs).length;
  const sentAfter = toDead.filter((r) => r.start >= kill.atMs);
  const lastToDead = sentAfter.length > 0 ? Math.max(...sentAfter.map((r) => r.start)) : undefined;
  const reasons = sumBy(f.metrics, ['sidecar'], 'kvwire_sidecar_decode_only_fallbacks_total', 'reason');
  const failedAfter = after.filter((r) => r.error !== undefined).length;
  const matchedAll = f.checks.length === records.length && f.checks.every((c) => c.matched);
  return {
    killed: kill.killed,
    afterRequests: kill.afterRequests,
    atSecond: kill.atMs / 1000,
    // The components' counters count every case; the per-request paths only those whose headers said so.
    fellBack: Math.max(
      after.filter((r) => pathOf(r) === 'fallback').length,
      [...reasons.values()].reduce((a, b) => a + b, 0),
    ),
    recomputed: Math.max(
      after.filter((r) => pathOf(r) === 'recomputed').length,
      sumOf(f.metrics, ['decode'], 'kvwire_engine_kv_load_failures_total'),
    ),
    fallbackReasons: Object.fromEntries(reasons),
    inFlightAtKill,
    routedToDeadForSeconds: lastToDead === undefined ? null : (lastToDead - kill.atMs) / 1000,
    failedAfter,
    ejected:
      f.metrics.some((m) => m.role === 'router') &&
      sumOf(f.metrics, ['router'], 'kvwire_scheduler_endpoint_healthy', { endpoint: kill.killed.name }) === 0,
    recovered: failedAfter === 0 && matchedAll && problems.length === 0,
  };
}
