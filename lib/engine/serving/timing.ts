/**
 * Where one request's time went inside the engine, filled in as it runs: the HTTP layer sends it
 * as a `Server-Timing` header (http/server-timing.ts), so a client, a sidecar or the system demo
 * can draw a request's timeline without reading logs.
 *
 * @packageDocumentation
 */

/** A request's timings (ms) and KV pull; fields stay undefined for stages it did not go through. */
export interface RequestTiming {
  /** How the request ran. */
  mode?: 'plain' | 'prefill' | 'decode';
  /** Waiting for a compute slot. */
  queueMs?: number;
  /** Decode: the KV pull (handshake, queue, READs, done notification). */
  pullMs?: number;
  /** Decode: bytes READ from the prefill (0 when every block was cached here). */
  pullBytes?: number;
  /** Decode: blocks READ. */
  pullBlocks?: number;
  /** Decode: the first pull from that prefill paid a handshake of this long. */
  handshakeMs?: number;
  /** Decode: waiting for pull capacity (lib/pd's in-flight limits). */
  pullQueueMs?: number;
  /** Decode: the READs themselves, with the lease fence (bytes / this = the wire's speed). */
  transferMs?: number;
  /** Decode: how the bytes travelled (`sm`, `tcp`, ...). */
  transport?: string;
  /** Loading cached or pulled KV into the runtime. */
  loadMs?: number;
  /** Computing the prompt (its uncached part, or only the last token after a pull). */
  computeMs?: number;
  /** Prefill: copying the prompt's KV out of the runtime into registered blocks. */
  storeMs?: number;
  /** Decode: why the pull failed and the prompt was recomputed (an error code). */
  recompute?: string;
}
