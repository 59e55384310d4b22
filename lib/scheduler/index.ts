/**
 * The scheduler: the KV-cache-aware decision and its front ends (`kvwire router`, `kvwire epp`),
 * and KV events from engines over ZMQ. Imported as `kvwire/scheduler` (apart from the main entry,
 * so that `import ... from 'kvwire'` does not load ZMQ and gRPC).
 *
 * @packageDocumentation
 */
export { checkEndpoint, checkEndpoints, destinationUrl, hostPort } from './endpoint.js';
export type { EndpointInput, EndpointRole, EndpointSpec } from './endpoint.js';
export { loadEndpointsFile, watchEndpointsFile } from './endpoints-file.js';
export { EXPLAIN_HEADER, explain } from './explain.js';
export { EXPLAIN_REQUEST_HEADER, PREFILLER_HEADER } from './headers.js';
export { parseLoad, scrapeLoad, VLLM_LOAD_METRICS } from './load-scrape.js';
export { decidePd } from './pd-decider.js';
export type { PdReason, PdVerdict } from './pd-decider.js';
export { EndpointPool } from './pool.js';
export type { EndpointPoolEvents, EndpointPoolOptions } from './pool.js';
export { INFERENCE_PATHS, parseInferenceBody } from './request.js';
export type { InferenceRequest, PromptInput } from './request.js';
export { DEFAULT_WEIGHTS, Scheduler, scorerWeights, statusOf } from './scheduler.js';
export type { CandidateScores, CandidateSource, Decision, SchedulerOptions, ScorerWeights } from './scheduler.js';
export { SESSION_HEADER, sessionEndpoint, sessionToken } from './scorers/session-affinity.js';
export { SchedulingService } from './service.js';
export type { Placement, SchedulingServiceOptions } from './service.js';
export { PromptTokenizer } from './tokenizer.js';
export type { PromptTokenizerOptions } from './tokenizer.js';
export { SCORER_NAMES, addressOf, loadOf } from './types.js';
export type { Candidate, LoadSample, ScheduleRequest, Scorer, ScorerName, ScoringContext } from './types.js';
export { startRouter } from './router/router.js';
export type { Router, RouterOptions } from './router/router.js';
export { startEpp } from './epp/server.js';
export type { Epp, EppOptions } from './epp/server.js';
export { EPP_WIRE_NAMES } from './epp/stream.js';
export type { EppWireNames } from './epp/stream.js';
export { KvEventsSubscriber } from '../kv-index/zmq-subscriber.js';
export type {
  BatchOutcome,
  KvEventsSource,
  KvEventsSubscriberOptions,
  SourceStats,
} from '../kv-index/zmq-subscriber.js';
export { decodeVllmBatch, parseTopic, readSeq, seqFrame } from '../kv-index/vllm-wire.js';
export type { VllmBatch } from '../kv-index/vllm-wire.js';
