/**
 * Forwarding one request to the chosen endpoint and streaming the answer back as it comes (SSE
 * chunks are written through, never buffered). node:http, no framework.
 *
 * Hop-by-hop headers are stripped both ways; the upstream gets `x-request-id` (the client's or a
 * new UUID) and the headers the decision adds. Deadlines: `connectTimeoutMs` to get the upstream's
 * response headers, `idleTimeoutMs` of silence while streaming. A client that goes away aborts the
 * upstream request.
 *
 * @packageDocumentation
 */
import { randomUUID } from 'node:crypto';
import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from 'node:http';
import { request as httpsRequest } from 'node:https';

/** Headers that describe one connection, not the message (RFC 9110 7.6.1), and are never forwarded. */
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
  'host',
]);

/** Copies `h` without hop-by-hop headers (and those the `connection` header names) or `drop`. */
export function endToEnd(h: IncomingHttpHeaders, drop: ReadonlySet<string> = new Set()): OutgoingHttpHeaders {
  const named = new Set(
    String(h.connection ?? '')
      .toLowerCase()
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(h)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.has(k) || drop.has(k)) continue;
    out[k] = v;
  }
  return out;
}

/** How a forward ended. */
export type ForwardResult =
  | { readonly kind: 'done'; readonly status: number }
  | { readonly kind: 'connect-failed'; readonly error: Error }
  | { readonly kind: 'failed'; readonly error: Error };

/** Options of {@link forward}. */
export interface ForwardOptions {
  /** Base URL of the upstream. */
  readonly base: string;
  /** Path and query. */
  readonly path: string;
  /** Method. */
  readonly method: string;
  /** Headers to send (end-to-end only). */
  readonly headers: OutgoingHttpHeaders;
  /** The body (already read). */
  readonly body: Buffer | undefined;
  /** Headers to add to the response. */
  readonly responseHeaders: Readonly<Record<string, string>>;
  /** Deadline for the upstream's response headers, in ms. */
  readonly connectTimeoutMs: number;
  /** Deadline of silence while the answer streams, in ms. */
  readonly idleTimeoutMs: number;
}

/** A new request id unless the client sent one. */
export function requestId(h: IncomingHttpHeaders): string {
  const v = h['x-request-id'];
  return typeof v === 'string' && v.length > 0 && v.length <= 256 ? v : randomUUID();
}

/**
 * Sends the request upstream and pipes the answer to `res`. Resolves when the answer has been
 * relayed (or failed). `connect-failed` means nothing reached the upstream and nothing was written
 * to `res` (the caller may try another endpoint).
 */
export function forward(req: IncomingMessage, res: ServerResponse, o: ForwardOptions): Promise<ForwardResult> {
  return new Promise((resolve) => {
    const url = new URL(o.path, `${o.base}/`);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    let answered = false;
    let settled = false;
    const settle = (r: ForwardResult): void => {
      if (!settled) {
        settled = true;
        resolve(r);
      }
    };
    const headers: OutgoingHttpHeaders = { ...o.headers, host: url.host };
    if (o.body !== undefined) headers['content-length'] = o.body.length;
    const up = send(url, { method: o.method, headers });
    const deadline = setTimeout(
      () => up.destroy(new Error(`no response headers within ${o.connectTimeoutMs} ms`)),
      o.connectTimeoutMs,
    );
    const onClientGone = (): void => {
      if (!res.writableFinished) up.destroy(new Error('the client went away'));
    };
    res.on('close', onClientGone);
    up.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(deadline);
      res.off('close', onClientGone);
      if (!answered) {
        // Only a refused connection is certain to have reached nothing: safe to send elsewhere.
        const refused = e.code === 'ECONNREFUSED' || e.code === 'EHOSTUNREACH' || e.code === 'ENETUNREACH';
        settle(refused ? { kind: 'connect-failed', error: e } : { kind: 'failed', error: e });
      } else {
        res.destroy(e);
        settle({ kind: 'failed', error: e });
      }
    });
    up.on('response', (ur) => {
      clearTimeout(deadline);
      answered = true;
      ur.setTimeout(o.idleTimeoutMs, () => ur.destroy(new Error(`no data for ${o.idleTimeoutMs} ms`)));
      const headers = { ...endToEnd(ur.headers), ...o.responseHeaders };
      // Server-Timing accumulates along the path: ours first, then the upstream's own entries.
      const upstreamTiming = ur.headers['server-timing'];
      if (o.responseHeaders['server-timing'] !== undefined && upstreamTiming !== undefined)
        headers['server-timing'] = `${o.responseHeaders['server-timing']}, ${upstreamTiming}`;
      res.writeHead(ur.statusCode ?? 502, headers);
      res.flushHeaders();
      ur.on('data', (chunk: Buffer) => {
        // Backpressure: pause the upstream while the client's socket is full.
        if (!res.write(chunk)) {
          ur.pause();
          res.once('drain', () => ur.resume());
        }
      });
      ur.on('end', () => {
        res.off('close', onClientGone);
        res.end();
        settle({ kind: 'done', status: ur.statusCode ?? 502 });
      });
      ur.on('error', (e) => {
        res.off('close', onClientGone);
        res.destroy(e);
        settle({ kind: 'failed', error: e });
      });
      ur.on('aborted', () => settle({ kind: 'failed', error: new Error('the upstream aborted its answer') }));
    });
    up.end(o.body);
  });
}
