/**
 * `--plot FILE.svg`: GB/s against block size (log2 axis), one panel per transport (each with its own
 * GB/s axis: shared memory runs 100x faster than tcp), at one batch size. In every panel READ is
 * blue and WRITE red: kvwire solid with markers, its raw-UCX baselines dashed in the same colour
 * (ucp_get bounds READ; ucp_put_bw and ucp_am_bw bound WRITE), memcpy grey. A whisker on each
 * kvwire point shows the spread of the row's transfers (the p99 transfer to the fastest). When
 * the machine was busy as the run started, the image says so.
 *
 * Plain SVG 1.1 with inline styles: any browser or image viewer shows it, no script, no font file.
 *
 * @packageDocumentation
 */
import type { BenchReportJson, SweepRowJson } from './schema.js';
import { fmtSize } from './units.js';

/** A machine whose 1-minute load average reached this share of its CPUs was busy: noisy numbers. */
export const BUSY_LOAD_PER_CPU = 0.5;

const READ = '#1f77b4';
const WRITE = '#d62728';
const MEMCPY = '#7f7f7f';

interface Point {
  x: number;
  y: number;
  /** The spread of the row's transfers, GB/s (slow end, fast end). */
  lo?: number;
  hi?: number;
}

interface Series {
  label: string;
  color: string;
  dash: string | undefined;
  marker: 'circle' | 'square' | 'none';
  points: Point[];
}

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

/** True when the run started on a busy machine (see {@link BUSY_LOAD_PER_CPU}). */
export function machineWasBusy(r: BenchReportJson): boolean {
  return r.machine.loadAvg1 >= BUSY_LOAD_PER_CPU * Math.max(1, r.machine.cpus);
}

/** kvwire's point for a row, with the spread of its transfers scaled from their latencies. */
function rowPoint(x: SweepRowJson): Point {
  const l = x.latencyUs;
  const spread = l.avg > 0 && l.p99 > 0 && l.min > 0;
  return {
    x: x.blockSize,
    y: x.gbps,
    ...(spread ? { lo: (x.gbps * l.avg) / l.p99, hi: (x.gbps * l.avg) / l.min } : {}),
  };
}

/** The series of one transport's panel. */
function panelSeries(r: BenchReportJson, transport: string, batch: number | undefined): Series[] {
  const sweep = r.sweep;
  const series: Series[] = [];
  for (const op of ['read', 'write'] as const) {
    const pts = (sweep?.rows ?? [])
      .filter((x) => x.transport === transport && x.op === op && x.batch === batch && x.status === 'ok')
      .map(rowPoint);
    if (pts.length > 0) {
      series.push({
        label: `${op.toUpperCase()} (kvwire)`,
        color: op === 'read' ? READ : WRITE,
        dash: undefined,
        marker: op === 'read' ? 'circle' : 'square',
        points: pts,
      });
    }
  }
  const baselines = [
    ['ucp_get', READ, '8 4'],
    ['ucp_put_bw', WRITE, '8 4'],
    ['ucp_am_bw', WRITE, '2 3'],
  ] as const;
  for (const [test, color, dash] of baselines) {
    const pts = (sweep?.perftest ?? [])
      .filter((p) => p.transport === transport && p.test === test && p.status === 'ok' && p.gbps !== null)
      .map((p) => ({ x: p.size, y: p.gbps! }));
    if (pts.length > 0) series.push({ label: `${test} (ucx_perftest)`, color, dash, marker: 'none', points: pts });
  }
  const mem = (sweep?.memcpy ?? []).map((m) => ({ x: m.size, y: m.gbps }));
  if (mem.length > 0 && transport !== 'tcp') {
    series.push({ label: 'memcpy (one core)', color: MEMCPY, dash: '14 4', marker: 'none', points: mem });
  }
  for (const s of series) s.points.sort((a, b) => a.x - b.x);
  return series;
}

/** Draws one panel into `o` at (left, top), `w` × `h` for the plot area. */
function drawPanel(
  o: string[],
  title: string,
  series: Series[],
  left: number,
  top: number,
  w: number,
  h: number,
): void {
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => Math.log2(p.x));
  const sizes = [...new Set(all.map((p) => p.x))].sort((a, b) => a - b);
  let x0 = xs.length ? Math.min(...xs) : 12;
  let x1 = xs.length ? Math.max(...xs) : 24;
  if (x1 - x0 < 1) {
    x0 -= 1;
    x1 += 1;
  }
  const ys = all.flatMap((p) => [p.y, p.lo ?? p.y, p.hi ?? p.y]).filter((y) => y > 0);
  const yMax = ys.length ? Math.max(...ys) : 1;
  const yMin = ys.length ? Math.min(...ys) : 1;
  // A wide spread (raw UCX over shared memory against cold rows) gets a log10 axis, else every
  // other line lies flat on zero.
  const logY = yMax / yMin > 30;
  const X = (bytes: number) => left + ((Math.log2(bytes) - x0) / (x1 - x0)) * w;
  let Y: (g: number) => number;
  const yTicks: number[] = [];
  if (logY) {
    const ladder: number[] = [];
    for (let k = Math.floor(Math.log10(yMin)) - 1; k <= Math.ceil(Math.log10(yMax)); k++)
      for (const f of [1, 2, 5]) ladder.push(f * 10 ** k);
    const bottom = [...ladder].reverse().find((v) => v <= yMin * 1.0001) ?? ladder[0]!;
    const topV = ladder.find((v) => v >= yMax * 0.9999) ?? ladder[ladder.length - 1]!;
    const lo = Math.log10(bottom);
    const hi = Math.log10(topV);
    Y = (g: number) => top + h - ((Math.log10(Math.max(g, bottom)) - lo) / (hi - lo)) * h;
    yTicks.push(...ladder.filter((v) => v >= bottom * 0.9999 && v <= topV * 1.0001));
  } else {
    const { top: yTop, step } = niceScale(yMax * 1.05);
    Y = (g: number) => top + h - (g / yTop) * h;
    for (let g = 0; g <= yTop + step / 2; g += step) yTicks.push(g);
  }
  o.push(
    `<text x="${left + w / 2}" y="${top - 10}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  );
  for (const g of yTicks) {
    const y = Y(g).toFixed(1);
    o.push(`<line x1="${left}" y1="${y}" x2="${left + w}" y2="${y}" stroke="#e6e6e6" stroke-width="1"/>`);
    o.push(`<text x="${left - 6}" y="${(Y(g) + 4).toFixed(1)}" text-anchor="end">${+g.toPrecision(3)}</text>`);
  }
  const every = sizes.length > 8 ? 2 : 1;
  sizes.forEach((s, i) => {
    const x = X(s).toFixed(1);
    o.push(`<line x1="${x}" y1="${top + h}" x2="${x}" y2="${top + h + 5}" stroke="#333333"/>`);
    if (i % every === 0) o.push(`<text x="${x}" y="${top + h + 19}" text-anchor="middle">${fmtSize(s)}</text>`);
  });
  o.push(`<rect x="${left}" y="${top}" width="${w}" height="${h}" fill="none" stroke="#333333" stroke-width="1"/>`);
  for (const s of series) {
    const pts = s.points.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ');
    o.push(
      `<polyline points="${pts}" fill="none" stroke="${s.color}" stroke-width="${s.dash ? 1.6 : 2.4}"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''} stroke-linejoin="round"/>`,
    );
    for (const p of s.points) {
      const cx = X(p.x);
      const cy = Y(p.y);
      if (p.lo !== undefined && p.hi !== undefined) {
        const y1 = Y(p.lo).toFixed(1);
        const y2 = Y(p.hi).toFixed(1);
        o.push(
          `<path d="M${(cx - 3).toFixed(1)} ${y1}H${(cx + 3).toFixed(1)}M${cx.toFixed(1)} ${y1}V${y2}M${(cx - 3).toFixed(1)} ${y2}H${(cx + 3).toFixed(1)}" stroke="${s.color}" stroke-width="1" fill="none" class="spread"/>`,
        );
      }
      if (s.marker === 'circle')
        o.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="3.5" fill="${s.color}"/>`);
      else if (s.marker === 'square')
        o.push(
          `<rect x="${(cx - 3.5).toFixed(1)}" y="${(cy - 3.5).toFixed(1)}" width="7" height="7" fill="${s.color}"/>`,
        );
    }
  }
  if (series.length === 0)
    o.push(`<text x="${left + w / 2}" y="${top + h / 2}" text-anchor="middle" fill="#aa0000">no rows to plot</text>`);
}

/** Renders the plot as an SVG document. */
export function renderPlot(r: BenchReportJson, askedBatch?: number): string {
  const batch = plotBatch(r, askedBatch);
  const transports = [...new Set(r.sweep?.rows.filter((x) => x.status === 'ok').map((x) => x.transport) ?? [])];
  const panels = transports.length > 0 ? transports : ['(none)'];
  const panelW = 360;
  const gap = 70;
  const L = 70;
  const W = Math.max(760, L + panels.length * panelW + (panels.length - 1) * gap + 30);
  const busy = machineWasBusy(r);
  const T = busy ? 128 : 96;
  const ph = 340;
  const H = T + ph + 150;
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
    `<text x="${L}" y="46" fill="#555555">${esc(`${m.cpus} × ${m.cpuModel}, Linux ${m.kernel}, UCX ${m.ucx ?? 'n/a'}, engine ${r.settings.engine}; ${r.startedAt.slice(0, 16).replace('T', ' ')} UTC; load ${m.loadAvg1.toFixed(1)} at start`)}</text>`,
  );
  if (busy) {
    o.push(
      `<text x="${L}" y="70" fill="#b00000" font-weight="bold" class="busy">${esc(`Machine busy: load average ${m.loadAvg1.toFixed(1)} on ${m.cpus} CPUs when the run started.`)}</text>`,
      `<text x="${L}" y="88" fill="#b00000">Other work shared the cores: the numbers are noisy; compare ratios within this run only.</text>`,
    );
  }
  panels.forEach((t, i) => {
    const left = L + i * (panelW + gap);
    drawPanel(o, t, t === '(none)' ? [] : panelSeries(r, t, batch), left, T, panelW, ph);
    if (i === 0)
      o.push(
        `<text x="${L - 50}" y="${T + ph / 2}" text-anchor="middle" font-size="13" transform="rotate(-90 ${L - 50} ${T + ph / 2})">GB/s (10^9 bytes per second)</text>`,
      );
  });
  o.push(
    `<text x="${W / 2}" y="${T + ph + 42}" text-anchor="middle" font-size="13">block size (bytes per descriptor, log2 scale)</text>`,
  );
  // One legend for every panel: the colours mean the same everywhere.
  const legend: [string, string, string | undefined, 'circle' | 'square' | 'none'][] = [
    ['READ (kvwire)', READ, undefined, 'circle'],
    ['ucp_get (ucx_perftest): the READ baseline', READ, '8 4', 'none'],
    ['WRITE (kvwire)', WRITE, undefined, 'square'],
    ['ucp_put_bw (ucx_perftest): a WRITE baseline', WRITE, '8 4', 'none'],
    ['ucp_am_bw (ucx_perftest): a WRITE baseline', WRITE, '2 3', 'none'],
    ['memcpy (one core)', MEMCPY, '14 4', 'none'],
  ];
  legend.forEach(([label, color, dash, marker], i) => {
    const x = L + (i % 2) * 360;
    const y = T + ph + 68 + Math.floor(i / 2) * 20;
    o.push(
      `<line x1="${x}" y1="${y}" x2="${x + 34}" y2="${y}" stroke="${color}" stroke-width="${dash ? 1.6 : 2.4}"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`,
    );
    if (marker === 'circle') o.push(`<circle cx="${x + 17}" cy="${y}" r="3.5" fill="${color}"/>`);
    if (marker === 'square') o.push(`<rect x="${x + 13.5}" y="${y - 3.5}" width="7" height="7" fill="${color}"/>`);
    o.push(`<text x="${x + 42}" y="${y + 4}">${esc(label)}</text>`);
  });
  o.push(
    `<text x="${L}" y="${T + ph + 136}" fill="#555555">${esc("Whiskers on kvwire's points: the spread of the row's transfers, from its p99 transfer to its fastest.")}</text>`,
  );
  o.push('</svg>');
  return `${o.join('\n')}\n`;
}
