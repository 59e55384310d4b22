/**
 * Reading bounded bodies and writing the sidecar's own answers (OpenAI's error JSON).
 *
 * @packageDocumentation
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** The body was larger than the limit. */
export class BodyTooLarge extends Error {
  constructor(
    /** The limit in bytes. */
    readonly limit: number,
  ) {
    super(`body larger than ${limit} bytes`);
    this.name = 'BodyTooLarge';
  }
}

/**
 * Reads a whole body of at most `limit` bytes. A declared `content-length` over the limit fails at
 * once, before a byte is read (a client must not make the sidecar buffer what it will refuse).
 *
 * @throws BodyTooLarge over the limit; the stream's error if it fails or is aborted.
 */
export function readBody(stream: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = stream.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(new BodyTooLarge(limit));
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(new BodyTooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (e: Error): void => {
      cleanup();
      reject(e);
    };
    const onAborted = (): void => onError(new Error('the connection closed before the body was complete'));
    const cleanup = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      stream.off('aborted', onAborted);
      stream.off('close', onClose);
    };
    const onClose = (): void => {
      if (!stream.complete) onAborted();
    };
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.on('aborted', onAborted);
    stream.on('close', onClose);
  });
}

/** Fields of an OpenAI-style error body. */
export interface ErrorBody {
  /** What happened and what to do. */
  readonly message: string;
  /** OpenAI's error type: `invalid_request_error`, `permission_error`, `api_error`, ... */
  readonly type: string;
  /** Stable machine-readable code, e.g. `prefill_target_refused`. */
  readonly code: string;
  /** The offending request field or header, if one is to blame. */
  readonly param?: string | null;
  /** Extra detail (the SSRF refusal reason). */
  readonly [key: string]: unknown;
}

/**
 * Sends `{"error": {...}}` with `status`, unless the response has already started (then the
 * connection is cut: a half-sent answer must not look complete).
 *
 * @param closeConnection - add `connection: close`: the request body was not read, and reading an
 *   unbounded body only to discard it would be work an attacker chooses.
 */
export function sendError(res: ServerResponse, status: number, body: ErrorBody, closeConnection = false): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const payload = JSON.stringify({ error: { param: null, ...body } });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(payload),
  };
  if (closeConnection) headers.connection = 'close';
  res.writeHead(status, headers);
  res.end(payload);
}
