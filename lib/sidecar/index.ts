/**
 * The routing sidecar: a reverse proxy beside a decode worker that checks the prefill target the
 * scheduler named (SSRF allowlist, host and port), runs the prefill leg, and hands the request with
 * the prefill's `kv_transfer_params` to its decode worker (llm-d's nixlv2 flow).
 *
 * @packageDocumentation
 */
export { createSidecar, type Sidecar } from './sidecar.js';
export type { SidecarOptions, ResolvedSidecarOptions, PrefillFailurePolicy } from './options.js';
export { Allowlist, parseAllowEntry, type AllowEntry, type AllowlistOptions } from './allowlist.js';
export {
  chooseTarget,
  checkTarget,
  systemResolver,
  MAX_TARGETS,
  type CheckedTarget,
  type TargetRefusal,
  type TargetRefusalReason,
  type Resolver,
  type ResolvedAddress,
} from './target.js';
export { SidecarMetrics, type SidecarRoute, type RequestOutcome } from './metrics.js';
export { prefillRequestBody, decodeRequestBody, PD_ROUTES, type OpenAiApi } from './nixlv2.js';
export { PREFILLER_HEADER, REQUEST_ID_HEADER } from './headers.js';
export type { ServerTlsOptions, PrefillTlsOptions, Pem } from './tls.js';
