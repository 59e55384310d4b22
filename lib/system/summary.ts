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
import type { ReferenceCheck } from './reference.js';
import { parseDecision, pathOf, pullOf, type RequestPath } from './request-path.js';

/** Decisions of one kind and reason. */
export interface DecisionCount {
  /** `disaggregated` or `decode_only`. */
  readonly kind: string;
  /** The decider's reason. */
  readonly reason: string;
  /** Requests. */
  readonly count: number;
}

/** The KV hand-offs of the run. */
export interface HandoffSummary {
  /** Pulls that completed (decode engines' `kvwire_pd_transfer_latency_seconds_count`). */
  readonly handoffs: number;
  /** Bytes READ from prefill workers. */
  readonly bytes: number;
  /** Summed time of the pulls, s. */
  readonly transferSeconds: number;
  /** bytes / transferSeconds / 1e9: the speed of one hand-off while it runs. */
  readonly gbpsPerHandoff: number;
  /** Mean bytes per hand-off. */
  readonly bytesPerHandoff: number;
  /** Mean pull time, ms. */
  readonly msPerHandoff: number;
  /** KV bytes per block (bytes / blocks READ). */
  readonly bytesPerBlock: number;
  /** Side-channel handshakes and their mean time, ms. */
  readonly handshakes: number;
  /** Mean handshake, ms. */
  readonly msPerHandshake: number;
  /** Mean time to copy a request's KV out of the runtime into blocks on the prefill, ms. */
  readonly msStore: number;
  /** Mean time to load pulled blocks into the runtime on the decode, ms. */
  readonly msLoad: number;
  /** This machine's memory copy speed measured in the same run, GB/s (the ceiling on one host). */
  readonly copyGbps: number;
  /** Why the figure is what it is, one sentence each. */
  readonly why: readonly string[];
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
  /** Seconds from the kill to the last request the router still sent to the killed worker, or null. */
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
  /** The drill's kill, if any, with the number of requests done at that moment and ms since start. */
  readonly kill?: { readonly killed: KilledComponent; readonly afterRequests: number; readonly atMs: number };
  /** Other problems found (components that exited unexpectedly). */
  readonly problems?: readonly string[];
}

const GB = 1e9;

function handoffOf(f: RunFacts): HandoffSummary {
  const m = f.metrics;
  const handoffs = sumOf(m, ['decode'], 'kvwire_pd_transfer_latency_seconds_count');
  const transferSeconds = sumOf(m, ['decode'], 'kvwire_pd_transfer_latency_seconds_sum');
  const bytes = sumOf(m, ['decode'], 'kvwire_pd_transfer_bytes_total');
  const blocks = sumOf(m, ['decode'], 'kvwire_pd_blocks_total', { source: 'remote' });
  const handshakes = sumOf(m, ['decode'], 'kvwire_pd_handshake_latency_seconds_count');
  const handshakeSeconds = sumOf(m, ['decode'], 'kvwire_pd_handshake_latency_seconds_sum');
  const stage = (roles: ('decode' | 'prefill')[], s: string): number => {
    const n = sumOf(m, roles, 'kvwire_engine_kv_handoff_seconds_count', { stage: s });
    return n > 0 ? (1000 * sumOf(m, roles, 'kvwire_engine_kv_handoff_seconds_sum', { stage: s })) / n : 0;
  };
  const msStore = stage(['prefill'], 'store');
  const msLoad = stage(['decode'], 'load');
  const gbps = transferSeconds > 0 ? bytes / transferSeconds / GB : 0;
  const perHandoff = handoffs > 0 ? bytes / handoffs : 0;
  const msPer = handoffs > 0 ? (1000 * transferSeconds) / handoffs : 0;
  const bytesPerBlock = blocks > 0 ? bytes / blocks : 0;
  const why: string[] = [];
  if (handoffs === 0) {
    why.push('No KV was handed off: every request ran decode-only (short uncached parts, or no prefill worker).');
  } else {
    why.push(
      `Each hand-off moved ${mb(perHandoff)} on average (${formatInt(bytesPerBlock)} bytes per 16-token block of this model), in ${msPer.toFixed(1)} ms: ${gbps.toFixed(2)} GB/s while it ran, against ${f.copyGbps.toFixed(1)} GB/s for a plain memory copy on this machine in the same run (${((100 * gbps) / Math.max(f.copyGbps, 1e-9)).toFixed(0)}%).`,
    );
    const fixedMs = msPer - perHandoff / (f.copyGbps * GB) / 1e-3;
    if (perHandoff < 64 * 1024 * 1024)
      why.push(
        `At ${mb(perHandoff)} per request the bytes are the small part: a copy at memory speed would take ${((1000 * perHandoff) / (f.copyGbps * GB)).toFixed(2)} ms, so about ${Math.max(0, fixedMs).toFixed(1)} ms of each pull is per-pull cost (waiting for a pull slot, posting the READs, the completion crossing into JavaScript, the done notification to the prefill, and on a busy machine the scheduler), which no faster wire removes.`,
      );
    if (handshakes > 0)
      why.push(
        `${handshakes} side-channel handshake(s) (once per decode-prefill pair, ${((1000 * handshakeSeconds) / handshakes).toFixed(1)} ms each) are paid by the first pull of each pair only.`,
      );
    if (msStore > 0 || msLoad > 0)
      why.push(
        `Outside the transfer but inside the hand-off: llama.cpp has no in-memory KV API, so the prefill writes the sequence state to a file on tmpfs and copies its rows into registered blocks (${msStore.toFixed(1)} ms per request) and the decode rebuilds the file and loads it (${msLoad.toFixed(1)} ms): ${((msStore + msLoad) / Math.max(msPer, 1e-9)).toFixed(1)}x the transfer itself.`,
      );
  }
  return {
    handoffs,
    bytes,
    transferSeconds,
    gbpsPerHandoff: gbps,
    bytesPerHandoff: perHandoff,
    msPerHandoff: msPer,
    bytesPerBlock,
    handshakes,
    msPerHandshake: handshakes > 0 ? (1000 * handshakeSeconds) / handshakes : 0,
    msStore,
    msLoad,
    copyGbps: f.copyGbps,
    why,
  };
}

/** `1.23 MB` (decimal, as GB/s is). */
export function mb(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(2)} MB`;
  return `${(bytes / 1e3).toFixed(1)} kB`;
}

function formatInt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
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
    handoff: handoffOf(f),
    prefixCache: { promptTokens, cachedTokens, hitRate: promptTokens > 0 ? cachedTokens / promptTokens : 0 },
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
  const lastToDead = toDead.length > 0 ? Math.max(...toDead.map((r) => r.start)) : undefined;
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
    routedToDeadForSeconds: lastToDead === undefined ? null : Math.max(0, (lastToDead - kill.atMs) / 1000),
    failedAfter,
    ejected:
      f.metrics.some((m) => m.role === 'router') &&
      sumOf(f.metrics, ['router'], 'kvwire_scheduler_endpoint_healthy', { endpoint: kill.killed.name }) === 0,
    recovered: failedAfter === 0 && matchedAll && problems.length === 0,
  };
}
