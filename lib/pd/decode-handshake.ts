/**
 * The decode side of the handshake: one signed request to the prefill's side channel, and an
 * answer that is trusted only when it is signed over this request's nonce and compatible.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { assertCompatible, type KvCompatibilityFields } from '../kv/index.js';
import { signRequest, verifyResponse } from './handshake-auth.js';
import { buildHandshakeRequest, parseCompatFields, parseHandshakeAnswer, type HandshakeAnswer } from './handshake.js';
import { postHandshake } from './side-channel-client.js';

/** A handshake to run. */
export interface HandshakeCall {
  /** The side channel's host. */
  readonly host: string;
  /** The side channel's port. */
  readonly port: number;
  /** The prefill engine id the caller expects to find there. */
  readonly expectEngineId: string;
  /** This decode engine's id. */
  readonly engineId: string;
  /** This decode engine's compatibility fields. */
  readonly compat: KvCompatibilityFields;
  /** The shared secret's bytes. */
  readonly key: Buffer;
  /** Deadline of the HTTP exchange. */
  readonly timeoutMs: number;
  /** Cancels it. */
  readonly signal?: AbortSignal;
}

/**
 * Runs the handshake and returns the verified answer.
 *
 * @throws KvwireError `ERR_KVWIRE_UNAUTHORIZED` (401, or an answer not signed with the secret),
 *   `ERR_KVWIRE_INCOMPATIBLE` naming the differing field (409, or an answer whose fields differ),
 *   `ERR_KVWIRE_BAD_METADATA` (malformed answer, or another engine behind that address),
 *   `ERR_KVWIRE_PEER_UNREACHABLE`, `ERR_KVWIRE_TIMEOUT`, `ERR_KVWIRE_CANCELLED`.
 */
export async function requestHandshake(call: HandshakeCall): Promise<HandshakeAnswer> {
  const where = `${call.host}:${call.port}`;
  const { body, nonce } = buildHandshakeRequest(call.engineId, call.compat);
  const reply = await postHandshake({
    host: call.host,
    port: call.port,
    body,
    signature: signRequest(call.key, body),
    timeoutMs: call.timeoutMs,
    ...(call.signal === undefined ? {} : { signal: call.signal }),
  });
  const signed = () => verifyResponse(call.key, nonce, reply.body, reply.signature);
  switch (reply.status) {
    case 200:
      break;
    case 401:
      throw new KvwireError(
        ErrorCode.UNAUTHORIZED,
        `the prefill side channel at ${where} refused the handshake (401): the shared secret differs, or the two hosts' clocks differ by more than the allowed skew; give both workers the same secret`,
      );
    case 409: {
      if (!signed()) throw unsignedAnswer(where);
      let prefill: KvCompatibilityFields;
      let field: unknown;
      try {
        const o = JSON.parse(reply.body.toString('utf8')) as { field?: unknown; compat?: unknown };
        field = o.field;
        prefill = parseCompatFields(o.compat);
      } catch (e) {
        throw new KvwireError(
          ErrorCode.INCOMPATIBLE,
          `the prefill at ${where} says this decode worker is incompatible, but its answer is malformed (${(e as Error).message})`,
        );
      }
      assertCompatible(prefill, call.compat);
      // Equal fields here but not there: versions disagree on what the fields mean.
      throw new KvwireError(
        ErrorCode.INCOMPATIBLE,
        `the prefill at ${where} says ${String(field)} differs; upgrade both workers to the same kvwire version`,
        { field: String(field) },
      );
    }
    case 400:
      throw new KvwireError(
        ErrorCode.BAD_METADATA,
        `the prefill side channel at ${where} could not read this handshake request (400); upgrade both workers to the same kvwire version`,
      );
    default:
      throw new KvwireError(
        ErrorCode.PEER_UNREACHABLE,
        `the side channel at ${where} answered HTTP ${reply.status}; check that remote_host/remote_port point at a kvwire prefill worker`,
        { engineStatus: String(reply.status) },
      );
  }
  if (!signed()) throw unsignedAnswer(where);
  const answer = parseHandshakeAnswer(reply.body);
  if (answer.engineId !== call.expectEngineId) {
    throw new KvwireError(
      ErrorCode.BAD_METADATA,
      `the side channel at ${where} belongs to prefill engine '${answer.engineId}', not '${call.expectEngineId}'; the kv_transfer_params point at the wrong worker`,
      { field: 'remote_engine_id' },
    );
  }
  assertCompatible(answer.compat, call.compat);
  return answer;
}

function unsignedAnswer(where: string): KvwireError {
  return new KvwireError(
    ErrorCode.UNAUTHORIZED,
    `the answer from ${where} is not signed with the shared secret for this request; whatever answers there is not a prefill worker holding the secret`,
  );
}
