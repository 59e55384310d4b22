/**
 * The explanation of a decision as one header-safe line (printable ASCII, no line breaks), for the
 * opt-in `x-kvwire-decision` response header and for logs, e.g.
 *
 * ```
 * decode=d1 prefill=p0 pd=disaggregated reason=uncached_at_least_threshold prompt=4096 cached=256
 * won_by=prefix-cache; d1 total=4.50 prefix-cache=1.00 load=0.50 kv-utilization=n/a session-affinity=n/a
 * blocks=256; d0 total=2.00 ...
 * ```
 *
 * At most four candidates are listed, best first.
 *
 * @packageDocumentation
 */
import type { CandidateScores, Decision } from './scheduler.js';
import { SCORER_NAMES } from './types.js';

/** The response header that carries the explanation when asked for. */
export const EXPLAIN_HEADER = 'x-kvwire-decision';

const safe = (s: string): string => s.replace(/[^\x20-\x7e]/g, '?').replace(/;/g, ',');

function row(c: CandidateScores): string {
  const scores = SCORER_NAMES.map((n) => `${n}=${c.scores[n] === undefined ? 'n/a' : c.scores[n]!.toFixed(2)}`).join(
    ' ',
  );
  return `${safe(c.name)} total=${c.total.toFixed(2)} ${scores} blocks=${Number(c.prefixBlocks.toFixed(1))} load=${c.load}`;
}

/** Formats a decision (see the module documentation). */
export function explain(d: Omit<Decision, 'explanation'>, tokensError?: string): string {
  const head = [
    `decode=${safe(d.decode.name)}`,
    `prefill=${d.prefill === undefined ? '-' : safe(d.prefill.name)}`,
    `pd=${d.kind}`,
    `reason=${d.reason}`,
    `prompt=${d.promptTokens ?? 'unknown'}`,
    `cached=${d.cachedTokens}`,
    `won_by=${d.wonBy}`,
  ];
  if (tokensError !== undefined) head.push(`tokens_error=${safe(tokensError).slice(0, 120)}`);
  return [head.join(' '), ...d.candidates.slice(0, 4).map(row)].join('; ');
}
