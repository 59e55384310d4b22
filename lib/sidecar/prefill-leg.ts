/**
 * The prefill leg: POST the prefill body to the checked target, retry what may be transient
 * (502/503/504, connection errors) with backoff, all within one deadline.
 *
 * @packageDocumentation
 */
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { isJsonObject, KV_TRANSFER_PARAMS, type JsonObject } from './nixlv2.js';
import { ClientLink, Deadline, startLeg, type LegEndpoint } from './leg.js';
import { isCertificateError } from './tls.js';

/** Largest prefill response read (it is one token and the parameters; more is not a prefill). */
export const MAX_PREFILL_RESPONSE_BYTES = 1 << 20;
/** Longest wait between retries. */
export const MAX_BACKOFF_MS = 2_000;

/** Why a prefill leg failed for good (a metric label). */
export type PrefillFailureReason =
  | 'unreachable' // connection errors, retries exhausted
  | 'unavailable' // 502/503/504, retries exhausted
  | 'server_error' // another 5xx (not retried)
  | 'timeout'
  | 'tls' // certificate not trusted (not retried)
  | 'bad_response'; // not 2xx JSON with kv_transfer_params

/** How a prefill leg ended. */
export type PrefillResult =
  | {
      readonly kind: 'ok';
      /** The prefill's parsed response. */
      readonly response: JsonObject;
      /** Its `kv_transfer_params`, for the decode leg. */
      readonly kvTransferParams: JsonObject;
      /** Attempts made (1 + retries). */
      readonly attempts: number;
      /** The prefill worker's `Server-Timing` header, if it sent one (passed on to the client). */
      readonly serverTiming?: string;
    }
  | {
      /** The prefill refused the request (4xx): the client gets that answer as it is. */
      readonly kind: 'rejected';
      readonly status: number;
      readonly headers: IncomingHttpHeaders;
      readonly body: Buffer;
    }
  | {
      readonly kind: 'failed';
      readonly reason: PrefillFailureReason;
      /** What happened, for logs and the error body. */
      readonly message: string;
      readonly attempts: number;
    }
  | { readonly kind: 'cancelled' };

/** What one prefill leg needs. */
export interface PrefillLeg {
  /** The checked target. */
  readonly endpoint: LegEndpoint;
  /** Same path as the client's request. */
  readonly path: string;
  /** Headers to send (end-to-end headers, x-request-id, content-type). */
  readonly headers: OutgoingHttpHeaders;
  /** The serialized prefill body. */
  readonly body: Buffer;
  /** Deadline of the whole leg, retries included. */
  readonly timeoutMs: number;
  /** Retries after the first attempt. */
  readonly maxRetries: number;
  /** First backoff; doubled per retry, capped at {@link MAX_BACKOFF_MS}. */
  readonly backoffMs: number;
  /** The client: the leg is cancelled when it goes away. */
  readonly client: ClientLink;
  /** Called before each retry with why the previous attempt failed. */
  readonly onRetry?: (why: 'unavailable' | 'unreachable') => void;
}

/** What cancels the leg's request in flight, or its backoff wait. */
interface Cancel {
  stopped: boolean;
  current: ClientRequest | undefined;
  wake: (() => void) | undefined;
}

type Attempt =
  | { kind: 'response'; status: number; headers: IncomingHttpHeaders; body: Buffer }
  | { kind: 'error'; error: Error }
  | { kind: 'too_large' };

/**
 * Sends one attempt and reads its answer (at most {@link MAX_PREFILL_RESPONSE_BYTES}). Resolves,
 * never rejects: errors are values the retry loop classifies.
 */
function attempt(leg: PrefillLeg, cancel: Cancel, mayRetryStale = true): Promise<Attempt> {
  return new Promise<Attempt>((resolve) => {
    let done = false;
    const settle = (a: Attempt | Promise<Attempt>): void => {
      if (done) return;
      done = true;
      resolve(a);
    };
    const headers = { ...leg.headers, 'content-length': leg.body.length };
    const req = startLeg(leg.endpoint, 'POST', leg.path, headers);
    cancel.current = req;
    req.on('error', (error: NodeJS.ErrnoException) => {
      // A reset on a pooled connection before any answer: the worker closed it while idle as we
      // picked it up. Resend at once on a fresh connection (not a retry).
      if (mayRetryStale && req.reusedSocket && error.code === 'ECONNRESET' && !cancel.stopped) {
        settle(attempt(leg, cancel, false));
        return;
      }
      settle({ kind: 'error', error });
    });
    req.on('response', (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_PREFILL_RESPONSE_BYTES) {
          // Settle first: destroying the response also fails the request, which must not read as
          // a connection error (and be retried).
          settle({ kind: 'too_large' });
          res.destroy();
          return;
        }
        chunks.push(c);
      });
      res.on('end', () =>
        settle({
          kind: 'response',
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks, size),
        }),
      );
      res.on('error', (error) => settle({ kind: 'error', error }));
      res.on('aborted', () =>
        settle({ kind: 'error', error: new Error('the prefill worker closed the connection mid-answer') }),
      );
    });
    req.end(leg.body);
  });
}

function parseSuccess(body: Buffer): { response: JsonObject; params: JsonObject } | string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    return 'the prefill worker answered 2xx with a body that is not JSON';
  }
  if (!isJsonObject(parsed)) return 'the prefill worker answered 2xx with JSON that is not an object';
  const params = parsed[KV_TRANSFER_PARAMS];
  if (!isJsonObject(params)) {
    return `the prefill worker's answer has no ${KV_TRANSFER_PARAMS} object: is it running with a KV connector (kvwire engine --role prefill, vLLM with NixlConnector)?`;
  }
  return { response: parsed, params };
}

/** Runs the prefill leg to its end. */
export async function runPrefillLeg(leg: PrefillLeg): Promise<PrefillResult> {
  const cancel: Cancel = { stopped: false, current: undefined, wake: undefined };
  const stop = (): void => {
    cancel.stopped = true;
    cancel.current?.destroy();
    cancel.wake?.();
  };
  const deadline = new Deadline(leg.timeoutMs, stop);
  const offGone = leg.client.onGone(stop);
  const target = leg.endpoint.hostHeader;
  let attempts = 0;
  try {
    for (;;) {
      attempts++;
      const a = await attempt(leg, cancel);
      if (leg.client.gone) return { kind: 'cancelled' };
      if (deadline.expired) {
        return {
          kind: 'failed',
          reason: 'timeout',
          message: `the prefill leg to ${target} did not finish within ${leg.timeoutMs} ms`,
          attempts,
        };
      }
      let retryable: 'unavailable' | 'unreachable';
      let message: string;
      if (a.kind === 'too_large') {
        const message = `the prefill worker at ${target} answered with more than ${MAX_PREFILL_RESPONSE_BYTES} bytes; a prefill answers one token`;
        return { kind: 'failed', reason: 'bad_response', message, attempts };
      }
      if (a.kind === 'response') {
        if (a.status >= 200 && a.status < 300) {
          const ok = parseSuccess(a.body);
          if (typeof ok === 'string')
            return { kind: 'failed', reason: 'bad_response', message: `${ok} (${target})`, attempts };
          const timing = a.headers['server-timing'];
          return {
            kind: 'ok',
            response: ok.response,
            kvTransferParams: ok.params,
            attempts,
            ...(typeof timing === 'string' ? { serverTiming: timing } : {}),
          };
        }
        if (a.status >= 400 && a.status < 500)
          return { kind: 'rejected', status: a.status, headers: a.headers, body: a.body };
        if (a.status !== 502 && a.status !== 503 && a.status !== 504) {
          const reason = a.status >= 500 ? 'server_error' : 'bad_response';
          return { kind: 'failed', reason, message: `the prefill worker at ${target} answered ${a.status}`, attempts };
        }
        retryable = 'unavailable';
        message = `the prefill worker at ${target} answered ${a.status}`;
      } else {
        if (isCertificateError(a.error)) {
          return {
            kind: 'failed',
            reason: 'tls',
            message: `the prefill worker at ${target} presented a certificate that is not trusted: ${a.error.message}`,
            attempts,
          };
        }
        retryable = 'unreachable';
        message = `the prefill worker at ${target} could not be reached: ${a.error.message}`;
      }
      if (attempts > leg.maxRetries)
        return { kind: 'failed', reason: retryable, message: `${message} (after ${attempts} attempts)`, attempts };
      leg.onRetry?.(retryable);
      const wait = Math.min(MAX_BACKOFF_MS, leg.backoffMs * 2 ** (attempts - 1));
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        cancel.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      cancel.wake = undefined;
      if (leg.client.gone) return { kind: 'cancelled' };
      if (deadline.expired) {
        return {
          kind: 'failed',
          reason: 'timeout',
          message: `the prefill leg to ${target} did not finish within ${leg.timeoutMs} ms (${message})`,
          attempts,
        };
      }
    }
  } finally {
    deadline.dispose();
    offGone();
  }
}
