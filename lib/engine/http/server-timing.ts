/**
 * A request's engine timings as a `Server-Timing` header (W3C Server Timing: `name;dur=<ms>`,
 * comma-separated). Entry names carry the mode the request ran in, so a sidecar can put the
 * prefill engine's entries and the decode engine's in one header without a clash:
 *
 * - prefill (`do_remote_decode`): `prefill-queue`, `prefill-compute`, `prefill-kv-store`
 * - decode (`do_remote_prefill`): `decode-queue`,
 *   `decode-kv-pull;dur=..;bytes=N;blocks=N;transfer=<ms of the READs>;transport=sm` (`queue=<ms>`
 *   when it waited for pull capacity, `handshake=<ms>` when it paid one), `decode-kv-load`, `decode-compute`, and
 *   `decode-recompute;desc="<error code>"` when the pull failed and the prompt was computed here
 * - plain: `queue`, `kv-load` (prefix-cache hit), `compute`
 *
 * (`bytes=` and the like are extra parameters, allowed by the grammar and ignored by browsers.)
 *
 * @packageDocumentation
 */
import type { RequestTiming } from '../serving/timing.js';

const ms = (v: number): string => String(Number(v.toFixed(2)));

/** The header value, or undefined when nothing was timed. */
export function serverTimingHeader(t: RequestTiming): string | undefined {
  if (t.mode === undefined) return undefined;
  const p = t.mode === 'plain' ? '' : `${t.mode}-`;
  const out: string[] = [];
  if (t.queueMs !== undefined) out.push(`${p}queue;dur=${ms(t.queueMs)}`);
  if (t.pullMs !== undefined) {
    let pull = `${p}kv-pull;dur=${ms(t.pullMs)}`;
    if (t.pullBytes !== undefined) pull += `;bytes=${t.pullBytes};blocks=${t.pullBlocks ?? 0}`;
    if (t.transferMs !== undefined) pull += `;transfer=${ms(t.transferMs)}`;
    if (t.pullQueueMs !== undefined && t.pullQueueMs > 0) pull += `;queue=${ms(t.pullQueueMs)}`;
    if (t.transport !== undefined) pull += `;transport=${t.transport}`;
    if (t.handshakeMs !== undefined && t.handshakeMs > 0) pull += `;handshake=${ms(t.handshakeMs)}`;
    out.push(pull);
  }
  if (t.recompute !== undefined) out.push(`${p}recompute;desc="${t.recompute.replace(/["\\]/g, '')}"`);
  if (t.loadMs !== undefined) out.push(`${p}kv-load;dur=${ms(t.loadMs)}`);
  if (t.computeMs !== undefined) out.push(`${p}compute;dur=${ms(t.computeMs)}`);
  if (t.storeMs !== undefined) out.push(`${p}kv-store;dur=${ms(t.storeMs)}`);
  return out.length > 0 ? out.join(', ') : undefined;
}
