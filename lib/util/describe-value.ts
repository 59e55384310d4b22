/**
 * How error messages quote a bad input: short, and never the whole of a large value.
 *
 * @packageDocumentation
 */

/** `"abc"` for a string (cut at 40 characters), `12` for a number, `an array`, `an object`, `undefined`, … */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : typeof v;
}
