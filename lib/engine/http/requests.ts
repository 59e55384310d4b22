/**
 * Validation of `/v1/completions`, `/v1/chat/completions` and `/tokenize` bodies into what the
 * engine runs. Every bad field answers 400 naming the field (`param`), as vLLM's pydantic models
 * do; fields kvwire does not implement are refused rather than silently ignored when they would
 * change the output (penalties, logprobs, n > 1, echo).
 *
 * @packageDocumentation
 */
import { describeValue } from '../../util/describe-value.js';
import type { Runtime, Sampling } from '../runtimes/types.js';
import { chatPromptTokens, completionPromptTokens, type ChatMessage } from './chat-template.js';
import { ApiError } from './errors.js';

/** A validated generation request. */
export interface GenerationRequest {
  /** 'completion' or 'chat'. */
  readonly kind: 'completion' | 'chat';
  /** Prompt token ids. */
  readonly prompt: number[];
  /** Most tokens to generate. */
  readonly maxTokens: number;
  /** Sampling. */
  readonly sampling: Sampling;
  /** Stream (SSE)? */
  readonly stream: boolean;
  /** stream_options.include_usage. */
  readonly includeUsage: boolean;
  /** Stop strings. */
  readonly stop: string[];
  /** ignore_eos. */
  readonly ignoreEos: boolean;
  /** vLLM's return_token_ids: add prompt_token_ids and token_ids to the answer. */
  readonly returnTokenIds: boolean;
  /** kv_transfer_params, when given. */
  readonly kvTransferParams?: Record<string, unknown>;
}

function bad(param: string, msg: string): ApiError {
  return new ApiError(400, `${param} ${msg}`, param);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function optNumber(b: Record<string, unknown>, key: string, min: number, max: number, dflt: number): number {
  const v = b[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(key, `must be a number, got ${describeValue(v)}`);
  if (v < min || v > max) throw bad(key, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function optInt(b: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw bad(key, `must be an integer, got ${describeValue(v)}`);
  if (v < min || v > max) throw bad(key, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function optBool(b: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = b[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw bad(key, `must be a boolean, got ${describeValue(v)}`);
  return v;
}

/** Checks `model` against the served name (vLLM answers 404 for another model). */
export function checkModel(b: Record<string, unknown>, served: string, required: boolean): void {
  const m = b['model'];
  if (m === undefined || m === null) {
    if (required) throw bad('model', `is required; this engine serves "${served}"`);
    return;
  }
  if (typeof m !== 'string') throw bad('model', `must be a string, got ${describeValue(m)}`);
  if (m !== served)
    throw new ApiError(404, `The model \`${m}\` does not exist. This engine serves \`${served}\`.`, 'model');
}

function tokenIds(v: unknown[], param: string): number[] {
  return v.map((t, i) => {
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) {
      throw bad(`${param}[${i}]`, `must be a token id (a non-negative integer), got ${describeValue(t)}`);
    }
    return t;
  });
}

function completionPrompt(runtime: Runtime, b: Record<string, unknown>, addSpecial: boolean): number[] {
  let p = b['prompt'];
  if (Array.isArray(p) && p.length === 1 && (typeof p[0] === 'string' || Array.isArray(p[0]))) p = p[0];
  if (typeof p === 'string') {
    if (p.length === 0) throw bad('prompt', 'must not be empty');
    return completionPromptTokens(runtime, p, addSpecial);
  }
  if (Array.isArray(p)) {
    if (p.length === 0) throw bad('prompt', 'must not be empty');
    if (p.every((x) => typeof x === 'number')) return tokenIds(p, 'prompt');
    throw bad(
      'prompt',
      'must be a string, one string in an array, or an array of token ids (kvwire serves one prompt per request)',
    );
  }
  throw bad('prompt', `must be a string or an array of token ids, got ${describeValue(p)}`);
}

const ROLES = new Set(['system', 'user', 'assistant', 'tool', 'developer']);

function chatMessages(b: Record<string, unknown>): ChatMessage[] {
  const ms = b['messages'];
  if (!Array.isArray(ms) || ms.length === 0)
    throw bad('messages', `must be a non-empty array of messages, got ${describeValue(ms)}`);
  return ms.map((m, i) => {
    const where = `messages[${i}]`;
    if (!isObject(m)) throw bad(where, `must be an object {role, content}, got ${describeValue(m)}`);
    const role = m['role'];
    if (typeof role !== 'string' || !ROLES.has(role)) {
      throw bad(`${where}.role`, `must be one of ${[...ROLES].join(', ')}, got ${describeValue(role)}`);
    }
    const c = m['content'];
    if (typeof c === 'string') return { role, content: c };
    if (c === null || c === undefined) return { role, content: '' };
    if (Array.isArray(c)) {
      const parts = c.map((part, j) => {
        if (!isObject(part) || part['type'] !== 'text' || typeof part['text'] !== 'string') {
          throw bad(`${where}.content[${j}]`, 'must be {"type": "text", "text": string} (this engine takes text only)');
        }
        return part['text'];
      });
      return { role, content: parts.join('') };
    }
    throw bad(`${where}.content`, `must be a string or an array of text parts, got ${describeValue(c)}`);
  });
}

function refuseUnsupported(b: Record<string, unknown>): void {
  for (const key of ['presence_penalty', 'frequency_penalty', 'repetition_penalty']) {
    const v = b[key];
    if (v !== undefined && v !== null && v !== 0 && !(key === 'repetition_penalty' && v === 1)) {
      throw bad(key, `is not supported by the kvwire engine (got ${describeValue(v)}); leave it out`);
    }
  }
  const n = b['n'];
  if (n !== undefined && n !== null && n !== 1)
    throw bad('n', `must be 1 (the kvwire engine returns one choice), got ${describeValue(n)}`);
  for (const key of [
    'logprobs',
    'top_logprobs',
    'prompt_logprobs',
    'echo',
    'best_of',
    'tools',
    'response_format',
    'suffix',
  ]) {
    const v = b[key];
    if (v !== undefined && v !== null && v !== false)
      throw bad(key, 'is not supported by the kvwire engine; leave it out');
  }
}

function stopStrings(b: Record<string, unknown>): string[] {
  const s = b['stop'];
  if (s === undefined || s === null) return [];
  const list = typeof s === 'string' ? [s] : s;
  if (!Array.isArray(list) || list.length > 16 || !list.every((x) => typeof x === 'string' && x.length > 0)) {
    throw bad('stop', `must be a non-empty string or an array of up to 16 non-empty strings, got ${describeValue(s)}`);
  }
  return list as string[];
}

/**
 * Validates a generation body.
 *
 * @throws ApiError 400 (or 404 for another model).
 */
export function parseGenerationRequest(
  kind: 'completion' | 'chat',
  body: unknown,
  runtime: Runtime,
  servedModelName: string,
): GenerationRequest {
  if (!isObject(body)) throw bad('body', `must be a JSON object, got ${describeValue(body)}`);
  checkModel(body, servedModelName, false);
  refuseUnsupported(body);
  const prompt =
    kind === 'chat'
      ? chatPromptTokens(runtime, chatMessages(body), optBool(body, 'add_generation_prompt', true))
      : completionPrompt(runtime, body, optBool(body, 'add_special_tokens', true));
  const maxLen = runtime.maxModelLen;
  if (prompt.length >= maxLen) {
    throw bad(
      kind === 'chat' ? 'messages' : 'prompt',
      `has ${prompt.length} tokens; this model's maximum context length is ${maxLen} tokens, which leaves no room to generate`,
    );
  }
  const maxKey =
    kind === 'chat' && body['max_completion_tokens'] !== undefined ? 'max_completion_tokens' : 'max_tokens';
  const requested = optInt(body, maxKey, 1, Number.MAX_SAFE_INTEGER);
  const maxTokens = requested ?? (kind === 'chat' ? maxLen - prompt.length : Math.min(16, maxLen - prompt.length));
  if (prompt.length + maxTokens > maxLen) {
    throw bad(
      maxKey,
      `is ${maxTokens}: this model's maximum context length is ${maxLen} tokens, and the prompt has ${prompt.length}; ask for at most ${maxLen - prompt.length}`,
    );
  }
  const temperature = optNumber(body, 'temperature', 0, 2, 1);
  const topP = optNumber(body, 'top_p', 1e-9, 1, 1);
  const topK = optInt(body, 'top_k', -1, 1_000_000) ?? 0;
  const seed = optInt(body, 'seed', -(2 ** 53) + 1, 2 ** 53 - 1);
  const stream = optBool(body, 'stream', false);
  const so = body['stream_options'];
  if (so !== undefined && so !== null && !isObject(so))
    throw bad('stream_options', `must be an object, got ${describeValue(so)}`);
  if (isObject(so) && !stream) throw bad('stream_options', 'is only allowed when stream is true');
  const includeUsage = isObject(so) ? optBool(so, 'include_usage', false) : false;
  const kv = body['kv_transfer_params'];
  if (kv !== undefined && kv !== null && !isObject(kv)) {
    throw bad('kv_transfer_params', `must be an object, got ${describeValue(kv)}`);
  }
  if (isObject(kv)) {
    for (const flag of ['do_remote_decode', 'do_remote_prefill']) {
      const v = kv[flag];
      if (v !== undefined && v !== null && typeof v !== 'boolean') {
        throw bad(`kv_transfer_params.${flag}`, `must be a boolean, got ${describeValue(v)}`);
      }
    }
    if (kv['do_remote_decode'] === true && kv['do_remote_prefill'] === true) {
      throw bad('kv_transfer_params', 'cannot ask for both do_remote_decode and do_remote_prefill');
    }
  }
  return {
    kind,
    prompt,
    maxTokens,
    sampling: { temperature, topP, topK: topK < 0 ? 0 : topK, ...(seed === undefined ? {} : { seed }) },
    stream,
    includeUsage,
    stop: stopStrings(body),
    ignoreEos: optBool(body, 'ignore_eos', false),
    returnTokenIds: optBool(body, 'return_token_ids', false),
    ...(isObject(kv) ? { kvTransferParams: kv } : {}),
  };
}

/** Validates a `/tokenize` body and returns its token ids (vLLM's shape). */
export function parseTokenizeRequest(body: unknown, runtime: Runtime, servedModelName: string): number[] {
  if (!isObject(body)) throw bad('body', `must be a JSON object, got ${describeValue(body)}`);
  checkModel(body, servedModelName, false);
  if (body['messages'] !== undefined) {
    // vLLM's chat form: add_special_tokens defaults to false (the template carries BOS).
    return chatPromptTokens(runtime, chatMessages(body), optBool(body, 'add_generation_prompt', true));
  }
  const p = body['prompt'];
  if (typeof p !== 'string') throw bad('prompt', `must be a string (or send messages), got ${describeValue(p)}`);
  return completionPromptTokens(runtime, p, optBool(body, 'add_special_tokens', true));
}
