/**
 * The transport: agents, regions, peers, transfers, notifications, capabilities.
 *
 * @packageDocumentation
 */
export { Agent } from './agent.js';
export { Region, RemoteRegion } from './region.js';
export { Peer } from './peer.js';
export type { PeerState } from './peer.js';
export { Transfer, PreparedTransfer } from './transfer.js';
export { capabilities, kvwireVersion } from './capabilities.js';
export type { Capabilities, UcxTransport } from './capabilities.js';
export { decodeMetadata, encodeMetadata, verifyMetadata, METADATA_VERSION, METADATA_LIMITS } from './metadata.js';
export { SECRET_ENV, deriveKey } from './auth.js';
export type { AgentAuthOptions, AgentSecret, AuthKey } from './auth.js';
export { decodeGrant, encodeGrant, checkGrant } from './grant.js';
export type { Grant, GrantedRegion } from './grant.js';
export { decodeDeviceKey, encodeDeviceKey } from './device-key.js';
export type { DeviceKey } from './device-key.js';
export type { AgentDescription, RegionDescription } from './metadata.js';
export type { LoopbackFaults, LoopbackFaultSpec } from './loopback.js';
export type { NotificationIteratorOptions, WaitOptions } from './notifications.js';
export { processIdentity } from './identity.js';
export { cuda, CudaAllocation } from './cuda.js';
export type { CudaBaseline, CudaDevice, CudaMemory } from './cuda.js';
export type { ProcessIdentity } from './identity.js';
export type * from './types.js';
