/**
 * Reads sample lines of a Prometheus text exposition (an engine's `/metrics`). A hand-written
 * reader of the sample lines only: prom-client writes the format but does not parse it, and the
 * one parser package on npm is unmaintained; this reads `name{labels} value [timestamp]` lines and
 * skips comments. The scheduler sums a metric's series (one per model or engine) for load; the
 * system demo reads series by label (KV hand-off stages, decisions by reason).
 *
 * @packageDocumentation
 */

/** One sample line. */
export interface PromSample {
  /** Metric name (with `_bucket`, `_sum`, `_count` suffixes as written). */
  readonly name: string;
  /** Label values by label name. */
  readonly labels: Readonly<Record<string, string>>;
  /** The value (NaN and infinities included as written). */
  readonly value: number;
}

const ESCAPES: Readonly<Record<string, string>> = { n: '\n', '\\': '\\', '"': '"' };

/** Parses `{a="x",b="y"}` starting at `text[0] === '{'`; returns the labels and the rest of the line. */
function labelsOf(text: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  while (i < text.length) {
    while (text[i] === ' ' || text[i] === ',') i++;
    if (text[i] === '}') return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf('=', i);
    if (eq < 0 || text[eq + 1] !== '"') break;
    const key = text.slice(i, eq).trim();
    let value = '';
    let j = eq + 2;
    // Label values may hold '}' and ',' inside quotes, and escapes.
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\' && j + 1 < text.length) value += ESCAPES[text[++j]!] ?? text[j];
      else value += text[j];
    }
    labels[key] = value;
    i = j + 1;
  }
  return { labels, rest: '' };
}

/** Every sample line whose metric name is in `names` (all of them when `names` is omitted). */
export function readSamples(text: string, names?: ReadonlySet<string>): PromSample[] {
  const out: PromSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let end = 0;
    while (end < line.length && line[end] !== '{' && line[end] !== ' ' && line[end] !== '\t') end++;
    const name = line.slice(0, end);
    if (names !== undefined && !names.has(name)) continue;
    let rest = line.slice(end);
    let labels: Record<string, string> = {};
    if (rest.startsWith('{')) ({ labels, rest } = labelsOf(rest));
    const value = Number(rest.trim().split(/\s+/)[0]);
    if (rest.trim() === '') continue;
    out.push({ name, labels, value });
  }
  return out;
}

/** Per metric name, the sum of its samples' values (NaN and infinities are skipped). */
export function sumSamples(text: string, names: ReadonlySet<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of readSamples(text, names)) {
    if (!Number.isFinite(s.value)) continue;
    out.set(s.name, (out.get(s.name) ?? 0) + s.value);
  }
  return out;
}
