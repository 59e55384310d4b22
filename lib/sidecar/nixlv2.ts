/**
 * The bodies of llm-d's "nixlv2" P/D flow, as vLLM's NixlConnector expects them.
 *
 * - Prefill leg: the client's body with `kv_transfer_params` asking for a remote decode, no
 *   streaming, one token (the prefill computes the prompt's KV and holds it; the token is waste).
 * - Decode leg: the client's body as sent (stream, token limits) plus the `kv_transfer_params` the
 *   prefill answered with, which tell the decode worker where to pull the KV from.
 *
 * Pure functions over parsed JSON; the HTTP legs are in prefill-leg.ts and decode-leg.ts.
 *
 * @packageDocumentation
 */

/** The two OpenAI endpoints that run the P/D flow. */
export type OpenAiApi = 'chat' | 'completions';

/** Paths of the P/D routes and the API each one is. */
export const PD_ROUTES: ReadonlyMap<string, OpenAiApi> = new Map([
  ['/v1/chat/completions', 'chat'],
  ['/v1/completions', 'completions'],
]);

/** A JSON object (a parsed request or response body). */
export type JsonObject = Record<string, unknown>;

/** The field that carries P/D parameters between sidecar and workers (vLLM's name). */
export const KV_TRANSFER_PARAMS = 'kv_transfer_params';

/**
 * The prefill leg's body: `original` with `kv_transfer_params` {do_remote_decode: true,
 * do_remote_prefill: false, remote fields null}, `stream: false`, `max_tokens: 1` (and
 * `max_completion_tokens: 1` for chat, or when the client sent it), and without `stream_options`
 * and `min_tokens` (a minimum above one token would contradict the limit).
 */
export function prefillRequestBody(original: JsonObject, api: OpenAiApi): JsonObject {
  const body: JsonObject = {
    ...original,
    [KV_TRANSFER_PARAMS]: {
      do_remote_decode: true,
      do_remote_prefill: false,
      remote_engine_id: null,
      remote_request_id: null,
      remote_block_ids: null,
      remote_host: null,
      remote_port: null,
    },
    stream: false,
    max_tokens: 1,
  };
  // The completions API has no max_completion_tokens; adding it could make a strict server refuse
  // the request, so only set it where the API has it or the client used it.
  if (api === 'chat' || 'max_completion_tokens' in original) body.max_completion_tokens = 1;
  delete body.stream_options;
  delete body.min_tokens;
  return body;
}

/** The decode leg's body: `original` as the client sent it, plus the prefill's parameters. */
export function decodeRequestBody(original: JsonObject, kvTransferParams: JsonObject): JsonObject {
  return { ...original, [KV_TRANSFER_PARAMS]: kvTransferParams };
}

/** True for a plain JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `usage.prompt_tokens_details.cached_tokens` of a response, or undefined when absent or not a
 * non-negative integer.
 */
export function cachedTokensOf(response: JsonObject): number | undefined {
  const usage = response.usage;
  if (!isJsonObject(usage)) return undefined;
  const details = usage.prompt_tokens_details;
  if (!isJsonObject(details)) return undefined;
  const n = details.cached_tokens;
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/**
 * Sets `usage.prompt_tokens_details.cached_tokens` in place (creating `prompt_tokens_details`
 * when missing). Returns false when `usage` is not an object (no usage to merge into).
 *
 * Why set, not add: the decode worker counts the prompt tokens whose KV it received from the
 * prefill as cached (vLLM does the same: tokens a KV connector loads are "computed" tokens), so
 * its figure is nearly the whole prompt on every P/D request; adding the prefill's figure would
 * count the prefill's cache hits twice (measured with kvwire engines: 128 + 134 = 262 cached
 * tokens for a 135-token prompt). The prefill's figure is what the client is owed: the prompt
 * tokens neither worker computed, as a single worker reports them.
 */
export function setCachedTokens(usage: unknown, cached: number): boolean {
  if (!isJsonObject(usage)) return false;
  let details = usage.prompt_tokens_details;
  if (!isJsonObject(details)) {
    details = {};
    usage.prompt_tokens_details = details;
  }
  (details as JsonObject).cached_tokens = cached;
  return true;
}

const MARKER_FIELD = Buffer.from(KV_TRANSFER_PARAMS);
const MARKER_ESCAPE = Buffer.from('\\u');

/** What {@link withoutClientKvParams} decided. */
export type ClientParamsCheck =
  | { readonly kind: 'unchanged' }
  | { readonly kind: 'stripped'; readonly body: Buffer }
  | { readonly kind: 'unparseable' };

/**
 * Removes `kv_transfer_params` a client put in a decode-only request body.
 *
 * Those parameters name the host a decode worker connects to for KV (`remote_host`,
 * `remote_port`): passed through, they would let any client point the worker anywhere, around the
 * allowlist. Only parameters from a prefill the sidecar checked may reach the decode worker.
 *
 * Fast path: a key spelled `kv_transfer_params` must appear literally in the bytes unless it is
 * written with `\u` escapes (the only JSON escape that yields a letter), so a body with neither
 * is passed on without parsing.
 */
export function withoutClientKvParams(raw: Buffer): ClientParamsCheck {
  if (raw.indexOf(MARKER_FIELD) < 0 && raw.indexOf(MARKER_ESCAPE) < 0) return { kind: 'unchanged' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch {
    // A worker's JSON parser may accept what ours does not (NaN, Infinity); forwarding a body that
    // might carry the field unseen would reopen the hole.
    return { kind: 'unparseable' };
  }
  if (!isJsonObject(parsed) || !(KV_TRANSFER_PARAMS in parsed)) return { kind: 'unchanged' };
  delete parsed[KV_TRANSFER_PARAMS];
  return { kind: 'stripped', body: Buffer.from(JSON.stringify(parsed)) };
}
