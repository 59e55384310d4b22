/**
 * KV block location index: chained prefix hashes of prompt blocks, which worker holds which block
 * (in memory or in Redis), events from coordinators and engines, and cache-aware worker choice.
 *
 * @packageDocumentation
 */
export { KvIndex } from './kv-index.js';
export type {
  EventOptions,
  EventResult,
  IndexStats,
  KvEvent,
  KvIndexOptions,
  RemovedOptions,
  StoredOptions,
} from './kv-index.js';
export { BlockHasher, BlockKeyList, DEFAULT_BLOCK_SIZE, ROOT_LABEL, isBlockKey, keyToHex } from './hash.js';
export type { BlockExtra, BlockHasherOptions, TokenIds } from './hash.js';
export { xxh64 } from './xxh64.js';
export { DEFAULT_PICK_WEIGHTS, choose, parseLoads } from './pick.js';
export type { Loads, PickCandidate, PickResult, PickWeights, WorkerLoad } from './pick.js';
export type { RedisBackendOptions } from './redis.js';
export { TIERS } from './types.js';
export type { BackendKind, BackendStats, Holder, Tier } from './types.js';
export { createKvEventsHandler, startKvEventsServer } from './events-http.js';
export type { KvEventsHandler, KvEventsHandlerOptions, KvEventsServer, KvEventsServerOptions } from './events-http.js';
export { VllmEventTranslator, VLLM_EVENT_TYPES } from './vllm-events.js';
export type { TranslatedBatch } from './vllm-events.js';
