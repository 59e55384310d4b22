/**
 * Reads the few gauges the scheduler needs from a Prometheus text exposition (an engine's
 * `/metrics`). A hand-written reader of the sample lines only: prom-client writes the format but
 * does not parse it, and the one parser package on npm is unmaintained; this reads `name{labels}
 * value [timestamp]` lines, skips comments, and sums a metric's series (one per model or engine).
 *
 * @packageDocumentation
 */

/** Per metric name, the sum of its samples' values (NaN and infinities are skipped). */
export function sumSamples(text: string, names: ReadonlySet<string>): Map<string, number> {
  const out = new Map<string, number>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    let end = 0;
    while (end < line.length && line[end] !== '{' && line[end] !== ' ' && line[end] !== '\t') end++;
    const name = line.slice(0, end);
    if (!names.has(name)) continue;
    let rest = line.slice(end);
    if (rest.startsWith('{')) {
      // Label values may hold '}' inside quotes: skip the quoted parts.
      let i = 1,
        quoted = false;
      for (; i < rest.length; i++) {
        const ch = rest[i];
        if (quoted) {
          if (ch === '\\') i++;
          else if (ch === '"') quoted = false;
        } else if (ch === '"') quoted = true;
        else if (ch === '}') break;
      }
      rest = rest.slice(i + 1);
    }
    const value = Number(rest.trim().split(/\s+/)[0]);
    if (!Number.isFinite(value)) continue;
    out.set(name, (out.get(name) ?? 0) + value);
  }
  return out;
}
