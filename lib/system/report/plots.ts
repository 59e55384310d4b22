/**
 * The report's plots, each an inline `<svg>` with a stable id and classed data elements (the
 * Chromium test counts them): the TTFT distribution, the requests over the run (with the fault
 * drill's kill), where each request's time went (router, sidecar, prefill, transfer, decode),
 * the hand-offs' throughput, and the prefix-cache hits over time.
 *
 * @packageDocumentation
 */
import type { RequestRecord } from '../client.js';
import { pathOf, pullOf, stagesOf, type RequestPath, type Stage } from '../request-path.js';
import { axes, esc, legend, linear, n, niceMax, svg, type Frame } from './svg.js';

/** Colour of each request path. */
export const PATH_COLORS: Readonly<Record<RequestPath, string>> = {
  pd: '#2f6fd6',
  'decode-only': '#2e9d5b',
  fallback: '#e08a1e',
  recomputed: '#8a4fd1',
  failed: '#d62f2f',
};

/** Colour of each timeline lane. */
export const LANE_COLORS: Readonly<Record<Stage['lane'], string>> = {
  router: '#555555',
  sidecar: '#e3c443',
  prefill: '#e0761e',
  transfer: '#d6336c',
  decode: '#2f6fd6',
  client: '#a9c7f0',
};

const PATH_LABELS: Readonly<Record<RequestPath, string>> = {
  pd: 'P/D',
  'decode-only': 'decode-only',
  fallback: 'P/D fell back to decode-only',
  recomputed: 'pull failed, recomputed',
  failed: 'failed',
};

const ok = (r: RequestRecord): boolean => r.error === undefined && r.firstToken !== undefined;

/** Histogram of time to first token with its p50 and p99. */
export function ttftPlot(records: readonly RequestRecord[], p50: number, p99: number): string {
  const frame: Frame = { width: 560, height: 300, left: 56, right: 16, top: 24, bottom: 40 };
  const ttfts = records.filter(ok).map((r) => r.firstToken! - r.start);
  const max = niceMax(Math.max(1, ...ttfts));
  const bins = 24;
  const counts = new Array<number>(bins).fill(0);
  for (const t of ttfts) counts[Math.min(bins - 1, Math.floor((t / max) * bins))]!++;
  const x = linear(0, max, frame.left, frame.width - frame.right);
  const y = linear(0, niceMax(Math.max(1, ...counts), 4), frame.height - frame.bottom, frame.top);
  const w = (frame.width - frame.left - frame.right) / bins;
  const bars = counts
    .map((c, i) =>
      c === 0
        ? ''
        : `<rect class="bar" data-count="${c}" x="${n(frame.left + i * w + 1)}" y="${n(y(c))}" width="${n(w - 2)}" height="${n(y(0) - y(c))}" fill="#2f6fd6"><title>${c} request(s) with TTFT ${n((i * max) / bins, 0)}-${n(((i + 1) * max) / bins, 0)} ms</title></rect>`,
    )
    .join('');
  const mark = (v: number, label: string): string =>
    `<line class="marker" x1="${n(x(v))}" x2="${n(x(v))}" y1="${frame.top}" y2="${frame.height - frame.bottom}" stroke="#d62f2f" stroke-dasharray="4 3"/><text class="tick" x="${n(x(v) + 4)}" y="${frame.top + 10}">${esc(label)}</text>`;
  return svg(
    'ttft-plot',
    frame,
    'Time to first token, all requests',
    axes(frame, x, y, { x: 'time to first token (ms)', y: 'requests' }) +
      bars +
      mark(p50, `p50 ${n(p50, 0)} ms`) +
      mark(p99, `p99 ${n(p99, 0)} ms`),
  );
}

/** Every request over the run's wall time, coloured by the path it took, with the drill's kill. */
export function requestsPlot(records: readonly RequestRecord[], killAtMs: number | undefined, killed: string): string {
  const rows = Math.max(1, records.length);
  const rowH = Math.max(3, Math.min(10, 420 / rows));
  const frame: Frame = { width: 900, height: 70 + rows * rowH + 30, left: 56, right: 16, top: 34, bottom: 40 };
  const end = Math.max(1, ...records.map((r) => r.end ?? r.start));
  const x = linear(0, niceMax(end / 1000, 8), frame.left, frame.width - frame.right);
  const y = linear(0, rows, frame.top, frame.height - frame.bottom);
  const bars = records
    .map((r, i) => {
      const path = pathOf(r);
      const color = PATH_COLORS[path];
      const top = n(y(i) + 0.5);
      const h = n(Math.max(1, rowH - 1));
      const s = r.start / 1000;
      const f = (r.firstToken ?? r.end ?? r.start) / 1000;
      const e = (r.end ?? r.start) / 1000;
      const tip = `<title>${esc(`${r.id}: ${PATH_LABELS[path]}; TTFT ${n(f * 1000 - r.start, 0)} ms, total ${n(e * 1000 - r.start, 0)} ms${r.error === undefined ? '' : `; ${r.error}`}`)}</title>`;
      return (
        `<g class="req" data-path="${path}">${tip}` +
        `<rect x="${n(x(s))}" y="${top}" width="${n(Math.max(1, x(f) - x(s)))}" height="${h}" fill="${color}" opacity="0.35"/>` +
        `<rect x="${n(x(f))}" y="${top}" width="${n(Math.max(1, x(e) - x(f)))}" height="${h}" fill="${color}"/></g>`
      );
    })
    .join('');
  const kill =
    killAtMs === undefined
      ? ''
      : `<g class="kill"><line x1="${n(x(killAtMs / 1000))}" x2="${n(x(killAtMs / 1000))}" y1="${frame.top - 6}" y2="${frame.height - frame.bottom}" stroke="#d62f2f" stroke-width="2"/><text class="tick" x="${n(x(killAtMs / 1000) + 4)}" y="${frame.top - 8}" fill="#d62f2f">SIGKILL ${esc(killed)}</text></g>`;
  const used = (Object.keys(PATH_COLORS) as RequestPath[]).filter((p) => records.some((r) => pathOf(r) === p));
  return svg(
    'requests-plot',
    frame,
    'Requests over the run, by path (light: waiting for the first token; solid: streaming)',
    axes(frame, x, y, { x: 'seconds since the first request', y: 'requests in start order' }) +
      bars +
      kill +
      legend(
        frame.left,
        16,
        used.map((p) => ({ label: PATH_LABELS[p], color: PATH_COLORS[p] })),
      ),
  );
}

/** Where each request's time went, from its own start: the components' Server-Timing stages. */
export function stagesPlot(records: readonly RequestRecord[]): string {
  const rows = Math.max(1, records.length);
  const rowH = Math.max(3, Math.min(10, 420 / rows));
  const frame: Frame = { width: 900, height: 70 + rows * rowH + 30, left: 56, right: 16, top: 34, bottom: 40 };
  const all = records.map(stagesOf);
  const longest = Math.max(1, ...all.flat().map((s) => s.start + s.dur));
  const x = linear(0, niceMax(longest, 8), frame.left, frame.width - frame.right);
  const y = linear(0, rows, frame.top, frame.height - frame.bottom);
  const rects = all
    .map((stages, i) =>
      stages
        .map((s) => {
          // The prefill engine's parts sit inside the sidecar's leg: draw them thinner, on top.
          const inner = s.lane === 'prefill';
          const top = y(i) + (inner ? rowH * 0.25 : 0.5);
          const h = Math.max(1, inner ? rowH * 0.5 : rowH - 1);
          return `<rect class="stage" data-lane="${s.lane}" x="${n(x(s.start))}" y="${n(top)}" width="${n(Math.max(0.8, x(s.start + s.dur) - x(s.start)))}" height="${n(h)}" fill="${LANE_COLORS[s.lane]}"><title>${esc(`${records[i]!.id} ${s.name}: ${n(s.dur, 1)} ms at +${n(s.start, 1)} ms`)}</title></rect>`;
        })
        .join(''),
    )
    .join('');
  return svg(
    'stages-plot',
    frame,
    'Where each request spent its time (ms from its start; gaps are HTTP and proxying)',
    axes(frame, x, y, { x: 'ms since the request was sent', y: 'requests in start order' }) +
      rects +
      legend(frame.left, 16, [
        { label: 'router', color: LANE_COLORS.router },
        { label: 'sidecar prefill leg', color: LANE_COLORS.sidecar },
        { label: 'prefill engine', color: LANE_COLORS.prefill },
        { label: 'KV transfer', color: LANE_COLORS.transfer },
        { label: 'decode engine', color: LANE_COLORS.decode },
        { label: 'streaming (client)', color: LANE_COLORS.client },
      ]),
  );
}

/** GB/s of each KV hand-off over the run, with the machine's memory copy speed for scale. */
export function handoffPlot(records: readonly RequestRecord[], averageGbps: number): string {
  const frame: Frame = { width: 560, height: 300, left: 56, right: 16, top: 24, bottom: 40 };
  const pulls = records
    .map((r) => ({ r, p: pullOf(r) }))
    .filter((x) => x.p !== undefined && x.p.bytes > 0 && x.p.ms > 0)
    // The READs' own time when the engine reported it (the figure the summary quotes), else the whole pull.
    .map(({ r, p }) => {
      const reads = p!.transferMs !== undefined && p!.transferMs > 0 ? p!.transferMs : p!.ms;
      return { at: r.start / 1000, gbps: p!.bytes / (reads * 1e6), bytes: p!.bytes, reads, ms: p!.ms, id: r.id };
    });
  const end = Math.max(1, ...records.map((r) => (r.end ?? r.start) / 1000));
  const x = linear(0, niceMax(end, 6), frame.left, frame.width - frame.right);
  const y = linear(
    0,
    niceMax(Math.max(averageGbps, ...pulls.map((p) => p.gbps), 0.01), 4),
    frame.height - frame.bottom,
    frame.top,
  );
  const points = pulls
    .map(
      (p) =>
        `<circle class="point" cx="${n(x(p.at))}" cy="${n(y(p.gbps))}" r="3.5" fill="#d6336c"><title>${esc(`${p.id}: ${(p.bytes / 1e6).toFixed(2)} MB READ in ${p.reads.toFixed(1)} ms = ${p.gbps.toFixed(2)} GB/s (whole pull ${p.ms.toFixed(1)} ms)`)}</title></circle>`,
    )
    .join('');
  const avg =
    averageGbps > 0
      ? `<line class="marker" x1="${frame.left}" x2="${frame.width - frame.right}" y1="${n(y(averageGbps))}" y2="${n(y(averageGbps))}" stroke="#555" stroke-dasharray="4 3"/><text class="tick" x="${frame.width - frame.right - 4}" y="${n(y(averageGbps) - 4)}" text-anchor="end">all bytes / all READ time: ${averageGbps.toFixed(2)} GB/s</text>`
      : '';
  return svg(
    'handoff-plot',
    frame,
    'KV hand-off throughput, one point per pull',
    axes(frame, x, y, { x: 'seconds since the first request', y: 'GB/s of the READs' }) + points + avg,
  );
}

/** Share of each request's prompt that was cached, and the running hit rate. */
export function cachePlot(records: readonly RequestRecord[]): string {
  const frame: Frame = { width: 560, height: 300, left: 56, right: 16, top: 24, bottom: 40 };
  const done = records.filter((r) => ok(r) && (r.promptTokens ?? 0) > 0);
  const x = linear(0, Math.max(1, records.length), frame.left, frame.width - frame.right);
  const y = linear(0, 1, frame.height - frame.bottom, frame.top);
  let prompt = 0;
  let cached = 0;
  const line: string[] = [];
  const points = done
    .map((r) => {
      prompt += r.promptTokens!;
      cached += r.cachedTokens ?? 0;
      line.push(`${line.length === 0 ? 'M' : 'L'}${n(x(r.index + 1))} ${n(y(cached / prompt), 2)}`);
      const share = (r.cachedTokens ?? 0) / r.promptTokens!;
      return `<circle class="point" cx="${n(x(r.index + 1))}" cy="${n(y(share))}" r="3" fill="${PATH_COLORS[pathOf(r)]}"><title>${esc(`${r.id}: ${r.cachedTokens ?? 0} of ${r.promptTokens} prompt tokens cached`)}</title></circle>`;
    })
    .join('');
  return svg(
    'cache-plot',
    frame,
    'Prefix-cache hits: each request (dot) and the running hit rate (line)',
    axes(
      frame,
      x,
      y,
      { x: 'request (start order)', y: 'cached share of the prompt' },
      { y: (v) => `${Math.round(v * 100)}%` },
    ) +
      points +
      (line.length > 0 ? `<path class="line" d="${line.join(' ')}" fill="none" stroke="#222" stroke-width="2"/>` : ''),
  );
}
