/**
 * The few SVG pieces the report's plots are drawn with: linear scales with round ticks, axes,
 * escaped text. Plain strings, no library: the report is one self-contained file.
 *
 * @packageDocumentation
 */

/** Escapes text for XML/HTML content and attribute values. */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A number with at most `digits` decimals, no trailing zeros (SVG coordinates stay short). */
export function n(v: number, digits = 1): string {
  return Number.isFinite(v) ? String(Number(v.toFixed(digits))) : '0';
}

/** A linear map from [d0, d1] to [r0, r1]. */
export interface Scale {
  (v: number): number;
  /** Domain. */
  readonly domain: readonly [number, number];
  /** Round tick values inside the domain. */
  ticks(count?: number): number[];
}

/** A step of 1, 2 or 5 × 10^k giving about `count` ticks over `span`. */
function tickStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m >= 5 ? 10 : m >= 2 ? 5 : m >= 1 ? 2 : 1) * p;
}

/** A linear scale; an empty domain is widened so nothing divides by zero. */
export function linear(d0: number, d1: number, r0: number, r1: number): Scale {
  if (!(d1 > d0)) d1 = d0 + 1;
  const f = ((v: number) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0)) as Scale;
  Object.defineProperty(f, 'domain', { value: [d0, d1] as const });
  f.ticks = (count = 5): number[] => {
    const step = tickStep(d1 - d0, count);
    const out: number[] = [];
    for (let v = Math.ceil(d0 / step) * step; v <= d1 + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
  };
  return f;
}

/** A domain maximum rounded up to a tick step (so the top tick is at the top). */
export function niceMax(v: number, count = 5): number {
  if (!(v > 0)) return 1;
  const step = tickStep(v, count);
  return Math.ceil(v / step) * step;
}

/** The plot area of a chart: its size and margins. */
export interface Frame {
  /** Total width. */
  readonly width: number;
  /** Total height. */
  readonly height: number;
  /** Left margin (y axis labels). */
  readonly left: number;
  /** Right margin. */
  readonly right: number;
  /** Top margin. */
  readonly top: number;
  /** Bottom margin (x axis labels). */
  readonly bottom: number;
}

/** Formats ticks with as many decimals as their step needs (0.005 stays 0.005, not 0.01). */
function byStep(ticks: readonly number[]): (v: number) => string {
  const step = ticks.length > 1 ? ticks[1]! - ticks[0]! : 1;
  const decimals = Math.max(0, Math.min(6, -Math.floor(Math.log10(step) + 1e-9)));
  return (v) => v.toFixed(decimals);
}

/** x and y axes with ticks, grid lines and labels. */
export function axes(
  frame: Frame,
  x: Scale,
  y: Scale,
  labels: { readonly x: string; readonly y: string },
  format: { readonly x?: (v: number) => string; readonly y?: (v: number) => string } = {},
): string {
  const { width, height, left, right, top, bottom } = frame;
  const fx = format.x ?? byStep(x.ticks());
  const fy = format.y ?? byStep(y.ticks());
  const x0 = left;
  const x1 = width - right;
  const y0 = height - bottom;
  const parts: string[] = [`<g class="axes">`];
  for (const t of y.ticks()) {
    const py = n(y(t));
    parts.push(
      `<line class="grid" x1="${x0}" x2="${x1}" y1="${py}" y2="${py}"/>`,
      `<text class="tick" x="${x0 - 6}" y="${py}" text-anchor="end" dominant-baseline="middle">${esc(fy(t))}</text>`,
    );
  }
  for (const t of x.ticks()) {
    const px = n(x(t));
    parts.push(
      `<line class="tickmark" x1="${px}" x2="${px}" y1="${y0}" y2="${y0 + 4}"/>`,
      `<text class="tick" x="${px}" y="${y0 + 16}" text-anchor="middle">${esc(fx(t))}</text>`,
    );
  }
  parts.push(
    `<line class="axis" x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}"/>`,
    `<line class="axis" x1="${x0}" x2="${x0}" y1="${top}" y2="${y0}"/>`,
    `<text class="label" x="${n((x0 + x1) / 2)}" y="${height - 4}" text-anchor="middle">${esc(labels.x)}</text>`,
    `<text class="label" transform="translate(12 ${n((top + y0) / 2)}) rotate(-90)" text-anchor="middle">${esc(labels.y)}</text>`,
    `</g>`,
  );
  return parts.join('');
}

/** An `<svg>` element with an id, a viewBox and a title (for screen readers and tooltips). */
export function svg(id: string, frame: Frame, title: string, body: string): string {
  return `<svg id="${esc(id)}" class="plot" xmlns="http://www.w3.org/2000/svg" width="${frame.width}" height="${frame.height}" viewBox="0 0 ${frame.width} ${frame.height}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title>${body}</svg>`;
}

/** A legend: coloured squares with labels, in a row at (x, y). */
export function legend(
  x: number,
  y: number,
  items: readonly { readonly label: string; readonly color: string }[],
): string {
  let at = x;
  const parts: string[] = ['<g class="legend">'];
  for (const it of items) {
    parts.push(
      `<rect x="${n(at)}" y="${y - 9}" width="10" height="10" fill="${it.color}"/>`,
      `<text x="${n(at + 14)}" y="${y}" class="tick">${esc(it.label)}</text>`,
    );
    at += 24 + it.label.length * 6.2;
  }
  parts.push('</g>');
  return parts.join('');
}
