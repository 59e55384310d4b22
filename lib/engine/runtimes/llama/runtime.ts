/**
 * The `llama` runtime: llama.cpp through node-llama-cpp (CPU build, never built from source,
 * nothing downloaded) running a model kvwire generates (`model/catalog.ts`).
 *
 * One llama.cpp context with one sequence per slot; node-llama-cpp batches the evaluations of
 * concurrent sequences into shared `llama_decode` calls (the prefill worker's batching). Flash
 * attention is off by default (see {@link LlamaRuntimeOptions.flashAttention}), so llama.cpp stores
 * V transposed; `state-file.ts` turns it into per-token rows like K. A sequence's KV enters and
 * leaves through state files on tmpfs (`/dev/shm` when present).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, writeFileSync } from 'node:fs';
import { readFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';
import { ErrorCode, KvwireError } from '../../../errors.js';
import type { ModelShape } from '../../../kv/index.js';
import { ensureModelFile, generatedModel } from '../../model/catalog.js';
import { headDim } from '../../model/generate.js';
import type { KvBlockViews, Runtime, RuntimeSequence, Sampling } from '../types.js';
import {
  buildStateFile,
  checkRowLayout,
  parseStateFile,
  rowBytesOf,
  scatterRows,
  StateScratch,
  type StateFormat,
} from './state-file.js';

type NodeLlamaCpp = typeof import('node-llama-cpp');

/** Loads node-llama-cpp, or says how to get it. */
async function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return await import('node-llama-cpp');
  } catch (e) {
    throw new KvwireError(
      ErrorCode.UNSUPPORTED,
      `the llama runtime needs node-llama-cpp 3.21.1, an optional dependency of kvwire that is not installed (${(e as Error).message}); run 'npm install node-llama-cpp@3.21.1', or serve with --runtime synthetic`,
    );
  }
}

/** Options of {@link createLlamaRuntime}. */
export interface LlamaRuntimeOptions {
  /** Generated model name: `tiny` or `small`. */
  readonly model: string;
  /** Compute slots (sequences in the llama.cpp context). */
  readonly slots: number;
  /** Longest prompt + completion per sequence; default min(4096, the model's context length). */
  readonly maxModelLen?: number;
  /** CPU threads for evaluation; default 1 (more threads than free cores spin and slow everything down). */
  readonly threads?: number;
  /** Model cache folder; default `defaultModelCacheDir()`. */
  readonly cacheDir?: string;
  /** Load zero rows instead of the blocks' KV (negative control for tests only). */
  readonly discardLoadedKv?: boolean;
  /**
   * llama.cpp's flash attention; default off. With it on, a token's greedy result depends on how
   * the prompt was split into evaluation batches (a prefix-cache hit splits it differently from a
   * cold prompt), so a --role both worker and a P/D pair disagree in the last bits and, with a
   * random model's close logits, in the tokens. Off, every split gives the same bits.
   */
  readonly flashAttention?: boolean;
}

/** Creates the llama runtime (generates the model on first use). */
export async function createLlamaRuntime(o: LlamaRuntimeOptions): Promise<Runtime> {
  const nlc = await loadNodeLlamaCpp();
  const entry = generatedModel(o.model);
  const path = await ensureModelFile(o.model, o.cacheDir);
  const maxModelLen = Math.min(o.maxModelLen ?? 4096, entry.spec.contextLength);
  const llama = await nlc.getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    logLevel: nlc.LlamaLogLevel.error,
  });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize: maxModelLen,
    sequences: o.slots,
    batchSize: Math.min(512, maxModelLen),
    flashAttention: o.flashAttention ?? false,
    threads: o.threads ?? 1,
  });
  return new LlamaRuntime(llama, model, context, o, maxModelLen);
}

const stateDir = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();

function stateFilePath(): string {
  return join(stateDir, `kvwire-seq-${process.pid}-${randomBytes(6).toString('hex')}.bin`);
}

class LlamaRuntime implements Runtime {
  readonly kind = 'llama' as const;
  readonly model: string;
  readonly shape: ModelShape;
  readonly maxModelLen: number;
  readonly bos: number;
  readonly eos: number;
  readonly slots: number;
  readonly #llama: Llama;
  readonly #model: LlamaModel;
  readonly #context: LlamaContext;
  readonly #free: LlamaContextSequence[] = [];
  readonly #discard: boolean;
  #views: KvBlockViews | undefined;
  #format: StateFormat = { nStream: 0, vTrans: false };
  readonly #scratch = new StateScratch();

  constructor(llama: Llama, model: LlamaModel, context: LlamaContext, o: LlamaRuntimeOptions, maxModelLen: number) {
    const spec = generatedModel(o.model).spec;
    this.#llama = llama;
    this.#model = model;
    this.#context = context;
    this.model = o.model;
    this.shape = {
      name: `kvwire-${spec.name}`,
      layers: spec.layers,
      kvHeads: spec.kvHeads,
      headDim: headDim(spec),
      dtype: 'fp16',
    };
    this.maxModelLen = maxModelLen;
    this.bos = model.tokens.bos ?? 1;
    this.eos = model.tokens.eos ?? 2;
    this.slots = o.slots;
    this.#discard = o.discardLoadedKv === true;
    for (let i = 0; i < o.slots; i++) this.#free.push(context.getSequence());
  }

  tokenize(text: string): number[] {
    return this.#model.tokenize(text, false).map(Number);
  }

  detokenize(tokens: readonly number[]): string {
    return this.#model.detokenize(tokens as Token[]);
  }

  async attach(views: KvBlockViews): Promise<void> {
    checkRowLayout(views.layout);
    this.#views = views;
    // Size the state-file buffer for the longest sequence now: growing it during a hand-off costs
    // tens of megabytes of page faults on the TTFT path.
    const perToken = 12 + 2 * this.shape.layers * rowBytesOf(views.layout);
    this.#scratch.take(64 + 4 * this.maxModelLen + 4 * (this.slots + 1) + 8 + this.maxModelLen * perToken).fill(0);
    // The number of KV streams (one per sequence unless llama.cpp unifies them) is written into
    // every state file and must match on load: learn it from a real one.
    const seq = this.#free[0]!;
    await seq.evaluateWithoutGeneratingNewTokens([this.bos as Token]);
    const path = stateFilePath();
    try {
      await seq.saveStateToFile(path);
      const parsed = parseStateFile(await readFile(path), this.shape.layers, rowBytesOf(views.layout));
      this.#format = { nStream: parsed.nStream, vTrans: parsed.vTrans };
    } finally {
      await unlink(path).catch(() => undefined);
      await seq.clearHistory();
    }
  }

  openSequence(): RuntimeSequence {
    const seq = this.#free.pop();
    if (seq === undefined || this.#views === undefined) {
      throw new KvwireError(
        ErrorCode.CAPACITY,
        'no free llama sequence (the engine admitted more requests than slots)',
      );
    }
    return new LlamaSequence(seq, this.#views, this.#format, this.#discard, this.#scratch, (s) => this.#free.push(s));
  }

  async close(): Promise<void> {
    await this.#context.dispose();
    await this.#model.dispose();
    await this.#llama.dispose();
  }
}

function toLlamaSampling(s: Sampling): { temperature: number; topK: number; topP: number; seed?: number } {
  return {
    temperature: s.temperature,
    topK: s.topK,
    topP: s.topP,
    ...(s.seed === undefined ? {} : { seed: s.seed }),
  };
}

class LlamaSequence implements RuntimeSequence {
  readonly #seq: LlamaContextSequence;
  readonly #views: KvBlockViews;
  readonly #format: StateFormat;
  readonly #discard: boolean;
  readonly #scratch: StateScratch;
  readonly #giveBack: (s: LlamaContextSequence) => void;
  #generator: AsyncGenerator<Token, void, void | Token | Token[]> | undefined;
  #closed = false;

  constructor(
    seq: LlamaContextSequence,
    views: KvBlockViews,
    format: StateFormat,
    discard: boolean,
    scratch: StateScratch,
    giveBack: (s: LlamaContextSequence) => void,
  ) {
    this.#scratch = scratch;
    this.#seq = seq;
    this.#views = views;
    this.#format = format;
    this.#discard = discard;
    this.#giveBack = giveBack;
  }

  async loadKv(prompt: readonly number[], count: number, blockIds: readonly number[]): Promise<void> {
    await this.#endGeneration();
    if (count === 0) {
      await this.#seq.clearHistory();
      return;
    }
    const file = buildStateFile(
      prompt.slice(0, count),
      this.#format,
      this.#views.layout,
      this.#views.tensors,
      blockIds,
      this.#discard,
      this.#scratch,
    );
    const path = stateFilePath();
    try {
      // Written synchronously: the scratch buffer is shared, and a tmpfs write is a memcpy.
      writeFileSync(path, file);
      await this.#seq.loadStateFromFile(path, { acceptRisk: true });
    } finally {
      await unlink(path).catch(() => undefined);
    }
  }

  async reset(): Promise<void> {
    await this.#endGeneration();
    await this.#seq.clearHistory();
  }

  async computePrompt(prompt: readonly number[], from: number, sampling: Sampling): Promise<number> {
    await this.#endGeneration();
    const n = prompt.length;
    if (this.#seq.nextTokenIndex !== from) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `the sequence holds ${this.#seq.nextTokenIndex} tokens, the prompt continues from ${from}`,
      );
    }
    if (n - 1 > from) await this.#seq.evaluateWithoutGeneratingNewTokens(prompt.slice(from, n - 1) as Token[]);
    this.#generator = this.#seq.evaluate([prompt[n - 1]! as Token], toLlamaSampling(sampling));
    return this.#pull();
  }

  async storeKv(prompt: readonly number[], fromBlock: number, blockIds: readonly number[]): Promise<void> {
    const path = stateFilePath();
    try {
      const { fileSize } = await this.#seq.saveStateToFile(path);
      // Read synchronously into the shared scratch buffer, then parse and scatter before any await.
      const file = readInto(path, this.#scratch.take(fileSize));
      const layout = this.#views.layout;
      const state = parseStateFile(file, layout.model.layers, rowBytesOf(layout));
      const from = fromBlock * layout.blockTokens;
      const copied = scatterCount(state.positions, from, prompt.length);
      if (copied !== prompt.length - from) {
        throw new KvwireError(
          ErrorCode.CORRUPTED,
          `llama.cpp holds ${copied} of the ${prompt.length - from} prompt positions ${from}..${prompt.length - 1}`,
        );
      }
      scatterRows(file, state, layout, this.#views.tensors, blockIds, from, prompt.length);
    } finally {
      await unlink(path).catch(() => undefined);
    }
  }

  async next(): Promise<number> {
    if (this.#generator === undefined)
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'next() before computePrompt()');
    return this.#pull();
  }

  async #pull(): Promise<number> {
    const r = await this.#generator!.next();
    if (r.done === true) return -1;
    return Number(r.value);
  }

  async #endGeneration(): Promise<void> {
    const g = this.#generator;
    this.#generator = undefined;
    if (g !== undefined) await g.return(undefined);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#endGeneration();
      await this.#seq.clearHistory();
    } finally {
      this.#giveBack(this.#seq);
    }
  }
}

function readInto(path: string, buf: Buffer): Buffer {
  const fd = openSync(path, 'r');
  try {
    let at = 0;
    while (at < buf.length) {
      const n = readSync(fd, buf, at, buf.length - at, at);
      if (n === 0)
        throw new KvwireError(ErrorCode.CORRUPTED, `llama.cpp state file ${path} ended at byte ${at} of ${buf.length}`);
      at += n;
    }
    return buf;
  } finally {
    closeSync(fd);
  }
}

function scatterCount(positions: Int32Array, from: number, to: number): number {
  let n = 0;
  for (const p of positions) if (p >= from && p < to) n++;
  return n;
}
