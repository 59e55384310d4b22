/**
 * kvwire: the KV-cache data plane for prefill/decode disaggregated LLM serving.
 *
 * @packageDocumentation
 */
export * from './errors.js';
export * from './transport/index.js';
export * from './kv/index.js';
export * from './pd/index.js';
export * from './kv-index/index.js';
export * from './sidecar/index.js';
export * from './engine/index.js';
export { createRegistry, defaultRegistry } from './metrics.js';
export type { MetricsRegistry } from './metrics.js';
