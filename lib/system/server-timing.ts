/**
 * Reads the `Server-Timing` response header (W3C Server Timing): comma-separated entries
 * `name;dur=<ms>;desc="..."`, with any further `param=value` kept (kvwire's engines add
 * `bytes=` and `blocks=` to the KV pull). The router, the sidecar and the engines each add their
 * entries as the answer passes them, so one header describes the whole request path.
 *
 * Lenient by design: an entry that does not parse is skipped, never an error (a timing header is
 * diagnostics; a malformed one must not fail a request).
 *
 * @packageDocumentation
 */

/** One entry. */
export interface ServerTimingEntry {
  /** Metric name (`router`, `sidecar-prefill`, `decode-kv-pull`, ...). */
  readonly name: string;
  /** Duration in ms, when given. */
  readonly dur?: number;
  /** Description, when given. */
  readonly desc?: string;
  /** Every other parameter, as text. */
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Splits on `sep` outside double quotes. */
function split(text: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      cur += ch;
      if (ch === '\\' && i + 1 < text.length) cur += text[++i];
      else if (ch === '"') quoted = false;
    } else if (ch === '"') {
      quoted = true;
      cur += ch;
    } else if (ch === sep) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function unquote(v: string): string {
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1).replace(/\\(.)/g, '$1');
  return v;
}

/** Parses a header value (or several, as fetch joins repeated headers with ", "). */
export function parseServerTiming(header: string | null | undefined): ServerTimingEntry[] {
  if (header === null || header === undefined) return [];
  const out: ServerTimingEntry[] = [];
  for (const raw of split(header, ',')) {
    const parts = split(raw, ';').map((p) => p.trim());
    const name = parts[0] ?? '';
    if (!TOKEN.test(name)) continue;
    const params: Record<string, string> = {};
    let dur: number | undefined;
    let desc: string | undefined;
    for (const p of parts.slice(1)) {
      const eq = p.indexOf('=');
      const key = (eq < 0 ? p : p.slice(0, eq)).trim().toLowerCase();
      if (!TOKEN.test(key)) continue;
      const value = eq < 0 ? '' : unquote(p.slice(eq + 1).trim());
      // The first occurrence of a parameter counts (the specification's rule).
      if (key === 'dur') {
        const n = Number(value);
        if (dur === undefined && value !== '' && Number.isFinite(n)) dur = n;
      } else if (key === 'desc') desc ??= value;
      else if (!(key in params)) params[key] = value;
    }
    out.push({ name, ...(dur === undefined ? {} : { dur }), ...(desc === undefined ? {} : { desc }), params });
  }
  return out;
}

/** The duration (ms) of the first entry named `name`, or undefined. */
export function timingOf(entries: readonly ServerTimingEntry[], name: string): number | undefined {
  return entries.find((e) => e.name === name)?.dur;
}
