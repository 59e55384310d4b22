/**
 * The decode side's HTTP call to a prefill's side channel: one POST with a deadline, a bounded
 * answer, and every failure mapped to a typed error.
 *
 * @packageDocumentation
 */
import { request } from 'node:http';
import { ErrorCode, KvwireError } from '../errors.js';
import { SIGNATURE_HEADER } from './handshake-auth.js';
import { HANDSHAKE_PATH } from './protocol.js';
import { formatCount } from '../util/format.js';

/** Largest handshake answer accepted (metadata of many regions and ranks). */
export const MAX_HANDSHAKE_ANSWER_BYTES = 16 * 1024 * 1024;

/** What the side channel answered. */
export interface SideChannelReply {
  /** HTTP status. */
  readonly status: number;
  /** The body, unparsed. */
  readonly body: Buffer;
  /** The signature header, if any. */
  readonly signature: string | undefined;
}

/** A handshake (or heartbeat) call. */
export interface SideChannelCall {
  /** The path; default the handshake's. */
  readonly path?: string;
  /** What the call is, for messages; default 'handshake'. */
  readonly what?: string;
  /** The side channel's host. */
  readonly host: string;
  /** The side channel's port. */
  readonly port: number;
  /** The signed request body. */
  readonly body: Buffer;
  /** Its signature header value. */
  readonly signature: string;
  /** Deadline of the whole call (connect, send, answer). */
  readonly timeoutMs: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

/**
 * POSTs a handshake to `host:port` and returns the answer.
 *
 * @throws KvwireError `ERR_KVWIRE_TIMEOUT` past the deadline, `ERR_KVWIRE_CANCELLED` when
 *   aborted, `ERR_KVWIRE_PEER_UNREACHABLE` when the side channel cannot be reached or hangs up,
 *   `ERR_KVWIRE_BAD_METADATA` for an answer over {@link MAX_HANDSHAKE_ANSWER_BYTES}.
 */
export function postHandshake(call: SideChannelCall): Promise<SideChannelReply> {
  const where = `${call.host.includes(':') ? `[${call.host}]` : call.host}:${call.port}`;
  const what = call.what ?? 'handshake';
  return new Promise<SideChannelReply>((resolve, reject) => {
    let settled = false;
    const finish = (e: KvwireError | undefined, reply?: SideChannelReply) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      call.signal?.removeEventListener('abort', onAbort);
      if (e !== undefined) {
        req.destroy();
        reject(e);
      } else resolve(reply!);
    };
    let req: ReturnType<typeof request>;
    try {
      req = request({
        host: call.host,
        port: call.port,
        method: 'POST',
        path: call.path ?? HANDSHAKE_PATH,
        agent: false,
        headers: {
          'content-type': 'application/json',
          'content-length': call.body.byteLength,
          [SIGNATURE_HEADER]: call.signature,
        },
      });
    } catch (e) {
      // node:http refuses some host strings synchronously (e.g. control characters).
      reject(
        new KvwireError(
          ErrorCode.PEER_UNREACHABLE,
          `the prefill side channel at ${where} cannot be addressed: ${(e as Error).message}`,
        ),
      );
      return;
    }
    const timer = setTimeout(
      () =>
        finish(
          new KvwireError(
            ErrorCode.TIMEOUT,
            `the ${what} with the prefill side channel at ${where} did not finish within ${call.timeoutMs} ms; check that the prefill worker is up and reachable${what === 'handshake' ? ', or raise handshakeTimeoutMs' : ''}`,
          ),
        ),
      call.timeoutMs,
    );
    const onAbort = () => finish(new KvwireError(ErrorCode.CANCELLED, `the ${what} with ${where} was aborted`));
    if (call.signal?.aborted) {
      onAbort();
      return;
    }
    call.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? '';
      finish(
        new KvwireError(
          ErrorCode.PEER_UNREACHABLE,
          `the prefill side channel at ${where} cannot be reached (${code || e.message}); check remote_host/remote_port and that the prefill worker is running`,
          { engineStatus: code },
        ),
      );
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.byteLength;
        if (size > MAX_HANDSHAKE_ANSWER_BYTES) {
          finish(
            new KvwireError(
              ErrorCode.BAD_METADATA,
              `the side channel at ${where} answered more than ${formatCount(MAX_HANDSHAKE_ANSWER_BYTES)} bytes; it is not a kvwire prefill side channel`,
            ),
          );
          return;
        }
        chunks.push(c);
      });
      res.on('error', () =>
        finish(new KvwireError(ErrorCode.PEER_UNREACHABLE, `the side channel at ${where} hung up while answering`)),
      );
      res.on('aborted', () =>
        finish(new KvwireError(ErrorCode.PEER_UNREACHABLE, `the side channel at ${where} hung up while answering`)),
      );
      res.on('end', () => {
        const sig = res.headers[SIGNATURE_HEADER];
        finish(undefined, {
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks),
          signature: typeof sig === 'string' ? sig : undefined,
        });
      });
    });
    req.end(call.body);
  });
}
