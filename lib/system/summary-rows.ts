/**
 * The summary as rows of text (measure, value), and its verdict line: one wording for the
 * terminal (`kvwire demo`) and the HTML report.
 *
 * @packageDocumentation
 */
import { mb, type DemoSummary } from './summary.js';

const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;
const ms = (v: number): string => `${v.toFixed(0)} ms`;

/** (measure, value) rows. */
export function summaryRows(s: DemoSummary): [string, string][] {
  const h = s.handoff;
  const rows: [string, string][] = [
    ['runtime / model', `${s.runtime} / ${s.model}`],
    ['requests ok / failed', `${s.requests.ok} / ${s.requests.failed} of ${s.requests.total}`],
    ['TTFT p50 / p99', `${ms(s.ttftMs.p50)} / ${ms(s.ttftMs.p99)}`],
    [
      'tokens/s (generated / wall time)',
      `${s.tokensPerSecond.toFixed(1)} (${s.completionTokens} tokens in ${s.wallSeconds.toFixed(1)} s)`,
    ],
    [
      'paths',
      `P/D ${s.paths.pd}, decode-only ${s.paths['decode-only']}, fell back ${s.paths.fallback}, recomputed ${s.paths.recomputed}, failed ${s.paths.failed}`,
    ],
  ];
  for (const d of s.decisions) rows.push([`decision ${d.kind}`, `${d.count} (${d.reason})`]);
  rows.push(
    ['KV moved / hand-offs', `${mb(h.bytes)} in ${h.handoffs} hand-offs (${mb(h.bytesPerHandoff)} each)`],
    [
      'GB/s per hand-off',
      `${h.gbpsPerHandoff.toFixed(2)} (READs ${h.msPerHandoff.toFixed(1)} ms of a ${h.msPerPull.toFixed(1)} ms pull; memory copy here ${h.copyGbps.toFixed(1)} GB/s, ${h.freshCopyGbps.toFixed(2)} into fresh pages)`,
    ],
  );
  if (h.msStore > 0 || h.msLoad > 0)
    rows.push([
      s.runtime === 'llama' ? 'KV store / load through llama.cpp' : 'KV written / checked (synthetic)',
      `${h.msStore.toFixed(1)} ms / ${h.msLoad.toFixed(1)} ms per request`,
    ]);
  rows.push([
    'prefix-cache hit rate',
    `${pct(s.prefixCache.hitRate)} (${s.prefixCache.cachedTokens} of ${s.prefixCache.promptTokens} prompt tokens)`,
  ]);
  const k = s.kvIndex;
  const listed = (o: Readonly<Record<string, number>>): string =>
    Object.entries(o)
      .sort((a, b) => b[1] - a[1])
      .map(([name, n]) => `${name} ${n}`)
      .join(', ') || 'none';
  rows.push(
    [
      "KV events into the router's index",
      `${k.batches} batches over ZMQ (${listed(k.events)}), ${k.keys} blocks indexed at the end`,
    ],
    ['router picks won by', listed(k.picksWonBy)],
  );
  if (s.drill !== undefined) {
    const d = s.drill;
    rows.push(
      ['fault drill', `SIGKILL ${d.killed.name} after ${d.afterRequests} requests (${d.atSecond.toFixed(1)} s)`],
      [
        'drill: recovery',
        `${d.fellBack} fell back to decode-only, ${d.recomputed} recomputed after a failed pull, ${d.failedAfter} failed; ${d.inFlightAtKill} in flight through it at the kill; ${d.routedToDeadForSeconds === null ? 'the router sent it nothing afterwards' : `the router still sent it requests for ${d.routedToDeadForSeconds.toFixed(1)} s`}${d.ejected ? ', ejected by its health checks' : ''}`,
      ],
    );
  }
  rows.push(['outputs vs single worker', verdictLine(s)]);
  return rows;
}

/** "N/N outputs matched the single-worker reference, token for token" (or what was compared). */
export function verdictLine(s: DemoSummary): string {
  const by = s.reference.by === 'token ids' ? 'token for token' : `by ${s.reference.by}`;
  return `${s.reference.matched}/${s.reference.checked} outputs matched the single-worker reference, ${by}`;
}
