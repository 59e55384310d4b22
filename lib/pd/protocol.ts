/**
 * The P/D protocol's constants and the notifications the decode side sends to the prefill side.
 *
 * Notifications are small JSON objects (UTF-8):
 * - `{"kvwire":"done","req":"<remote_request_id>","lease":<token>}` — the decode side read the
 *   blocks; it rides on the last READ, so it arrives only after every byte landed (as vLLM's
 *   NixlConnector does). The prefill frees the blocks (reason `'notified'`).
 * - `{"kvwire":"abort","req":"<remote_request_id>","lease":<token>}` — the decode side gave up
 *   (cancelled, failed, timed out); the prefill frees the blocks (reason `'cancelled'`).
 *
 * The lease token (random, 48 bits, only ever sent to whoever got the `kv_transfer_params`) must
 * match the lease held under that request id: a late or forged message frees nothing.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { MAX_ID_BYTES, MAX_LEASE_TOKEN } from './params.js';

/** Version of the P/D protocol: part of the compatibility hash, so mismatched peers refuse each other. */
export const PD_PROTOCOL_VERSION = 1;

/** HTTP path of the handshake on the prefill's side channel. */
export const HANDSHAKE_PATH = '/kvwire/v1/handshake';

/** Label of the lease table region every prefill rank agent exports. */
export const LEASE_TABLE_LABEL = 'kvwire-leases';

/** Bytes per lease table slot: two float64s, the token and the {@link LeaseSlotState}. */
export const LEASE_SLOT_BYTES = 16;

/** HTTP path of lease heartbeats on the prefill's side channel (see `heartbeat.ts`). */
export const HEARTBEAT_PATH = '/kvwire/v1/heartbeat';

/**
 * Default base lease: 30 s. A lease the decode side keeps alive with heartbeats lasts as long as
 * its pull is pending; one nobody heartbeats (its decode worker died) frees its blocks 30 s after
 * the hold, where vLLM's old fixed `VLLM_NIXL_ABORT_REQUEST_TIMEOUT` (480 s) stranded them for
 * eight minutes. vLLM's NixlConnector moved to the same scheme (a short initial lease, extended by
 * the decode side's heartbeats).
 */
export const DEFAULT_LEASE_MS = 30_000;

/** Default extension of a lease by each heartbeat: it then expires this long after the heartbeat. */
export const DEFAULT_LEASE_EXTENSION_MS = 30_000;

/**
 * Default interval of the decode side's heartbeats: six chances per default lease, so a lost or
 * late heartbeat or two never lets a lease lapse under a pull that is still pending.
 */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

/**
 * State word of a lease table slot. A slot keeps the token and final state of its last lease
 * until the slot is reused (slots are reused least recently freed first), so a decode side that
 * reads it late can tell why its blocks went away.
 */
export const LeaseSlotState = {
  /** Never used. */
  EMPTY: 0,
  /** Held: the blocks are valid. */
  HELD: 1,
  /** Freed after the decode side's done notification. */
  NOTIFIED: 2,
  /** Freed because the lease expired. */
  EXPIRED: 3,
  /** Freed because either side cancelled. */
  CANCELLED: 4,
  /** Freed because the prefill coordinator closed. */
  CLOSED: 5,
} as const;

/** One of the {@link LeaseSlotState} values. */
export type LeaseSlotStateValue = (typeof LeaseSlotState)[keyof typeof LeaseSlotState];

/** Why a prefill lease ended and its blocks went back to the engine. */
export type FreeReason = 'notified' | 'expired' | 'cancelled' | 'closed';

/** The slot state recorded for each {@link FreeReason}. */
export const FREE_REASON_STATE: Readonly<Record<FreeReason, LeaseSlotStateValue>> = Object.freeze({
  notified: LeaseSlotState.NOTIFIED,
  expired: LeaseSlotState.EXPIRED,
  cancelled: LeaseSlotState.CANCELLED,
  closed: LeaseSlotState.CLOSED,
});

/** A decoded decode → prefill notification. */
export interface LeaseMessage {
  /** 'done' (blocks read) or 'abort' (the decode side gave up). */
  readonly kind: 'done' | 'abort';
  /** The prefill-side request id. */
  readonly requestId: string;
  /** The lease token from `kv_transfer_params.remote_lease_token`. */
  readonly token: number;
}

/** Encodes a {@link LeaseMessage} as the notification bytes' text. */
export function encodeLeaseMessage(m: LeaseMessage): string {
  if (
    m === null ||
    typeof m !== 'object' ||
    (m.kind !== 'done' && m.kind !== 'abort') ||
    typeof m.requestId !== 'string'
  ) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `a lease message is { kind: 'done' | 'abort', requestId, token }, not ${describeValue(m)}`,
    );
  }
  if (!Number.isSafeInteger(m.token) || m.token <= 0 || m.token >= MAX_LEASE_TOKEN) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `a lease token is an integer in [1, 2^48), not ${describeValue(m.token)}`,
    );
  }
  return JSON.stringify({ kvwire: m.kind, req: m.requestId, lease: m.token });
}

/**
 * Decodes notification bytes into a {@link LeaseMessage}, or `undefined` when they are not one
 * (other users of the agent send their own notifications; those are left alone).
 */
export function decodeLeaseMessage(bytes: Uint8Array): LeaseMessage | undefined {
  if (!(bytes instanceof Uint8Array)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `notification bytes must be a Uint8Array, not ${describeValue(bytes)}`,
    );
  }
  // Cheap filter before JSON.parse: ours start with '{"kvwire":'.
  if (bytes.byteLength < 12 || bytes.byteLength > MAX_ID_BYTES * 6 + 128 || bytes[0] !== 0x7b || bytes[2] !== 0x6b)
    return undefined;
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as { kvwire?: unknown; req?: unknown; lease?: unknown };
  if (o.kvwire !== 'done' && o.kvwire !== 'abort') return undefined;
  if (typeof o.req !== 'string' || o.req.length === 0) return undefined;
  if (typeof o.lease !== 'number' || !Number.isSafeInteger(o.lease) || o.lease <= 0 || o.lease >= MAX_LEASE_TOKEN)
    return undefined;
  return { kind: o.kvwire, requestId: o.req, token: o.lease };
}
