/**
 * The `synthetic` runtime: no model math, real model shapes (Llama-3-8B by default: 32 layers,
 * 8 KV heads of 128 bf16 values, 2 MiB per 16-token block), every byte checked. Its "prefill"
 * writes bytes that are a pure function of the prompt prefix into the blocks (`content.ts`), its
 * KV loads check every byte of every block against that function, and it "generates" tokens from
 * the prompt's chained hash. It exercises the data plane at production scale behind the same
 * engine, API and P/D path as the llama runtime.
 *
 * Tokens: one per UTF-8 byte (id = byte + 3), BOS 1, EOS 2; generated tokens are lower-case
 * letters and spaces.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../../errors.js';
import { kvPreset, type KvPresetName, type ModelShape } from '../../../kv/index.js';
import type { KvBlockViews, Runtime, RuntimeSequence } from '../types.js';
import { blockHashes, verifyBlock, writeBlock } from './content.js';

/** Options of {@link createSyntheticRuntime}. */
export interface SyntheticRuntimeOptions {
  /** KV preset (`llama-3-8b` ...). */
  readonly model: string;
  /** Override the preset's layer count (smaller caches for tests). */
  readonly layers?: number;
  /** Compute slots. */
  readonly slots: number;
  /** Longest prompt + completion; default 8192. */
  readonly maxModelLen?: number;
  /** Load zeros instead of checking (negative control): every load then fails its check. */
  readonly discardLoadedKv?: boolean;
}

const LETTERS = ' abcdefghijklmnopqrstuvwxyz eaoitn';

function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Creates the synthetic runtime. */
export function createSyntheticRuntime(o: SyntheticRuntimeOptions): Runtime {
  const preset = kvPreset(o.model as KvPresetName);
  if (preset.attention === 'mla') {
    throw new KvwireError(ErrorCode.UNSUPPORTED, `the synthetic runtime serves MHA presets; ${o.model} uses MLA`, {
      field: 'model',
    });
  }
  const shape: ModelShape = { ...preset, ...(o.layers === undefined ? {} : { layers: o.layers }) };
  return new SyntheticRuntime(o, shape);
}

class SyntheticRuntime implements Runtime {
  readonly kind = 'synthetic' as const;
  readonly model: string;
  readonly shape: ModelShape;
  readonly maxModelLen: number;
  readonly bos = 1;
  readonly eos = 2;
  readonly slots: number;
  readonly #discard: boolean;
  #views: KvBlockViews | undefined;
  #open = 0;

  constructor(o: SyntheticRuntimeOptions, shape: ModelShape) {
    this.model = o.model;
    this.shape = shape;
    this.maxModelLen = o.maxModelLen ?? 8192;
    this.slots = o.slots;
    this.#discard = o.discardLoadedKv === true;
  }

  tokenize(text: string): number[] {
    return [...Buffer.from(text, 'utf8')].map((b) => b + 3);
  }

  detokenize(tokens: readonly number[]): string {
    return Buffer.from(tokens.filter((t) => t >= 3 && t < 259).map((t) => t - 3)).toString('utf8');
  }

  async attach(views: KvBlockViews): Promise<void> {
    this.#views = views;
  }

  openSequence(): RuntimeSequence {
    if (this.#views === undefined || this.#open >= this.slots) {
      throw new KvwireError(
        ErrorCode.CAPACITY,
        'no free synthetic sequence (the engine admitted more requests than slots)',
      );
    }
    this.#open++;
    return new SyntheticSequence(this.#views, this.#discard, () => this.#open--);
  }

  async close(): Promise<void> {}
}

class SyntheticSequence implements RuntimeSequence {
  readonly #views: KvBlockViews;
  readonly #discard: boolean;
  readonly #done: () => void;
  #held = 0;
  #state = 0;
  #closed = false;

  constructor(views: KvBlockViews, discard: boolean, done: () => void) {
    this.#views = views;
    this.#discard = discard;
    this.#done = done;
  }

  async loadKv(prompt: readonly number[], count: number, blockIds: readonly number[]): Promise<void> {
    const { layout, tensors } = this.#views;
    const hashes = blockHashes(prompt, layout.blockTokens);
    for (let i = 0; i < blockIds.length; i++) {
      if (this.#discard) throw new KvwireError(ErrorCode.CORRUPTED, 'synthetic KV load: discarded (negative control)');
      verifyBlock(layout, tensors, blockIds[i]!, hashes[i]!.seed, 'synthetic KV load');
    }
    this.#held = count;
  }

  async reset(): Promise<void> {
    this.#held = 0;
  }

  async computePrompt(prompt: readonly number[], from: number): Promise<number> {
    if (from !== this.#held) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `the sequence holds ${this.#held} tokens, the prompt continues from ${from}`,
      );
    }
    const hashes = blockHashes(prompt, this.#views.layout.blockTokens);
    this.#state = mix(hashes[hashes.length - 1]!.seed, prompt.length);
    this.#held = prompt.length;
    return this.#token();
  }

  async storeKv(prompt: readonly number[], fromBlock: number, blockIds: readonly number[]): Promise<void> {
    const { layout, tensors } = this.#views;
    const hashes = blockHashes(prompt, layout.blockTokens);
    for (let i = fromBlock; i < hashes.length; i++) writeBlock(layout, tensors, blockIds[i]!, hashes[i]!.seed);
  }

  async next(): Promise<number> {
    return this.#token();
  }

  #token(): number {
    this.#state = mix(this.#state, 0x9e3779b9);
    return LETTERS.charCodeAt(this.#state % LETTERS.length) + 3;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#done();
  }
}
