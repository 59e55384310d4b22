/**
 * The decode leg: the request goes to the decode worker and its answer streams back to the client
 * as it comes (SSE chunks are written the moment they arrive; nothing is buffered except, when
 * usage must be merged, a JSON body or an incomplete SSE line).
 *
 * @packageDocumentation
 */
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { endToEndHeaders, REQUEST_ID_HEADER } from './headers.js';
import { sendError } from './http-io.js';
import { ClientLink, Deadline, startLeg, type LegEndpoint } from './leg.js';
import { mergeUsageIntoJson, SseUsageMerger } from './usage-merge.js';

/** How a decode leg ended (a metric label). */
export type DecodeOutcome =
  | 'ok' // the worker answered 2xx and the whole answer reached the client
  | 'error_status' // the worker answered 3xx/4xx/5xx, relayed as it was
  | 'unreachable' // no answer from the worker: 502 sent
  | 'timeout' // deadline passed: 504 sent, or the stream cut
  | 'broken' // the worker's answer stopped mid-way: the client's connection cut
  | 'too_large' // the client's streamed body passed the limit: 413 sent
  | 'cancelled'; // the client went away

/** What one decode leg needs. */
export interface DecodeLeg {
  /** The decode worker. */
  readonly endpoint: LegEndpoint;
  /** The client's method and path. */
  readonly method: string;
  readonly path: string;
  /** Headers to send (content-length included when `body` is a Buffer). */
  readonly headers: OutgoingHttpHeaders;
  /** The body: bytes, the client's request to stream through, or none. */
  readonly body: Buffer | IncomingMessage | undefined;
  /** Limit on a streamed body. */
  readonly maxBodyBytes: number;
  /** Deadline for the answer to start, and for each pause in it. */
  readonly timeoutMs: number;
  /** The client: the leg is cancelled when it goes away. */
  readonly client: ClientLink;
  /** The client's response. */
  readonly res: ServerResponse;
  /** The prefill's cached prompt tokens, to report in the answer's usage (undefined: relay it unchanged). */
  readonly prefillCachedTokens: number | undefined;
  /** Set as `x-request-id` on the answer when the worker did not echo one. */
  readonly requestId: string | undefined;
  /** `Server-Timing` entries to add after the worker's own (the prefill leg's, on the P/D route). */
  readonly serverTiming?: string;
  /** Called when the worker's answer starts (time to first byte). */
  readonly onResponse?: (status: number) => void;
}

function streamBody(body: IncomingMessage, req: ClientRequest, limit: number, tooLarge: () => void): void {
  let size = 0;
  body.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > limit) {
      body.pause();
      tooLarge();
      return;
    }
    if (!req.write(chunk)) body.pause();
  });
  req.on('drain', () => body.resume());
  body.on('end', () => req.end());
}

const TOO_LARGE = (limit: number) => ({
  message: `the request body is larger than ${limit} bytes`,
  type: 'invalid_request_error',
  code: 'body_too_large',
});

/**
 * Answers up to this size with a content-length are collected and sent in one write: headers and
 * body leave in one syscall instead of two (syscalls dominate a proxy's cost per request).
 */
const COALESCE_BYTES = 64 << 10;

/** Runs the decode leg; resolves when the client's response is complete or abandoned. */
export function runDecodeLeg(leg: DecodeLeg): Promise<DecodeOutcome> {
  const { res } = leg;
  return new Promise<DecodeOutcome>((resolve) => {
    let settled = false;
    let current: ClientRequest | undefined;
    const deadline = new Deadline(leg.timeoutMs, () => current?.destroy());
    const offGone = leg.client.onGone(() => {
      current?.destroy();
      finish('cancelled');
    });
    const finish = (outcome: DecodeOutcome): void => {
      if (settled) return;
      settled = true;
      deadline.dispose();
      offGone();
      resolve(outcome);
    };
    const failBeforeAnswer = (): void => {
      if (leg.client.gone) return finish('cancelled');
      if (deadline.expired) {
        sendError(res, 504, {
          message: `the decode worker did not answer within ${leg.timeoutMs} ms`,
          type: 'api_error',
          code: 'decode_timeout',
        });
        return finish('timeout');
      }
      sendError(res, 502, {
        message: 'the decode worker could not be reached; is it running?',
        type: 'api_error',
        code: 'decode_unreachable',
      });
      finish('unreachable');
    };
    if (settled) return;

    const streamed = leg.body !== undefined && !Buffer.isBuffer(leg.body);
    const declared = streamed ? (leg.body as IncomingMessage).headers['content-length'] : undefined;
    if (declared !== undefined && Number(declared) > leg.maxBodyBytes) {
      sendError(res, 413, TOO_LARGE(leg.maxBodyBytes), true);
      return finish('too_large');
    }

    const send = (mayRetryStale: boolean): ClientRequest => {
      const req = startLeg(leg.endpoint, leg.method, leg.path, leg.headers);
      current = req;
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (settled || res.headersSent) return;
        // A reset on a pooled connection before any answer almost always means the worker closed
        // it while idle as we picked it up (Node's documented retry case): send once more, fresh.
        if (mayRetryStale && req.reusedSocket && e.code === 'ECONNRESET' && !deadline.expired) {
          send(false);
          return;
        }
        failBeforeAnswer();
      });
      req.on('response', (up) => relay(up));
      if (leg.body === undefined) req.end();
      else if (Buffer.isBuffer(leg.body)) req.end(leg.body);
      return req;
    };
    // A streamed body cannot be sent twice, so only buffered requests retry a stale connection.
    const req = send(!streamed);
    if (streamed) {
      streamBody(leg.body as IncomingMessage, req, leg.maxBodyBytes, () => {
        req.destroy();
        sendError(res, 413, TOO_LARGE(leg.maxBodyBytes), true);
        finish('too_large');
      });
    }

    function relay(up: IncomingMessage): void {
      const status = up.statusCode ?? 502;
      leg.onResponse?.(status);
      deadline.refresh();
      const headers = endToEndHeaders(up.headers);
      if (leg.requestId !== undefined && headers[REQUEST_ID_HEADER] === undefined) {
        headers[REQUEST_ID_HEADER] = leg.requestId;
      }
      if (leg.serverTiming !== undefined) {
        const own = headers['server-timing'];
        headers['server-timing'] = [...(own === undefined ? [] : [String(own)]), leg.serverTiming].join(', ');
      }
      const outcome: DecodeOutcome = status >= 200 && status < 300 ? 'ok' : 'error_status';
      const contentType = up.headers['content-type'] ?? '';
      const merge = leg.prefillCachedTokens !== undefined && outcome === 'ok';
      const sse = contentType.includes('text/event-stream');

      const broken = (): void => {
        if (settled) return;
        res.destroy();
        if (leg.client.gone) finish('cancelled');
        else finish(deadline.expired ? 'timeout' : 'broken');
      };
      up.on('error', broken);
      up.on('aborted', broken);

      const length = up.headers['content-length'];
      // No body whatever content-length says: relay the headers as they are.
      const bodiless = leg.method === 'HEAD' || status === 204 || status === 304;
      if (
        !sse &&
        !bodiless &&
        ((merge && contentType.includes('json')) || (length !== undefined && Number(length) <= COALESCE_BYTES))
      ) {
        collect(up, status, headers, outcome, merge);
        return;
      }
      const merger = merge && sse ? new SseUsageMerger(leg.prefillCachedTokens!) : undefined;
      if (merger !== undefined) delete headers['content-length'];
      res.writeHead(status, headers);
      // Tokens must not wait for the first chunk to carry the headers out.
      if (sse) res.flushHeaders();
      up.on('data', (chunk: Buffer) => {
        deadline.refresh();
        const out = merger === undefined ? chunk : merger.push(chunk);
        if (out.length > 0 && !res.write(out)) up.pause();
      });
      res.on('drain', () => {
        deadline.refresh();
        up.resume();
      });
      up.on('end', () => {
        const tail = merger?.end();
        if (tail !== undefined && tail.length > 0) res.end(tail);
        else res.end();
        finish(outcome);
      });
    }

    /**
     * Collects a whole answer, then sends it in one write (merging usage into JSON when asked). An
     * answer that grows past the body limit is relayed unchanged from there on instead.
     */
    function collect(
      up: IncomingMessage,
      status: number,
      headers: OutgoingHttpHeaders,
      outcome: DecodeOutcome,
      merge: boolean,
    ): void {
      const chunks: Buffer[] = [];
      let size = 0;
      let streaming = false;
      up.on('data', (chunk: Buffer) => {
        deadline.refresh();
        if (streaming) {
          if (!res.write(chunk)) up.pause();
          return;
        }
        size += chunk.length;
        chunks.push(chunk);
        if (size > leg.maxBodyBytes) {
          streaming = true;
          res.writeHead(status, headers);
          for (const c of chunks.splice(0)) res.write(c);
        }
      });
      res.on('drain', () => {
        deadline.refresh();
        up.resume();
      });
      up.on('end', () => {
        if (!streaming) {
          const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
          const merged = merge ? (mergeUsageIntoJson(body, leg.prefillCachedTokens!) ?? body) : body;
          headers['content-length'] = merged.length;
          res.writeHead(status, headers);
          res.end(merged);
        } else res.end();
        finish(outcome);
      });
    }
  });
}
