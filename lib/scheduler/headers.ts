/**
 * The HTTP header names the scheduler's front ends read and write.
 *
 * @packageDocumentation
 */

/** Names the prefill worker to the decode endpoint's sidecar, `host:port` (llm-d's name). */
export const PREFILLER_HEADER = 'x-prefiller-host-port';

/** A request header asking for the decision's explanation (`1`). */
export const EXPLAIN_REQUEST_HEADER = 'x-kvwire-explain';
