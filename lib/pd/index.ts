/**
 * lib/pd — the prefill/decode coordinators: `kv_transfer_params`, an authenticated handshake with
 * a compatibility check, block leases with a short expiry that the decode side's heartbeats
 * extend while its pull is pending, pulls that read only the missing blocks,
 * notifications, failure policy, backpressure and metrics. See docs/pd.md.
 *
 * @packageDocumentation
 */
export { registerKvCache, type KvCacheRank, type RegisterKvCacheOptions } from './cache.js';
export {
  PrefillCoordinator,
  type BlocksFreedEvent,
  type BlocksHeldEvent,
  type HoldRequest,
  type PrefillCoordinatorOptions,
} from './prefill.js';
export {
  DecodeCoordinator,
  type DecodeBlockAllocator,
  type DecodeCoordinatorOptions,
  type FailurePolicy,
  type PullReady,
  type PullRecompute,
  type PullRequest,
  type PullResult,
} from './decode.js';
export { parseKvTransferParams, type KvTransferParams } from './params.js';
export type { BlockLease } from './lease.js';
export type { HandshakeOutcome } from './prefill-handshake.js';
export type { HeartbeatOutcome } from './heartbeat.js';
export type { HeartbeatResult, HeartbeatSentEvent } from './lease-keeper.js';
export type { SharedSecret } from './handshake-auth.js';
export { failureReason, type PullFailureReason } from './metrics.js';
export {
  DEFAULT_HEARTBEAT_INTERVAL_MS,
  DEFAULT_LEASE_EXTENSION_MS,
  DEFAULT_LEASE_MS,
  HANDSHAKE_PATH,
  HEARTBEAT_PATH,
  LEASE_TABLE_LABEL,
  LeaseSlotState,
  PD_PROTOCOL_VERSION,
  decodeLeaseMessage,
  encodeLeaseMessage,
  type FreeReason,
  type LeaseMessage,
} from './protocol.js';
