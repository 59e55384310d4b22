/**
 * Headers across the proxy: what is stripped (hop-by-hop headers, the routing header), and the one
 * `x-request-id` both legs share.
 *
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';

/** The header a scheduler sets to name the prefill target(s) (llm-d's name). */
export const PREFILLER_HEADER = 'x-prefiller-host-port';
/** The request id header, the same on the prefill and the decode leg. */
export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
 * non-standard `proxy-connection` and `keep-alive`. Forwarding them would let a client steer the
 * sidecar's connection to the worker (`connection: close` on every pooled socket, `upgrade`,
 * a `transfer-encoding` that disagrees with the body the sidecar sends).
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Headers the sidecar sets itself on a leg, so the client's values are dropped; and `expect`: the
 * sidecar answers `100-continue` to its client itself and sends each worker the whole body.
 */
const SET_BY_SIDECAR = new Set(['host', PREFILLER_HEADER, 'expect']);

/**
 * Copies end-to-end headers (of a request, or of a worker's response): drops hop-by-hop headers, the headers a `Connection` header names,
 * `host`, `x-prefiller-host-port` (never forwarded to any worker), and `extraDrop`.
 */
export function endToEndHeaders(headers: IncomingHttpHeaders, extraDrop?: ReadonlySet<string>): OutgoingHttpHeaders {
  const named = headers.connection;
  let nominated: Set<string> | undefined;
  if (named !== undefined) nominated = new Set(named.split(',').map((t) => t.trim().toLowerCase()));
  const out: OutgoingHttpHeaders = {};
  for (const key in headers) {
    if (HOP_BY_HOP.has(key) || SET_BY_SIDECAR.has(key)) continue;
    if (nominated?.has(key) || extraDrop?.has(key)) continue;
    const value = headers[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

const PRINTABLE_ID = /^[\x21-\x7e]{1,256}$/;

/**
 * The request id for both legs: the client's `x-request-id` when it is 1..256 printable ASCII
 * characters (it names the request in both workers' logs), else a new UUID.
 */
export function requestIdOf(headers: IncomingHttpHeaders): string {
  const given = headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && PRINTABLE_ID.test(given) ? given : randomUUID();
}
