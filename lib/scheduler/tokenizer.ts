/**
 * Prompt token ids from the engine's own tokenizer: `POST <engine>/tokenize` in vLLM's shape
 * (`{model, prompt}` or `{model, messages, ...}` in, `{count, max_model_len, tokens}` out), so the
 * scheduler hashes exactly the blocks the engine hashes. Never a guess: when no engine answers, the
 * caller gets an error and places the request without prefix scores.
 *
 * Answers are cached (LRU, by model and prompt) and concurrent identical requests share one call.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { PromptInput } from './request.js';

/** Options of {@link PromptTokenizer}. */
export interface PromptTokenizerOptions {
  /** Prompts remembered. Default 4,096. */
  readonly cacheEntries?: number;
  /** Token ids remembered over all prompts (4 bytes each). Default 8,388,608 (32 MiB). */
  readonly cacheTokens?: number;
  /** Deadline of one `/tokenize` call, in ms. Default 2,000. */
  readonly timeoutMs?: number;
  /** Called with `hit`, `miss` or `error` for each call (metrics). */
  readonly onResult?: (result: 'hit' | 'miss' | 'error') => void;
}

/** See the module documentation. */
export class PromptTokenizer {
  private readonly cache = new Map<string, Uint32Array>();
  private readonly pending = new Map<string, Promise<Uint32Array>>();
  private readonly max: number;
  private readonly maxTokens: number;
  private tokens = 0;
  private readonly timeoutMs: number;

  /** @param options - cache size, deadline, metrics hook. */
  constructor(private readonly options: PromptTokenizerOptions = {}) {
    this.max = options.cacheEntries ?? 4_096;
    this.maxTokens = options.cacheTokens ?? 8 * 1024 * 1024;
    this.timeoutMs = options.timeoutMs ?? 2_000;
  }

  /** Prompts in the cache. */
  get size(): number {
    return this.cache.size;
  }

  /**
   * The token ids of `input` for `model`, asking the engines at `urls` in order until one answers.
   *
   * @throws KvwireError `ERR_KVWIRE_BACKEND_UNAVAILABLE` when none answers with token ids.
   */
  async tokenize(urls: readonly string[], model: string, input: PromptInput): Promise<Uint32Array> {
    if (input.kind === 'tokens') return Uint32Array.from(input.tokens);
    const body =
      input.kind === 'text' ? { model, prompt: input.prompt } : { model, messages: input.messages, ...input.options };
    const key = JSON.stringify(body);
    const hit = this.cache.get(key);
    if (hit !== undefined) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      this.options.onResult?.('hit');
      return hit;
    }
    let p = this.pending.get(key);
    if (p === undefined) {
      p = this.ask(urls, key).finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    try {
      const tokens = await p;
      this.options.onResult?.('miss');
      return tokens;
    } catch (e) {
      this.options.onResult?.('error');
      throw e;
    }
  }

  private async ask(urls: readonly string[], body: string): Promise<Uint32Array> {
    const errors: string[] = [];
    for (const url of urls.slice(0, 2)) {
      try {
        const res = await fetch(`${url}/tokenize`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        const text = await res.text();
        if (res.status !== 200) {
          errors.push(`${url}/tokenize answered ${res.status}: ${text.slice(0, 200)}`);
          continue;
        }
        const doc = JSON.parse(text) as { tokens?: unknown };
        const t = doc?.tokens;
        if (
          !Array.isArray(t) ||
          !t.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x < 2 ** 32)
        ) {
          errors.push(`${url}/tokenize answered without a list of token ids`);
          continue;
        }
        const tokens = Uint32Array.from(t as number[]);
        this.cache.set(body, tokens);
        this.tokens += tokens.length;
        // Both bounds: a few huge prompts must not hold gigabytes.
        while (this.cache.size > this.max || (this.tokens > this.maxTokens && this.cache.size > 1)) {
          const [k, v] = this.cache.entries().next().value!;
          this.cache.delete(k);
          this.tokens -= v.length;
        }
        return tokens;
      } catch (e) {
        errors.push(`${url}/tokenize failed: ${(e as Error).message}`);
      }
    }
    throw new KvwireError(
      ErrorCode.BACKEND_UNAVAILABLE,
      `could not tokenize the prompt (${errors.join('; ') || 'no healthy engine serves the model'}): the request is placed without prefix scores`,
    );
  }
}
