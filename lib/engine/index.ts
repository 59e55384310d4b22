/**
 * The engine layer: OpenAI-compatible prefill/decode workers over a llama.cpp or synthetic
 * runtime, KV hand-offs through lib/pd, KV events in vLLM's format. See docs/engine.md.
 *
 * @packageDocumentation
 */
export { createEngineServer, type EngineServer, type EngineServerOptions } from './create.js';
export {
  Engine,
  type EngineRole,
  type KvLoadFailurePolicy,
  type EngineRequest,
  type EngineResult,
} from './serving/engine.js';
export { KvEventPublisher, type KvEventPublisherOptions, type KvEventsFormat } from './events/kv-events.js';
export { BlockCache, type StoredBlock } from './kv/block-cache.js';
export { blockHashes, eventHash } from './kv/block-hashes.js';
export {
  GENERATED_MODEL_NAMES,
  generatedModel,
  ensureModelFile,
  defaultModelCacheDir,
  kvBytesPerToken,
} from './model/catalog.js';
export { generateModel, type GeneratedModelSpec } from './model/generate.js';
export { renderChat, chatPromptTokens, completionPromptTokens, type ChatMessage } from './http/chat-template.js';
export type { Runtime, RuntimeSequence, Sampling } from './runtimes/types.js';
