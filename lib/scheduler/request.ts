/**
 * What the scheduler needs from an OpenAI-style request body (`/v1/completions`,
 * `/v1/chat/completions`): the model and the prompt, in the form the engine's `/tokenize` takes.
 * A body without them is a 400 with OpenAI's error shape, never a guess.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';

/** The prompt as the engine's `/tokenize` (vLLM's shape) takes it. */
export type PromptInput =
  | { readonly kind: 'text'; readonly prompt: string }
  | {
      readonly kind: 'chat';
      readonly messages: readonly unknown[];
      readonly options: Readonly<Record<string, unknown>>;
    }
  | { readonly kind: 'tokens'; readonly tokens: readonly number[] };

/** A request the scheduler can place. */
export interface InferenceRequest {
  /** The model named in the body. */
  readonly model: string;
  /** The prompt. */
  readonly input: PromptInput;
  /** Whether the client asked for a stream. */
  readonly stream: boolean;
}

/** Chat fields that change how vLLM's chat template renders the prompt, passed on to `/tokenize`. */
const CHAT_TEMPLATE_FIELDS = [
  'add_generation_prompt',
  'continue_final_message',
  'chat_template',
  'chat_template_kwargs',
  'tools',
  'documents',
  'add_special_tokens',
];

function bad(msg: string, field?: string): KvwireError {
  return new KvwireError(ErrorCode.INVALID_ARGUMENT, msg, { status: 400, ...(field !== undefined ? { field } : {}) });
}

function tokenList(v: unknown): number[] | undefined {
  if (!Array.isArray(v) || v.length === 0) return undefined;
  return v.every((t) => typeof t === 'number' && Number.isInteger(t) && t >= 0 && t < 2 ** 32)
    ? (v as number[])
    : undefined;
}

/** The routes the scheduler places; everything else goes to any healthy decode endpoint. */
export const INFERENCE_PATHS: ReadonlySet<string> = new Set(['/v1/completions', '/v1/chat/completions']);

/**
 * Reads model and prompt from a request body.
 *
 * @param path - `/v1/completions` or `/v1/chat/completions`.
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` with `details.status` 400 naming what is missing.
 */
export function parseInferenceBody(path: string, body: Buffer | string): InferenceRequest {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (e) {
    throw bad(`the request body is not valid JSON (${(e as Error).message}): send an OpenAI ${path} request`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc))
    throw bad(`the request body is ${describeValue(doc)}: send a JSON object`);
  const o = doc as Record<string, unknown>;
  if (typeof o.model !== 'string' || o.model.length === 0)
    throw bad(`model is ${describeValue(o.model)}: name the model to use`, 'model');
  const stream = o.stream === true;
  if (path === '/v1/chat/completions') {
    if (!Array.isArray(o.messages) || o.messages.length === 0)
      throw bad(
        `messages is ${describeValue(o.messages)}: a chat request has a non-empty list of messages`,
        'messages',
      );
    const options: Record<string, unknown> = {};
    for (const k of CHAT_TEMPLATE_FIELDS) if (o[k] !== undefined) options[k] = o[k];
    return { model: o.model, input: { kind: 'chat', messages: o.messages, options }, stream };
  }
  const p = o.prompt;
  if (typeof p === 'string' && p.length > 0) return { model: o.model, input: { kind: 'text', prompt: p }, stream };
  // A batch of prompts goes to one endpoint: it is placed by its first prompt.
  if (Array.isArray(p) && typeof p[0] === 'string' && p[0].length > 0)
    return { model: o.model, input: { kind: 'text', prompt: p[0] }, stream };
  const direct = tokenList(p) ?? (Array.isArray(p) ? tokenList(p[0]) : undefined);
  if (direct !== undefined) return { model: o.model, input: { kind: 'tokens', tokens: direct }, stream };
  throw bad(
    `prompt is ${describeValue(p)}: a completion request has a non-empty prompt (text, or token ids)`,
    'prompt',
  );
}
