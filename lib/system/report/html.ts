/**
 * The demo's HTML report: one self-contained file (inline CSS and SVG, no script, no external
 * asset), readable offline and attachable to an issue. It holds the summary, the plots
 * (report/plots.ts), why the hand-off speed is what it is, the fault drill, the problems, and the
 * components that ran.
 *
 * @packageDocumentation
 */
import type { RequestRecord } from '../client.js';
import type { DemoSummary } from '../summary.js';
import { summaryRows, verdictLine } from '../summary-rows.js';
import { cachePlot, handoffPlot, requestsPlot, stagesPlot, ttftPlot } from './plots.js';
import { esc } from './svg.js';

/** A component as the report lists it. */
export interface ReportComponent {
  /** Name. */
  readonly name: string;
  /** Role. */
  readonly role: string;
  /** URL. */
  readonly url: string;
  /** Process id. */
  readonly pid: number;
  /** How it ended (`exit code 0`, `killed by SIGKILL`), or `running`. */
  readonly ended: string;
}

/** What the report shows. */
export interface ReportData {
  /** The summary. */
  readonly summary: DemoSummary;
  /** Every request. */
  readonly records: readonly RequestRecord[];
  /** When the run started (epoch ms). */
  readonly startedAt: number;
  /** The drill's kill, ms since the first request. */
  readonly killAtMs?: number;
  /** The command line that ran. */
  readonly command: string;
  /** The components. */
  readonly components: readonly ReportComponent[];
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1b1b;margin:24px auto;max-width:960px;padding:0 16px;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{font-size:16px;font-weight:600;padding:10px 12px;border-radius:6px;margin:12px 0}
.verdict.ok{background:#e3f4e8;color:#1d5e33}.verdict.bad{background:#fbe3e3;color:#8a1c1c}
table{border-collapse:collapse;margin:6px 0}td,th{text-align:left;padding:3px 12px 3px 0;vertical-align:top}
th{font-weight:600;color:#444}td.v{font-variant-numeric:tabular-nums}
.grid2{display:flex;flex-wrap:wrap;gap:16px}.grid2 figure{margin:0}.grid2 h3{font-size:16px;margin:18px 0 8px}
figure{margin:8px 0}figcaption{color:#555;font-size:13px;max-width:880px}
svg.plot{background:#fff;border:1px solid #e4e4e4;border-radius:4px}
svg .grid{stroke:#eee}svg .axis,svg .tickmark{stroke:#888}svg .tick{font-size:11px;fill:#444}svg .label{font-size:12px;fill:#222}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}ul{margin:4px 0 4px 20px;padding:0}
.muted{color:#666}
`;

function table(rows: readonly (readonly string[])[], head?: readonly string[]): string {
  const h = head === undefined ? '' : `<tr>${head.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>`;
  const body = rows
    .map(
      (r) => `<tr>${r.map((c, i) => (i === 0 ? `<th>${esc(c)}</th>` : `<td class="v">${esc(c)}</td>`)).join('')}</tr>`,
    )
    .join('');
  return `<table>${h}${body}</table>`;
}

/** Renders the report. */
export function renderReport(d: ReportData): string {
  const s = d.summary;
  const when = new Date(d.startedAt)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
  const drill = s.drill;
  const drillSection =
    drill === undefined
      ? ''
      : `<h2>Fault drill</h2>
<p>${esc(drill.killed.name)} (pid ${drill.killed.pid}) was killed with SIGKILL after ${drill.afterRequests} requests had finished, ${drill.atSecond.toFixed(1)} s into the run (the red line above). ${drill.recovered ? 'The run recovered: ' : 'The run did NOT recover: '}${drill.fellBack} request(s) that were routed to it ran decode-only after the sidecar's prefill leg failed, ${drill.recomputed} decode(s) recomputed the prompt after their KV pull failed, ${drill.failedAfter} request(s) failed afterwards. ${drill.inFlightAtKill} request(s) routed to it were in flight when it died. ${drill.routedToDeadForSeconds === null ? 'The router sent nothing to it after the kill.' : `The router sent its last request to it ${drill.routedToDeadForSeconds.toFixed(1)} s after the kill.`} ${drill.ejected ? "The router's health checks ejected it." : "The router's health checks had not ejected it yet when the requests ended."}</p>
${Object.keys(drill.fallbackReasons).length > 0 ? table(Object.entries(drill.fallbackReasons).map(([k, v]) => [`sidecar fallbacks: ${k}`, String(v)])) : ''}`;
  const problems =
    s.problems.length === 0
      ? '<p class="muted">None.</p>'
      : `<ul>${s.problems
          .slice(0, 50)
          .map((p) => `<li>${esc(p)}</li>`)
          .join('')}${s.problems.length > 50 ? `<li>... and ${s.problems.length - 50} more</li>` : ''}</ul>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>kvwire demo report — ${esc(s.runtime)} / ${esc(s.model)}</title><style>${CSS}</style></head>
<body>
<h1>kvwire: the P/D serving path on one machine</h1>
<p class="muted">${esc(when)} · <code>${esc(d.command)}</code> · ${s.requests.total} requests through the router, two decode workers behind their sidecars and two prefill workers; every output checked against a single <code>--role both</code> worker.</p>
<div id="verdict" class="verdict ${s.ok ? 'ok' : 'bad'}">${esc(s.ok ? 'OK' : 'FAILED')}: ${esc(verdictLine(s))}; ${s.requests.ok}/${s.requests.total} requests succeeded.</div>
<h2>Summary</h2>
${table(summaryRows(s))}
<h2>Time to first token</h2>
<figure>${ttftPlot(d.records, s.ttftMs.p50, s.ttftMs.p99)}<figcaption>Measured by the client (the openai npm client, streaming): from sending the request to the first generated text.</figcaption></figure>
<h2>Requests over the run</h2>
<figure>${requestsPlot(d.records, d.killAtMs, drill?.killed.name ?? '')}<figcaption>One row per request in start order; light: waiting for the first token, solid: streaming. Colour: the path it took (from the router's decision header and the components' Server-Timing).</figcaption></figure>
<h2>Where the time went, per request</h2>
<figure>${stagesPlot(d.records)}<figcaption>From each request's own start: the router's decision, the sidecar's prefill leg (inside it, thinner: the prefill engine's queue, compute and KV store), the decode engine's queue, the KV transfer (UCX READ), loading the KV into llama.cpp and computing the last prompt token, then streaming as the client saw it. Gaps are HTTP and proxying.</figcaption></figure>
<div class="grid2">
<figure><h3>KV hand-off throughput</h3>${handoffPlot(d.records, s.handoff.gbpsPerHandoff)}<figcaption>One point per KV pull: bytes READ / time of the READs (from the decode engines' Server-Timing; each point's title gives the whole pull's time too).</figcaption></figure>
<figure><h3>Prefix-cache hits over the run</h3>${cachePlot(d.records)}<figcaption>Dots: cached share of each request's prompt (usage.prompt_tokens_details.cached_tokens), coloured by path. Line: the running hit rate.</figcaption></figure>
</div>
<h2>Why the hand-off speed is what it is</h2>
<ul>${s.handoff.why.map((w) => `<li>${esc(w)}</li>`).join('')}</ul>
${drillSection}
<h2>Problems</h2>
${problems}
<h2>Components</h2>
${table(
  d.components.map((c) => [c.name, c.role, c.url, String(c.pid), c.ended]),
  ['name', 'role', 'url', 'pid', 'ended'],
)}
</body></html>
`;
}
