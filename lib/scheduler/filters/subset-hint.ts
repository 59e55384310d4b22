/**
 * The subset filter of the endpoint picker protocol: when Envoy names a subset of endpoints
 * (`envoy.lb.subset_hint` / `x-gateway-destination-endpoint-subset`), only decode endpoints whose
 * destination `ip:port` (resolved at health-check time) or configured `host:port` is in it may be chosen.
 *
 * @packageDocumentation
 */
import { destinationUrl, hostPort } from '../endpoint.js';
import { addressOf, type Candidate } from '../types.js';

/** Keeps the candidates in `subset` (all of them when there is no subset). */
export function subsetFilter(candidates: readonly Candidate[], subset: ReadonlySet<string> | undefined): Candidate[] {
  if (subset === undefined) return [...candidates];
  // By resolved address (what Envoy lists), or by the host:port as configured (names, in tests).
  return candidates.filter((c) => subset.has(addressOf(c)) || subset.has(hostPort(destinationUrl(c.spec))));
}
