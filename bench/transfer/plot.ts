/**
 * `--plot FILE.svg`: GB/s against block size (log2 axis), one solid line per (op, transport) at
 * one batch size, and the baselines dashed (ucx_perftest put_bw / am_bw / get per transport,
 * memcpy). The GB/s axis is linear, or log10 when the values span more than 30x. Plain SVG 1.1 with inline styles: any browser or image viewer shows it, no plugin, no
 * script, no external font.
 *
 * @packageDocumentation
 */
import type { BenchReportJson } from './schema.js';
import { fmtSize } from './units.js';

interface Series {
  label: string;
  color: string;
  dash: string | undefined;
  marker: 'circle' | 'square' | 'none';
  points: { x: number; y: number }[];
}

const OURS: Record<string, string> = {
  'read:0': '#1f77b4',
  'write:0': '#d62728',
  'read:1': '#2ca02c',
  'write:1': '#ff7f0e',
  'read:2': '#17becf',
  'write:2': '#e377c2',
};
const DASH: Record<string, string> = { ucp_put_bw: '8 4', ucp_am_bw: '2 3', ucp_get: '10 3 2 3' };

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** A "nice" axis maximum and step: 1, 2, 2.5 or 5 × 10^k. */
export function niceScale(max: number, ticks = 6): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / ticks;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((f) => f * mag).find((s) => s >= raw) ?? 10 * mag;
  return { top: Math.ceil(max / step) * step, step };
}

/** The batch the plot draws: asked, else the largest batch with ok rows. */
export function plotBatch(r: BenchReportJson, asked?: number): number | undefined {
  const rows = r.sweep?.rows.filter((x) => x.status === 'ok') ?? [];
  if (asked !== undefined) return asked;
  return rows.reduce<number | undefined>((b, x) => (b === undefined || x.batch > b ? x.batch : b), undefined);
}

/** Renders the plot as an SVG document. */
export function renderPlot(r: BenchReportJson, askedBatch?: number): string {
  const sweep = r.sweep;
  const batch = plotBatch(r, askedBatch);
  const series: Series[] = [];
  const transports = [...new Set(sweep?.rows.map((x) => x.transport) ?? [])];
  transports.forEach((t, ti) => {
    for (const op of ['read', 'write'] as const) {
      const pts = (sweep?.rows ?? [])
        .filter((x) => x.transport === t && x.op === op && x.batch === batch && x.status === 'ok')
        .map((x) => ({ x: x.blockSize, y: x.gbps }));
      if (pts.length > 0) {
        series.push({
          label: `${op.toUpperCase()} ${t} (kvwire)`,
          color: OURS[`${op}:${ti % 3}`]!,
          dash: undefined,
          marker: op === 'read' ? 'circle' : 'square',
          points: pts,
        });
      }
    }
    // A baseline is drawn in the colour of the op it bounds: put_bw and am_bw WRITE's, get READ's.
    for (const test of ['ucp_put_bw', 'ucp_am_bw', 'ucp_get'] as const) {
      const pts = (sweep?.perftest ?? [])
        .filter((p) => p.transport === t && p.test === test && p.status === 'ok' && p.gbps !== null)
        .map((p) => ({ x: p.size, y: p.gbps! }));
      const color = OURS[`${test === 'ucp_get' ? 'read' : 'write'}:${ti % 3}`]!;
      if (pts.length > 0)
        series.push({ label: `${test} ${t} (ucx_perftest)`, color, dash: DASH[test], marker: 'none', points: pts });
    }
  });
  const mem = (sweep?.memcpy ?? []).map((m) => ({ x: m.size, y: m.gbps }));
  if (mem.length > 0)
    series.push({ label: 'memcpy (one core)', color: '#7f7f7f', dash: '14 4', marker: 'none', points: mem });
  for (const s of series) s.points.sort((a, b) => a.x - b.x);

  const W = 960;
  const H = 580;
  const L = 72;
  const R = 290;
  const T = 64;
  const B = 64;
  const pw = W - L - R;
  const ph = H - T - B;
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => Math.log2(p.x));
  const sizes = [...new Set([...(r.settings.sizes ?? []), ...all.map((p) => p.x)])].sort((a, b) => a - b);
  let x0 = xs.length ? Math.min(...xs) : 12;
  let x1 = xs.length ? Math.max(...xs) : 24;
  if (x1 - x0 < 1) {
    x0 -= 1;
    x1 += 1;
  }
  const ys = all.map((p) => p.y).filter((y) => y > 0);
  const yMax = ys.length ? Math.max(...ys) : 1;
  const yMin = ys.length ? Math.min(...ys) : 1;
  // Raw UCX over shared memory and memcpy of cache-resident sizes run 100x faster than tcp: on a
  // linear axis every other line would lie flat on zero, so a wide spread gets a log10 axis.
  const logY = yMax / yMin > 30;
  const X = (bytes: number) => L + ((Math.log2(bytes) - x0) / (x1 - x0)) * pw;
  let Y: (g: number) => number;
  const yTicks: number[] = [];
  if (logY) {
    // The axis runs between the 1-2-5 ticks just outside the data.
    const ladder: number[] = [];
    for (let k = Math.floor(Math.log10(yMin)) - 1; k <= Math.ceil(Math.log10(yMax)); k++)
      for (const f of [1, 2, 5]) ladder.push(f * 10 ** k);
    const bottom = [...ladder].reverse().find((v) => v <= yMin * 1.0001) ?? ladder[0]!;
    const top = ladder.find((v) => v >= yMax * 0.9999) ?? ladder[ladder.length - 1]!;
    const lo = Math.log10(bottom);
    const hi = Math.log10(top);
    Y = (g: number) => T + ph - ((Math.log10(Math.max(g, bottom)) - lo) / (hi - lo)) * ph;
    yTicks.push(...ladder.filter((v) => v >= bottom * 0.9999 && v <= top * 1.0001));
  } else {
    const { top, step } = niceScale(yMax * 1.05);
    Y = (g: number) => T + ph - (g / top) * ph;
    for (let g = 0; g <= top + step / 2; g += step) yTicks.push(g);
  }
  const o: string[] = [];
  o.push(`<?xml version="1.0" encoding="UTF-8"?>`);
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`,
  );
  o.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  const m = r.machine;
  o.push(
    `<text x="${L}" y="26" font-size="17" font-weight="bold">kvwire bench: GB/s against block size (batch ${batch ?? '-'}, ${r.settings.inflight} in flight)</text>`,
  );
  o.push(
    `<text x="${L}" y="46" fill="#555555">${esc(`${m.cpus} × ${m.cpuModel}, Linux ${m.kernel}, UCX ${m.ucx ?? 'n/a'}, engine ${r.settings.engine}; ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC`)}</text>`,
  );
  // Grid and y ticks.
  for (const g of yTicks) {
    const y = Y(g).toFixed(1);
    o.push(
      `<line x1="${L}" y1="${y}" x2="${L + pw}" y2="${y}" stroke="${logY && !/^1/.test(String(g)) ? '#f2f2f2' : '#e0e0e0'}" stroke-width="1"/>`,
    );
    o.push(`<text x="${L - 8}" y="${(Y(g) + 4).toFixed(1)}" text-anchor="end">${+g.toPrecision(3)}</text>`);
  }
  // x ticks: the swept sizes (every other one when crowded).
  const every = sizes.length > 12 ? 2 : 1;
  sizes.forEach((s, i) => {
    const x = X(s).toFixed(1);
    o.push(`<line x1="${x}" y1="${T}" x2="${x}" y2="${T + ph}" stroke="#f0f0f0" stroke-width="1"/>`);
    o.push(`<line x1="${x}" y1="${T + ph}" x2="${x}" y2="${T + ph + 5}" stroke="#333333"/>`);
    if (i % every === 0) o.push(`<text x="${x}" y="${T + ph + 19}" text-anchor="middle">${fmtSize(s)}</text>`);
  });
  o.push(`<rect x="${L}" y="${T}" width="${pw}" height="${ph}" fill="none" stroke="#333333" stroke-width="1"/>`);
  o.push(
    `<text x="${L + pw / 2}" y="${H - 18}" text-anchor="middle" font-size="13">block size (bytes per descriptor, log2 scale)</text>`,
  );
  o.push(
    `<text x="20" y="${T + ph / 2}" text-anchor="middle" font-size="13" transform="rotate(-90 20 ${T + ph / 2})">GB/s (10^9 bytes per second${logY ? ', log scale' : ''})</text>`,
  );
  // Lines.
  for (const s of series) {
    const pts = s.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ');
    o.push(
      `<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="${s.dash ? 1.6 : 2.4}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} stroke-linejoin="round"/>`,
    );
    for (const p of s.points) {
      const cx = X(p.x);
      const cy = Y(p.y);
      if (s.marker === 'circle')
        o.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="3.5" fill="${s.color}"/>`);
      else if (s.marker === 'square')
        o.push(
          `<rect x="${(cx - 3.5).toFixed(1)}" y="${(cy - 3.5).toFixed(1)}" width="7" height="7" fill="${s.color}"/>`,
        );
    }
  }
  // Legend.
  const lx = L + pw + 20;
  o.push(`<text x="${lx}" y="${T + 4}" font-weight="bold">legend</text>`);
  series.forEach((s, i) => {
    const y = T + 24 + i * 20;
    o.push(
      `<line x1="${lx}" y1="${y}" x2="${lx + 34}" y2="${y}" stroke="${s.color}" stroke-width="${s.dash ? 1.6 : 2.4}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
    );
    if (s.marker === 'circle') o.push(`<circle cx="${lx + 17}" cy="${y}" r="3.5" fill="${s.color}"/>`);
    if (s.marker === 'square') o.push(`<rect x="${lx + 13.5}" y="${y - 3.5}" width="7" height="7" fill="${s.color}"/>`);
    o.push(`<text x="${lx + 42}" y="${y + 4}">${esc(s.label)}</text>`);
  });
  if (series.length === 0)
    o.push(`<text x="${L + pw / 2}" y="${T + ph / 2}" text-anchor="middle" fill="#aa0000">no rows to plot</text>`);
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}
