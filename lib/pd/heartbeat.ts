/**
 * Lease heartbeats: how a decode worker keeps the prefill's blocks of its pending pulls held.
 *
 * A prefill lease is short (30 s by default). While a pull is pending or queued on the decode
 * side (in the engine's queue, waiting for the handshake or for transfer capacity, or reading),
 * the decode worker POSTs a heartbeat to the prefill's side channel every few seconds, naming
 * each lease by request id and token; each one it names moves that lease's expiry to at least
 * `leaseExtensionMs` from now. A decode worker that dies sends no more heartbeats, and the blocks
 * go back to the prefill's engine within one lease, not minutes. This is the scheme vLLM's
 * NixlConnector moved to (short initial lease, heartbeats from the decode side), over kvwire's
 * signed side channel.
 *
 * Request (decode → prefill), `POST /kvwire/v1/heartbeat`, header `x-kvwire-signature`, HMAC-SHA256
 * with the shared secret under the heartbeat's own domain (a handshake signature is never valid
 * here, nor the other way round):
 * ```json
 * {"v":1,"engineId":"decode-0","nonce":"<32 hex>","ts":1732500000000,"prefill":"prefill-0",
 *  "leases":[{"req":"<remote_request_id>","lease":<remote_lease_token>}, ...]}
 * ```
 * Checks on the prefill side, in order, as for the handshake: the signature over the raw body
 * (else 401, empty body, nothing parsed); the body parses (else 400, empty); the timestamp within
 * the clock-skew window and the nonce not seen in it (else 401, empty: a replayed heartbeat
 * extends nothing). Then every lease held under that request id **with that token** is extended;
 * a lease that ended, or another token (a stale heartbeat about an earlier lease, or a guess),
 * extends nothing. Answer 200, signed over the request's nonce:
 * ```json
 * {"v":1,"engineId":"prefill-0","expiresInMs":[29998,null, ...]}
 * ```
 * one entry per lease of the request, in its order: the lease's remaining time after the
 * extension, or null when no such lease is held (the decode side then gives the pull up at once
 * rather than reading blocks that are gone).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { NonceWindow, signResponse, verifyRequest } from './handshake-auth.js';
import { MAX_ID_BYTES, MAX_LEASE_TOKEN, checkId } from './params.js';
import type { SideChannelAnswer, SideChannelHandler, SideChannelRequest } from './side-channel.js';

/** Most leases one heartbeat names (the sender splits larger sets over several heartbeats). */
export const MAX_HEARTBEAT_LEASES = 4096;

/** Largest heartbeat body a sender builds (the side channel accepts up to 64 KiB). */
export const MAX_HEARTBEAT_BODY_BYTES = 60 * 1024;

/** One lease named by a heartbeat. */
export interface HeartbeatLease {
  /** `remote_request_id`. */
  readonly requestId: string;
  /** `remote_lease_token`. */
  readonly token: number;
}

/** A heartbeat request. */
export interface HeartbeatRequest {
  /** Message version (1). */
  readonly v: 1;
  /** The decode engine's id. */
  readonly engineId: string;
  /** 16 random bytes, hex: binds the answer to this request and blocks replays. */
  readonly nonce: string;
  /** The decode side's clock, ms since the epoch. */
  readonly ts: number;
  /** The prefill engine the leases belong to (`remote_engine_id`). */
  readonly prefill: string;
  /** The leases to extend. */
  readonly leases: readonly HeartbeatLease[];
}

/** A heartbeat answer. */
export interface HeartbeatAnswer {
  /** Message version (1). */
  readonly v: 1;
  /** The prefill engine's id. */
  readonly engineId: string;
  /** Per lease of the request, in order: milliseconds left after the extension, or null when not held. */
  readonly expiresInMs: readonly (number | null)[];
}

/** The outcome of one heartbeat request, for the prefill coordinator's metrics and `'heartbeat'` event. */
export interface HeartbeatOutcome {
  /** HTTP status answered: 200, 400 or 401. */
  readonly status: number;
  /** Why it was refused: bad signature, malformed body, or a stale or replayed one. */
  readonly refused?: 'unauthorized' | 'malformed' | 'replayed';
  /** The decode engine's id, once authenticated and parsed. */
  readonly decodeEngineId?: string;
  /** Leases extended. */
  readonly extended: number;
  /** Leases named that are not held (ended, another token, or another engine's). */
  readonly unknown: number;
  /** The caller's address. */
  readonly remoteAddress?: string;
}

function malformed(what: string): KvwireError {
  return new KvwireError(ErrorCode.BAD_METADATA, `malformed heartbeat: ${what}`);
}

/** JSON text of one lease entry (also how the sender measures a heartbeat's size). */
export function heartbeatLeaseJson(l: HeartbeatLease): string {
  return JSON.stringify({ req: l.requestId, lease: l.token });
}

/**
 * Builds a heartbeat request body (and its nonce) for `leases`.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for no leases or more than {@link MAX_HEARTBEAT_LEASES}.
 */
export function buildHeartbeat(
  engineId: string,
  prefill: string,
  leases: readonly HeartbeatLease[],
): { body: Buffer; nonce: string } {
  if (leases.length === 0 || leases.length > MAX_HEARTBEAT_LEASES) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `a heartbeat names 1..${MAX_HEARTBEAT_LEASES} leases, got ${leases.length}`,
    );
  }
  const nonce = randomBytes(16).toString('hex');
  // Built by hand so the entries are exactly the strings the sender measured.
  const head = JSON.stringify({ v: 1, engineId, nonce, ts: Date.now(), prefill }).slice(0, -1);
  const body = `${head},"leases":[${leases.map(heartbeatLeaseJson).join(',')}]}`;
  return { body: Buffer.from(body, 'utf8'), nonce };
}

/**
 * Parses a heartbeat request body (after its signature was checked).
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` naming what is wrong.
 */
export function parseHeartbeat(body: Uint8Array): HeartbeatRequest {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    throw malformed('not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw malformed('not an object');
  const o = v as Record<string, unknown>;
  if (o.v !== 1) throw malformed(`version ${describeValue(o.v)}, expected 1`);
  const id = (x: unknown, field: string): string => {
    try {
      return checkId(x, field);
    } catch {
      throw malformed(`${field} is ${describeValue(x)}`);
    }
  };
  const engineId = id(o.engineId, 'engineId');
  const prefill = id(o.prefill, 'prefill');
  if (typeof o.nonce !== 'string' || !/^[0-9a-f]{32}$/.test(o.nonce)) throw malformed('nonce is not 32 hex digits');
  if (typeof o.ts !== 'number' || !Number.isFinite(o.ts)) throw malformed(`ts is ${describeValue(o.ts)}`);
  const list = o.leases;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_HEARTBEAT_LEASES)
    throw malformed(`leases must be an array of 1..${MAX_HEARTBEAT_LEASES} entries`);
  const leases: HeartbeatLease[] = [];
  for (let i = 0; i < list.length; i++) {
    const e = list[i] as unknown;
    if (e === null || typeof e !== 'object') throw malformed(`leases[${i}] is ${describeValue(e)}`);
    const { req, lease } = e as { req?: unknown; lease?: unknown };
    if (typeof req !== 'string' || req.length === 0 || Buffer.byteLength(req) > MAX_ID_BYTES)
      throw malformed(`leases[${i}].req is ${describeValue(req)}`);
    if (typeof lease !== 'number' || !Number.isSafeInteger(lease) || lease <= 0 || lease >= MAX_LEASE_TOKEN)
      throw malformed(`leases[${i}].lease is ${describeValue(lease)}`);
    leases.push({ requestId: req, token: lease });
  }
  return { v: 1, engineId, nonce: o.nonce, ts: o.ts, prefill, leases };
}

/**
 * Parses a heartbeat answer (after its signature was checked) for a request of `count` leases.
 *
 * @throws KvwireError `ERR_KVWIRE_BAD_METADATA` naming what is wrong.
 */
export function parseHeartbeatAnswer(body: Uint8Array, count: number): HeartbeatAnswer {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch {
    throw malformed('the answer is not JSON');
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw malformed('the answer is not an object');
  const o = v as Record<string, unknown>;
  if (o.v !== 1) throw malformed(`answer version ${describeValue(o.v)}, expected 1`);
  if (typeof o.engineId !== 'string') throw malformed('the answer has no engineId');
  const list = o.expiresInMs;
  if (!Array.isArray(list) || list.length !== count)
    throw malformed(`the answer's expiresInMs must list ${count} entries, one per lease`);
  for (const x of list as unknown[]) {
    if (x !== null && (typeof x !== 'number' || !Number.isFinite(x) || x < 0))
      throw malformed(`an expiresInMs entry is ${describeValue(x)}`);
  }
  return { v: 1, engineId: o.engineId, expiresInMs: list as (number | null)[] };
}

/** What the heartbeat handler needs from the prefill coordinator. */
export interface HeartbeatTarget {
  /** This prefill engine's id. */
  readonly engineId: string;
  /** Extends the lease of `requestId` if its token is `token`; returns its remaining ms, or undefined when not held. */
  extend(requestId: string, token: number): number | undefined;
}

/**
 * The side-channel handler for heartbeats of a prefill coordinator.
 *
 * @param key - the shared secret's bytes.
 * @param window - replay window (shared with the handshake's: nonces are random either way).
 */
export function prefillHeartbeatHandler(
  key: Buffer,
  window: NonceWindow,
  target: HeartbeatTarget,
  onOutcome: (o: HeartbeatOutcome) => void,
): SideChannelHandler {
  return (req: SideChannelRequest): SideChannelAnswer => {
    const remote = req.remoteAddress === undefined ? {} : { remoteAddress: req.remoteAddress };
    const refuse = (status: number, refused: HeartbeatOutcome['refused'], decodeEngineId?: string) => {
      onOutcome({
        status,
        refused,
        extended: 0,
        unknown: 0,
        ...(decodeEngineId === undefined ? {} : { decodeEngineId }),
        ...remote,
      });
      return { status };
    };
    if (!verifyRequest(key, req.body, req.signature, 'heartbeat')) return refuse(401, 'unauthorized');
    let r: HeartbeatRequest;
    try {
      r = parseHeartbeat(req.body);
    } catch {
      return refuse(400, 'malformed');
    }
    if (!window.admit(r.nonce, r.ts, Date.now())) return refuse(401, 'replayed', r.engineId);
    let extended = 0;
    // Leases of another engine id are not ours, whatever their tokens: extend nothing.
    const mine = r.prefill === target.engineId;
    const expiresInMs = r.leases.map((l) => {
      const left = mine ? target.extend(l.requestId, l.token) : undefined;
      if (left === undefined) return null;
      extended++;
      return Math.round(left);
    });
    onOutcome({ status: 200, decodeEngineId: r.engineId, extended, unknown: r.leases.length - extended, ...remote });
    const body = Buffer.from(JSON.stringify({ v: 1, engineId: target.engineId, expiresInMs }), 'utf8');
    return { status: 200, body, signature: signResponse(key, r.nonce, body, 'heartbeat') };
  };
}
