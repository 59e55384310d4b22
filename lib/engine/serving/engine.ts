/**
 * The engine: one runtime, one KV block cache registered with a kvwire agent, compute slots,
 * and lib/pd's coordinators — vLLM's NixlConnector pull mode.
 *
 * - plain request (any role): prefix-cache lookup, load the cached prefix, compute the rest,
 *   generate; afterwards the prompt's full blocks enter the prefix cache.
 * - prefill (`do_remote_decode`, roles prefill/both): compute, store the prompt's KV into blocks,
 *   hold them under a lease (`PrefillCoordinator.hold`) and answer `kv_transfer_params`.
 * - decode (`do_remote_prefill`, roles decode/both): pull the blocks not cached here
 *   (`DecodeCoordinator.pull`, UCX READ), load them into the runtime, generate; on failure,
 *   `--kv-load-failure-policy` recompute (compute locally, counted) or fail (an error the HTTP
 *   layer answers 5xx).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../errors.js';
import { KvLayout } from '../../kv/index.js';
import type { MetricsRegistry } from '../../metrics.js';
import {
  DecodeCoordinator,
  PrefillCoordinator,
  parseKvTransferParams,
  registerKvCache,
  type KvTransferParams,
  type SharedSecret,
} from '../../pd/index.js';
import { Agent } from '../../transport/index.js';
import type { KvEventPublisher } from '../events/kv-events.js';
import { BlockCache } from '../kv/block-cache.js';
import { blockHashes } from '../kv/block-hashes.js';
import { EngineMetrics } from '../metrics.js';
import type { Runtime, RuntimeSequence, Sampling } from '../runtimes/types.js';
import { Slots } from './slots.js';
import type { RequestTiming } from './timing.js';

/** Which requests an engine takes. */
export type EngineRole = 'prefill' | 'decode' | 'both';

/** What to do when a decode cannot load the prefill's KV. */
export type KvLoadFailurePolicy = 'recompute' | 'fail';

/** Options of {@link Engine.create}. */
export interface EngineOptions {
  /** Role. */
  readonly role: EngineRole;
  /** The runtime (the engine closes it). */
  readonly runtime: Runtime;
  /** Model name in the API and metrics. */
  readonly servedModelName: string;
  /** This engine's id (`remote_engine_id`, agent name). */
  readonly engineId: string;
  /** KV blocks in the cache. */
  readonly numBlocks: number;
  /** Take part in P/D hand-offs (ENABLE_KV_TRANSFER); default true. */
  readonly kvTransfer?: boolean;
  /** Handshake secret shared by the prefill and decode engines (>= 16 bytes). */
  readonly secret?: SharedSecret;
  /** Side channel bind (prefill and both). */
  readonly sideChannel?: { readonly host: string; readonly port: number; readonly advertiseHost?: string };
  /** Decode failure policy; default 'recompute'. */
  readonly kvLoadFailurePolicy?: KvLoadFailurePolicy;
  /** Most requests waiting for a slot; default 4 × slots. */
  readonly maxQueue?: number;
  /** Transport engine of the agent; default 'auto' (UCX). */
  readonly transportEngine?: 'auto' | 'ucx' | 'loopback';
  /** UCX transports (UCX_TLS syntax), e.g. 'tcp' or 'sm'. */
  readonly transports?: string;
  /** Base lease (ms) of held blocks (prefill): how long they stay held without heartbeats; default lib/pd's 30 s. */
  readonly leaseMs?: number;
  /** How far each decode heartbeat extends a lease (ms, prefill); default lib/pd's 30 s. */
  readonly leaseExtensionMs?: number;
  /** Interval of lease heartbeats while a pull is queued or pending (ms, decode; 0: none); default lib/pd's 5 s. */
  readonly leaseHeartbeatMs?: number;
  /** KV event publisher (the engine closes it). */
  readonly events?: KvEventPublisher;
  /** Metrics registry. */
  readonly registry: MetricsRegistry;
}

/** One request as the engine runs it. */
export interface EngineRequest {
  /** Request id (x-request-id). */
  readonly requestId: string;
  /** Prompt token ids. */
  readonly prompt: readonly number[];
  /** Most tokens to generate. */
  readonly maxTokens: number;
  /** Sampling. */
  readonly sampling: Sampling;
  /** Generation stops after a token for which this returns true (stop strings). */
  readonly stopAfter?: (generated: readonly number[]) => boolean;
  /** Do not stop at the end-of-sequence token. */
  readonly ignoreEos?: boolean;
  /** The request's kv_transfer_params, as the client sent them. */
  readonly kvTransferParams?: Record<string, unknown>;
  /** Aborts the request (client gone). */
  readonly signal: AbortSignal;
  /** Each generated token, as soon as it exists. */
  readonly onToken?: (token: number) => void;
  /** Filled in as the request runs (queue, pull, load, compute, store), for Server-Timing. */
  readonly timing?: RequestTiming;
}

/** What a request produced. */
export interface EngineResult {
  /** Generated tokens. */
  readonly tokens: number[];
  /** 'length', 'stop' or 'abort'. */
  readonly finishReason: 'length' | 'stop' | 'abort';
  /** Prompt tokens whose KV was not computed here (prefix cache or pulled). */
  readonly cachedTokens: number;
  /** A prefill's answer. */
  readonly kvTransferParams?: KvTransferParams;
  /** Milliseconds to the first token. */
  readonly ttftMs: number;
  /** How the prompt's KV came about. */
  readonly kvSource: 'computed' | 'pulled' | 'recomputed';
}

let requestCounter = 0;

/** A serving engine. */
export class Engine {
  readonly role: EngineRole;
  readonly runtime: Runtime;
  readonly cache: BlockCache;
  readonly metrics: EngineMetrics;
  readonly servedModelName: string;
  readonly engineId: string;
  readonly prefill: PrefillCoordinator | undefined;
  readonly decode: DecodeCoordinator | undefined;
  readonly slots: Slots;
  readonly policy: KvLoadFailurePolicy;
  readonly #agent: Agent;
  readonly #events: KvEventPublisher | undefined;
  readonly #inFlight = new Set<AbortController>();
  #draining = false;

  private constructor(
    o: EngineOptions,
    agent: Agent,
    cache: BlockCache,
    prefill: PrefillCoordinator | undefined,
    decode: DecodeCoordinator | undefined,
  ) {
    this.role = o.role;
    this.runtime = o.runtime;
    this.cache = cache;
    this.servedModelName = o.servedModelName;
    this.engineId = o.engineId;
    this.prefill = prefill;
    this.decode = decode;
    this.#agent = agent;
    this.#events = o.events;
    this.policy = o.kvLoadFailurePolicy ?? 'recompute';
    this.slots = new Slots(o.runtime.slots, o.maxQueue ?? 4 * o.runtime.slots);
    this.metrics = new EngineMetrics(o.registry, o.servedModelName, {
      running: () => this.slots.running,
      waiting: () => this.slots.waiting,
      slots: () => this.slots.size,
      blocks: () => ({ total: cache.total, used: cache.used, cached: cache.cached, pinned: cache.pinned }),
      evictions: () => cache.evictions,
    });
  }

  /** Registers the KV cache, starts the coordinators. */
  static async create(o: EngineOptions): Promise<Engine> {
    const kvTransfer = o.kvTransfer ?? true;
    const agent = await Agent.create({
      name: o.engineId,
      engine: o.transportEngine ?? 'auto',
      ...(o.transports === undefined ? {} : { transports: o.transports }),
      // The data plane authenticates its peers with the P/D secret too: the coordinators refuse a
      // rank agent that would serve its KV cache to anyone who reaches it.
      ...(kvTransfer && o.secret !== undefined ? { auth: { secret: o.secret } } : {}),
    });
    let prefill: PrefillCoordinator | undefined;
    let decode: DecodeCoordinator | undefined;
    try {
      const layout = new KvLayout({
        model: o.runtime.shape,
        numBlocks: o.numBlocks,
        blockTokens: 16,
        kv: 'split',
        order: 'NHD',
      });
      const rank = registerKvCache(agent, layout, { access: kvTransfer && o.role !== 'decode' ? 'read' : 'none' });
      const events = o.events;
      const cache = new BlockCache(rank, {
        onStored: (b) => events?.stored(b),
        onRemoved: (h) => events?.removed(h),
      });
      await o.runtime.attach(cache.views);
      if (kvTransfer && o.role !== 'decode') {
        prefill = await PrefillCoordinator.create({
          engineId: o.engineId,
          ranks: [rank],
          secret: requireSecret(o.secret),
          host: o.sideChannel?.host ?? '127.0.0.1',
          port: o.sideChannel?.port ?? 0,
          ...(o.sideChannel?.advertiseHost === undefined ? {} : { advertiseHost: o.sideChannel.advertiseHost }),
          ...(o.leaseMs === undefined ? {} : { leaseMs: o.leaseMs }),
          ...(o.leaseExtensionMs === undefined ? {} : { leaseExtensionMs: o.leaseExtensionMs }),
          registry: o.registry,
          onFree: (e) => cache.release(e.blockIds),
        });
      }
      if (kvTransfer && o.role !== 'prefill') {
        decode = await DecodeCoordinator.create({
          engineId: o.engineId,
          ranks: [rank],
          secret: requireSecret(o.secret),
          policy: 'fail', // the engine applies --kv-load-failure-policy itself (counts, then recomputes)
          ...(o.leaseHeartbeatMs === undefined ? {} : { heartbeatIntervalMs: o.leaseHeartbeatMs }),
          registry: o.registry,
          allocator: {
            allocate: (_id, n) => cache.allocate(n),
            free: (_id, ids) => cache.release(ids),
          },
        });
      }
      return new Engine(o, agent, cache, prefill, decode);
    } catch (e) {
      await prefill?.close().catch(() => undefined);
      await decode?.close().catch(() => undefined);
      await agent.close().catch(() => undefined);
      throw e;
    }
  }

  /** True once `close` began: new requests are refused (503). */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Runs one request.
   *
   * @throws KvwireError `INVALID_ARGUMENT` (bad kv_transfer_params, role mismatch), `CAPACITY`
   *   (queue full), `CLOSED` (draining), `CANCELLED`, or a pull error under policy 'fail'.
   */
  async run(req: EngineRequest): Promise<EngineResult> {
    if (this.#draining)
      throw new KvwireError(ErrorCode.CLOSED, 'the engine is shutting down; send the request to another worker');
    const mode = this.#mode(req);
    const remote = mode === 'decode' ? this.#remoteParams(req) : undefined;
    const abort = new AbortController();
    const onAbort = (): void => abort.abort();
    req.signal.addEventListener('abort', onAbort, { once: true });
    this.#inFlight.add(abort);
    const started = performance.now();
    // A decode request waiting for a slot keeps the prefill's lease alive (heartbeats), as vLLM's
    // decode does for requests in its waiting queue; if the prefill lets the blocks go meanwhile,
    // the request recomputes (or fails) without pulling.
    const lease: { lost?: KvwireError; stop: () => void } = { stop: () => {} };
    if (remote !== undefined) lease.stop = this.decode!.keepLeaseAlive(remote, (e) => (lease.lost = e));
    try {
      await this.slots.acquire(abort.signal);
    } catch (e) {
      lease.stop();
      this.#inFlight.delete(abort);
      req.signal.removeEventListener('abort', onAbort);
      if ((e as KvwireError).code === ErrorCode.CAPACITY)
        this.metrics.rejected.inc({ ...this.metrics.labels, reason: 'queue_full' });
      throw e;
    }
    this.metrics.running(this.slots.running);
    if (req.timing !== undefined) {
      req.timing.mode = mode;
      req.timing.queueMs = performance.now() - started;
    }
    const seq = this.runtime.openSequence();
    const owned: number[] = [];
    try {
      return await this.#runInSlot(req, mode, remote, seq, owned, abort.signal, started, lease);
    } finally {
      lease.stop();
      if (owned.length > 0) this.cache.release(owned);
      await seq.close().catch(() => undefined);
      this.slots.release();
      this.metrics.running(this.slots.running);
      this.#inFlight.delete(abort);
      req.signal.removeEventListener('abort', onAbort);
    }
  }

  #mode(req: EngineRequest): 'plain' | 'prefill' | 'decode' {
    const p = req.kvTransferParams;
    if (p === undefined) return 'plain';
    if (p['do_remote_decode'] === true) {
      if (this.prefill === undefined) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `kv_transfer_params.do_remote_decode asks for a prefill, but this engine is ${this.role === 'decode' ? 'a decode worker (--role decode)' : 'running without KV transfer (ENABLE_KV_TRANSFER=false)'}`,
          { field: 'kv_transfer_params.do_remote_decode' },
        );
      }
      return 'prefill';
    }
    if (p['do_remote_prefill'] === true) {
      if (this.decode === undefined) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `kv_transfer_params.do_remote_prefill asks for a decode, but this engine is ${this.role === 'prefill' ? 'a prefill worker (--role prefill)' : 'running without KV transfer (ENABLE_KV_TRANSFER=false)'}`,
          { field: 'kv_transfer_params.do_remote_prefill' },
        );
      }
      return 'decode';
    }
    return 'plain';
  }

  #remoteParams(req: EngineRequest): KvTransferParams {
    const params = parseKvTransferParams(req.kvTransferParams);
    const need = Math.ceil(req.prompt.length / this.cache.blockTokens);
    if (params.remote_block_ids.length !== need) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `kv_transfer_params.remote_block_ids has ${params.remote_block_ids.length} blocks but the prompt's ${req.prompt.length} tokens fill ${need}: the prefill ran another prompt`,
        { field: 'kv_transfer_params.remote_block_ids' },
      );
    }
    return params;
  }

  async #runInSlot(
    req: EngineRequest,
    mode: 'plain' | 'prefill' | 'decode',
    remote: KvTransferParams | undefined,
    seq: RuntimeSequence,
    owned: number[],
    signal: AbortSignal,
    started: number,
    lease: { lost?: KvwireError; stop: () => void },
  ): Promise<EngineResult> {
    const B = this.cache.blockTokens;
    const prompt = req.prompt;
    const n = prompt.length;
    const hashes = blockHashes(prompt, B);
    // The last prompt token is always evaluated here (see runtimes/types.ts): at most the blocks
    // before it can come from the cache.
    const prefixIds = this.cache.acquirePrefix(hashes, Math.floor((n - 1) / B));
    owned.push(...prefixIds);
    let cachedTokens = prefixIds.length * B;
    this.metrics.prefixLookup(Math.max(0, n - 1), cachedTokens);
    let kvSource: EngineResult['kvSource'] = 'computed';
    let first: number;
    const computeStart = performance.now();
    let pulled: readonly number[] | undefined;
    const timing = req.timing;
    if (mode === 'decode') pulled = await this.#pull(req, remote!, prefixIds.length, signal, lease);
    if (pulled !== undefined) {
      owned.push(...pulled);
      const all = [...prefixIds, ...pulled];
      const t = performance.now();
      await seq.loadKv(prompt, n - 1, all);
      const loaded = performance.now();
      this.metrics.handoff.observe({ ...this.metrics.labels, stage: 'load' }, (loaded - t) / 1000);
      if (timing !== undefined) timing.loadMs = loaded - t;
      this.cache.publish(hashes, all, prompt, prefixIds.length);
      cachedTokens = n - 1;
      kvSource = 'pulled';
      first = await seq.computePrompt(prompt, n - 1, req.sampling, signal);
      if (timing !== undefined) timing.computeMs = performance.now() - loaded;
    } else {
      if (mode === 'decode') kvSource = 'recomputed';
      const t = performance.now();
      if (prefixIds.length > 0) await seq.loadKv(prompt, prefixIds.length * B, prefixIds);
      else await seq.reset();
      const loaded = performance.now();
      first = await seq.computePrompt(prompt, prefixIds.length * B, req.sampling, signal);
      if (timing !== undefined) {
        if (prefixIds.length > 0) timing.loadMs = loaded - t;
        timing.computeMs = performance.now() - loaded;
      }
    }
    const ttftMs = performance.now() - started;
    this.metrics.prefillTime.observe(this.metrics.labels, (performance.now() - computeStart) / 1000);
    this.metrics.ttft.observe(this.metrics.labels, ttftMs / 1000);
    this.metrics.promptTokens.inc(this.metrics.labels, n);
    if (mode === 'prefill') return this.#hold(req, seq, hashes, prefixIds, owned, first, cachedTokens, ttftMs);
    const result = await this.#generate(req, seq, first, signal);
    if (result.finishReason !== 'abort' && kvSource !== 'pulled') {
      await this.#storePrompt(seq, prompt, hashes, prefixIds, owned, Math.floor(n / B));
    }
    this.metrics.e2e.observe(this.metrics.labels, (performance.now() - started) / 1000);
    return { ...result, cachedTokens, ttftMs, kvSource };
  }

  async #pull(
    req: EngineRequest,
    params: KvTransferParams,
    cached: number,
    signal: AbortSignal,
    lease: { lost?: KvwireError; stop: () => void },
  ): Promise<readonly number[] | undefined> {
    const decode = this.decode!;
    const timing = req.timing;
    const t = performance.now();
    try {
      // The pull keeps the lease alive itself from here on.
      lease.stop();
      if (lease.lost !== undefined) throw lease.lost;
      const r = await decode.pull({
        requestId: `${req.requestId}#${++requestCounter}`,
        kvTransferParams: params,
        cachedPrefixBlocks: cached,
        signal,
      });
      if (timing !== undefined) timing.pullMs = performance.now() - t;
      if (r.status === 'ready') {
        if (timing !== undefined) {
          timing.pullBytes = r.bytes;
          timing.pullBlocks = r.blocksRead;
          timing.handshakeMs = r.timings.handshakeMs;
          timing.pullQueueMs = r.timings.queueMs;
          timing.transferMs = r.timings.transferMs;
          timing.transport = r.transport;
        }
        return r.localBlockIds;
      }
      if (timing !== undefined) timing.recompute = r.reason.code;
      this.#loadFailed(r.reason);
      return undefined;
    } catch (e) {
      if (!(e instanceof KvwireError) || e.code === ErrorCode.CANCELLED || e.code === ErrorCode.CLOSED) throw e;
      if (timing !== undefined) {
        timing.pullMs = performance.now() - t;
        timing.recompute = e.code;
      }
      this.#loadFailed(e);
      return undefined;
    }
  }

  #loadFailed(e: KvwireError): void {
    this.metrics.kvLoadFailures.inc({ ...this.metrics.labels, policy: this.policy, reason: e.code });
    if (this.policy === 'fail') {
      throw new KvwireError(
        e.code,
        `loading the prefill's KV failed (${e.message}) and --kv-load-failure-policy is 'fail'`,
        { field: 'kv_transfer_params', kvLoadFailed: true },
        { cause: e },
      );
    }
  }

  async #hold(
    req: EngineRequest,
    seq: RuntimeSequence,
    hashes: ReturnType<typeof blockHashes>,
    prefixIds: readonly number[],
    owned: number[],
    first: number,
    cachedTokens: number,
    ttftMs: number,
  ): Promise<EngineResult> {
    const nBlocks = hashes.length;
    const fresh = this.cache.allocate(nBlocks - prefixIds.length);
    owned.push(...fresh);
    const all = [...prefixIds, ...fresh];
    const t = performance.now();
    await seq.storeKv(req.prompt, prefixIds.length, all);
    const storeMs = performance.now() - t;
    this.metrics.handoff.observe({ ...this.metrics.labels, stage: 'store' }, storeMs / 1000);
    if (req.timing !== undefined) req.timing.storeMs = storeMs;
    this.cache.publish(hashes, all, req.prompt, prefixIds.length);
    // The lease takes its own ownership of every block; the request's goes in `run`'s finally.
    this.cache.retain(all);
    let params: KvTransferParams;
    try {
      params = this.prefill!.hold({ requestId: `${req.requestId}#${++requestCounter}`, blockIds: all });
    } catch (e) {
      this.cache.release(all);
      throw e;
    }
    req.onToken?.(first);
    this.metrics.generated(1);
    this.metrics.success.inc({ ...this.metrics.labels, finished_reason: 'length' });
    return {
      tokens: [first],
      finishReason: 'length',
      cachedTokens,
      kvTransferParams: params,
      ttftMs,
      kvSource: 'computed',
    };
  }

  async #generate(
    req: EngineRequest,
    seq: RuntimeSequence,
    first: number,
    signal: AbortSignal,
  ): Promise<{ tokens: number[]; finishReason: EngineResult['finishReason'] }> {
    const tokens: number[] = [];
    let token = first;
    let last = performance.now();
    let finishReason: EngineResult['finishReason'] = 'length';
    while (true) {
      if (signal.aborted) {
        finishReason = 'abort';
        break;
      }
      if (token < 0 || (token === this.runtime.eos && req.ignoreEos !== true)) {
        finishReason = 'stop';
        break;
      }
      tokens.push(token);
      this.metrics.generated(1);
      req.onToken?.(token);
      if (req.stopAfter?.(tokens) === true) {
        finishReason = 'stop';
        break;
      }
      if (tokens.length >= req.maxTokens) break;
      token = await seq.next(signal);
      const now = performance.now();
      this.metrics.tpot.observe(this.metrics.labels, (now - last) / 1000);
      last = now;
    }
    this.metrics.success.inc({ ...this.metrics.labels, finished_reason: finishReason });
    return { tokens, finishReason };
  }

  /** Stores the prompt's full blocks not yet cached (after the answer: off the TTFT path). */
  async #storePrompt(
    seq: RuntimeSequence,
    prompt: readonly number[],
    hashes: ReturnType<typeof blockHashes>,
    prefixIds: readonly number[],
    owned: number[],
    fullBlocks: number,
  ): Promise<void> {
    if (fullBlocks <= prefixIds.length) return;
    let fresh: number[];
    try {
      fresh = this.cache.allocate(fullBlocks - prefixIds.length);
    } catch {
      return; // the cache is full of pinned blocks: skip caching, the answer is already out
    }
    owned.push(...fresh);
    const all = [...prefixIds, ...fresh];
    const t = performance.now();
    await seq.storeKv(prompt.slice(0, fullBlocks * this.cache.blockTokens), prefixIds.length, all);
    this.metrics.handoff.observe({ ...this.metrics.labels, stage: 'store' }, (performance.now() - t) / 1000);
    this.cache.publish(hashes, all, prompt, prefixIds.length);
  }

  /**
   * Stops taking requests, waits up to `drainMs` for those in flight, aborts the rest, frees every
   * lease, clears the cache (AllBlocksCleared) and closes the agent.
   */
  async close(drainMs = 10_000): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    this.slots.rejectWaiting(new KvwireError(ErrorCode.CLOSED, 'the engine is shutting down'));
    const deadline = Date.now() + drainMs;
    while (this.#inFlight.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const a of this.#inFlight) a.abort();
    while (this.#inFlight.size > 0 && Date.now() < deadline + 5_000) await new Promise((r) => setTimeout(r, 20));
    await this.prefill?.close().catch(() => undefined);
    await this.decode?.close().catch(() => undefined);
    this.cache.clear();
    this.#events?.allCleared();
    await this.#events?.close().catch(() => undefined);
    await this.runtime.close().catch(() => undefined);
    await this.#agent.close().catch(() => undefined);
  }
}

function requireSecret(secret: SharedSecret | undefined): SharedSecret {
  if (secret === undefined) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'P/D needs a shared handshake secret: set KVWIRE_KV_SECRET (at least 16 bytes) or --kv-secret-file, the same on prefill and decode workers, or disable KV transfer (ENABLE_KV_TRANSFER=false)',
      { field: 'secret' },
    );
  }
  return secret;
}
