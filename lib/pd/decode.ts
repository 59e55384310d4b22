/**
 * `DecodeCoordinator`: the decode side of the P/D hand-off.
 *
 * `pull()` turns `kv_transfer_params` into KV blocks in this engine's cache: handshake with the
 * prefill engine (once per engine, shared, redone after a failure), wait for transfer capacity
 * (FIFO), get local blocks from the engine's allocator, READ only the blocks not already held (a
 * prefix hit of `cachedPrefixBlocks`), check the lease fence, and — riding on the fence — notify
 * the prefill side that it may free them. While a pull is pending, its prefill lease is kept alive
 * with heartbeats (`lease-keeper.ts`); engines that queue a request before pulling keep its lease
 * alive with `keepLeaseAlive`. On failure everything is released on both sides and the
 * request's failure policy decides: reject (`'fail'`) or resolve `{ status: 'recompute' }`.
 *
 * @packageDocumentation
 */
import { safeEmit } from '../util/safe-emit.js';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { validateBlockIds, type KvCompatibilityFields } from '../kv/index.js';
import type { Region, Transfer, TransportCategory } from '../transport/index.js';
import { Admission, type Admitted } from './admission.js';
import { checkRankAuth, validateRanks, type KvCacheRank } from './cache.js';
import { requestHandshake } from './decode-handshake.js';
import { cancelPending, checkFence, postBlockReads, postFence } from './decode-reads.js';
import { secretKey } from './handshake-auth.js';
import { pdCompatibilityFields } from './handshake.js';
import { LeaseKeeper, type HeartbeatSentEvent } from './lease-keeper.js';
import { PdMetrics } from './metrics.js';
import { checkId, parseKvTransferParams, type KvTransferParams } from './params.js';
import { LEASE_SLOT_BYTES, encodeLeaseMessage } from './protocol.js';
import { PullScope } from './pull-scope.js';
import { RemoteEngineCache, connectRemoteEngine, type RemoteEngine } from './remote-engine.js';
import {
  checkOptions,
  checkPullTimeout,
  type DecodeBlockAllocator,
  type DecodeCoordinatorOptions,
  type FailurePolicy,
  type PullRequest,
  type PullResult,
} from './decode-options.js';

// Codes after which a cached remote engine is not trusted any more: the next pull handshakes again.
const INVALIDATING = new Set<string>([
  ErrorCode.PEER_LOST,
  ErrorCode.CLOSED,
  ErrorCode.TRANSPORT,
  ErrorCode.DEREGISTERED,
  ErrorCode.TIMEOUT,
  ErrorCode.BAD_METADATA,
  ErrorCode.UNKNOWN_REGION,
  ErrorCode.OUT_OF_BOUNDS,
  ErrorCode.ACCESS_DENIED,
]);

function asKvwireError(e: unknown): KvwireError {
  if (e instanceof KvwireError) return e;
  return new KvwireError(
    ErrorCode.TRANSPORT,
    `unexpected error: ${(e as Error)?.message ?? describeValue(e)}`,
    {},
    { cause: e },
  );
}

/**
 * The decode side of the P/D hand-off. Events: `'handshake'` (`{ engineId, instance, ms }`) after
 * each new handshake; `'failure'` (`{ requestId, error }`) for each failed pull; `'heartbeat'`
 * ({@link HeartbeatSentEvent}) after each lease heartbeat sent to a prefill.
 */
export class DecodeCoordinator extends EventEmitter {
  /** This engine's id. */
  readonly engineId: string;
  /** Default failure policy. */
  readonly policy: FailurePolicy;
  readonly #ranks: readonly KvCacheRank[];
  readonly #key: Buffer;
  readonly #compat: KvCompatibilityFields;
  readonly #allocator: DecodeBlockAllocator | undefined;
  readonly #admission: Admission;
  readonly #engines: RemoteEngineCache;
  readonly #metrics: PdMetrics;
  readonly #scratch: { region: Region; words: Float64Array };
  readonly #bytesPerBlock: number;
  readonly #timeoutMs: number;
  readonly #handshakeTimeoutMs: number;
  readonly #quarantineMs: number;
  readonly #allowPrefill: ((host: string, port: number) => boolean) | undefined;
  readonly #keeper: LeaseKeeper | undefined;
  readonly #scopes = new Set<PullScope>();
  /** Blocks of failed pulls waiting for their transfers to quiesce: release functions. */
  readonly #quarantined = new Map<symbol, () => void>();
  readonly #closing = new AbortController();
  #inTransfer = 0;
  #closed = false;

  /**
   * Validates the options and registers the fence scratch memory with rank 0's agent.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming a bad option.
   */
  static async create(options: DecodeCoordinatorOptions): Promise<DecodeCoordinator> {
    return new DecodeCoordinator(options);
  }

  private constructor(options: DecodeCoordinatorOptions) {
    super();
    const o = checkOptions(options);
    this.engineId = checkId(options.engineId, 'engineId');
    this.#key = secretKey(options.secret);
    validateRanks(options.ranks, false);
    checkRankAuth(options.ranks, options.unauthenticatedAgents);
    this.#ranks = [...options.ranks];
    this.policy = o.policy;
    this.#allocator = options.allocator;
    this.#timeoutMs = o.timeoutMs;
    this.#handshakeTimeoutMs = o.handshakeTimeoutMs;
    this.#quarantineMs = o.quarantineMs ?? 0;
    this.#allowPrefill = options.allowPrefill;
    this.#compat = pdCompatibilityFields(this.#ranks[0]!.layout);
    this.#bytesPerBlock = this.#ranks.reduce((s, r) => s + r.layout.bytesPerBlock, 0);
    this.#metrics = new PdMetrics(this.engineId, options.registry);
    this.#admission = new Admission(
      {
        maxInFlightBytes: o.maxInFlightBytes,
        maxConcurrentRequests: o.maxConcurrentRequests,
        maxQueued: o.maxQueuedRequests,
      },
      (depth) => this.#metrics.queueDepth(depth),
    );
    const words = new Float64Array((LEASE_SLOT_BYTES / 8) * o.maxConcurrentRequests);
    // Local-only memory (access 'none': never exported); the label only has to be unique in the agent.
    this.#scratch = {
      words,
      region: this.#ranks[0]!.agent.register(words, { label: `kvwire-fence-${randomBytes(6).toString('hex')}` }),
    };
    this.#engines = new RemoteEngineCache((params, key) => this.#handshake(params, key));
    if (o.heartbeatIntervalMs > 0) {
      this.#keeper = new LeaseKeeper({
        engineId: this.engineId,
        key: this.#key,
        intervalMs: o.heartbeatIntervalMs,
        onResult: (e: HeartbeatSentEvent) => {
          this.#metrics.heartbeatSent(e.result, e.lost);
          safeEmit(this, 'heartbeat', e);
        },
        onTracked: (n) => this.#metrics.keptAlive(n),
      });
    }
  }

  /**
   * Keeps the prefill lease of a request alive (heartbeats, see docs/pd.md) until the returned
   * function is called — for engines that queue a request before they `pull()` it (a pull keeps
   * its own lease alive while it runs; both may overlap). `onLost` is called (at most once) when a
   * heartbeat's answer says the prefill no longer holds the blocks: pulling them would fail, so
   * prefill locally. Does nothing (returns a no-op) when heartbeats are off, the coordinator is
   * closed, or `allowPrefill` refuses the side channel.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for bad `kv_transfer_params` (naming the field).
   */
  keepLeaseAlive(kvTransferParams: unknown, onLost?: (error: KvwireError) => void): () => void {
    const params = parseKvTransferParams(kvTransferParams);
    if (onLost !== undefined && typeof onLost !== 'function') {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `onLost must be a function, not ${describeValue(onLost)}`, {
        field: 'onLost',
      });
    }
    if (this.#closed || this.#keeper === undefined) return () => {};
    if (this.#allowPrefill !== undefined && !this.#allowPrefill(params.remote_host, params.remote_port))
      return () => {};
    return this.#keeper.track(params, onLost);
  }

  /** Prefill leases kept alive by heartbeats now (pending pulls and `keepLeaseAlive` requests). */
  get leasesKeptAlive(): number {
    return this.#keeper?.tracked ?? 0;
  }

  /** Pulls waiting for transfer capacity. */
  get queueDepth(): number {
    return this.#admission.queueDepth;
  }

  /** Pulls admitted (allocating, transferring or fencing). */
  get activeRequests(): number {
    return this.#admission.active;
  }

  /** Bytes counted by admitted pulls. */
  get inFlightBytes(): number {
    return this.#admission.inFlightBytes;
  }

  /** Failed pulls whose local blocks wait for their transfers to quiesce before going back to the allocator. */
  get quarantinedRequests(): number {
    return this.#quarantined.size;
  }

  /** Remote engines handshaken (or handshaking) and cached. */
  get remoteEngines(): number {
    return this.#engines.size;
  }

  async #handshake(params: KvTransferParams, key: string): Promise<RemoteEngine> {
    const t0 = performance.now();
    const signal = this.#closing.signal;
    const answer = await requestHandshake({
      host: params.remote_host,
      port: params.remote_port,
      expectEngineId: params.remote_engine_id,
      engineId: this.engineId,
      compat: this.#compat,
      key: this.#key,
      timeoutMs: this.#handshakeTimeoutMs,
      signal,
    });
    if (answer.cache.tpSize !== params.tp_size) {
      throw new KvwireError(
        ErrorCode.BAD_METADATA,
        `kv_transfer_params say tp_size ${params.tp_size} but prefill '${answer.engineId}' runs TP ${answer.cache.tpSize}`,
        { field: 'tp_size' },
      );
    }
    // One deadline for the whole handshake: the connects get what the side channel call left.
    const left = Math.max(1, Math.ceil(t0 + this.#handshakeTimeoutMs - performance.now()));
    const engine = await connectRemoteEngine(key, this.#ranks, answer, t0, { timeoutMs: left, signal });
    this.#metrics.handshake(engine.handshakeMs / 1000);
    safeEmit(this, 'handshake', { engineId: engine.engineId, instance: engine.instance, ms: engine.handshakeMs });
    return engine;
  }

  /**
   * Pulls the KV of a request into this engine's cache.
   *
   * Resolves `{ status: 'ready', ... }` when every block is in place and the prefill was told; with
   * policy `'recompute'`, resolves `{ status: 'recompute', reason }` on failure (prefill locally).
   * Rejects with a KvwireError on failure under policy `'fail'`, and always when cancelled
   * (`ERR_KVWIRE_CANCELLED`) or closed. Bad arguments reject with `ERR_KVWIRE_INVALID_ARGUMENT`.
   */
  async pull(request: PullRequest): Promise<PullResult> {
    if (this.#closed) throw new KvwireError(ErrorCode.CLOSED, 'the decode coordinator is closed');
    if (request === null || typeof request !== 'object') {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'pull needs { requestId, kvTransferParams, ... }', {
        field: 'request',
      });
    }
    const requestId = checkId(request.requestId, 'requestId');
    const params = parseKvTransferParams(request.kvTransferParams);
    const n = params.remote_block_ids.length;
    const cached = request.cachedPrefixBlocks ?? 0;
    if (!Number.isSafeInteger(cached) || cached < 0 || cached > n) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `cachedPrefixBlocks must be an integer in 0..${n} (the request has ${n} blocks), got ${describeValue(cached)}`,
        { field: 'cachedPrefixBlocks' },
      );
    }
    const given = request.localBlockIds;
    if (given !== undefined) {
      validateBlockIds(given, this.#ranks[0]!.layout.numBlocks, 'localBlockIds');
      if (given.length !== n - cached) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `localBlockIds has ${given.length} ids but ${n - cached} blocks are to be read (${n} minus ${cached} cached)`,
          { field: 'localBlockIds' },
        );
      }
    } else if (this.#allocator === undefined) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'pass localBlockIds, or give the coordinator an allocator', {
        field: 'localBlockIds',
      });
    }
    const policy = request.policy ?? this.policy;
    if (policy !== 'fail' && policy !== 'recompute') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `policy must be 'fail' or 'recompute', got ${describeValue(policy)}`,
        {
          field: 'policy',
        },
      );
    }
    if (this.#allowPrefill !== undefined && !this.#allowPrefill(params.remote_host, params.remote_port)) {
      const e = new KvwireError(
        ErrorCode.UNAUTHORIZED,
        `prefill side channel ${params.remote_host}:${params.remote_port} is not allowed by allowPrefill`,
        { field: 'remote_host' },
      );
      return this.#outcome(requestId, e, policy);
    }
    const timeoutMs = checkPullTimeout(request.timeoutMs, this.#timeoutMs);
    if (request.signal !== undefined && !(request.signal instanceof AbortSignal)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `signal must be an AbortSignal, not ${describeValue(request.signal)}`,
        {
          field: 'signal',
        },
      );
    }
    const scope = new PullScope(request.signal, timeoutMs, `request '${requestId}'`);
    this.#scopes.add(scope);
    // Heartbeats keep the prefill's lease alive while the pull waits (handshake, queue, allocator),
    // reads and fences; a lease found gone before the fence ends the pull at once (LEASE_EXPIRED)
    // instead of after reading blocks that are gone.
    const lease = { fencing: false };
    const untrack =
      this.#keeper?.track(params, (e) => {
        if (!lease.fencing) scope.abort(e);
      }) ?? (() => {});
    try {
      return await this.#run(
        requestId,
        params,
        cached,
        given === undefined ? undefined : Array.from(given),
        scope,
        lease,
      );
    } catch (e) {
      return this.#outcome(requestId, asKvwireError(e), policy);
    } finally {
      untrack();
      scope.dispose();
      this.#scopes.delete(scope);
    }
  }

  #outcome(requestId: string, error: KvwireError, policy: FailurePolicy): PullResult {
    this.#metrics.failed(error.code);
    safeEmit(this, 'failure', { requestId, error });
    if (policy === 'fail' || error.code === ErrorCode.CANCELLED || this.#closed) throw error;
    return { status: 'recompute', requestId, reason: error };
  }

  async #run(
    requestId: string,
    params: KvTransferParams,
    cached: number,
    given: number[] | undefined,
    scope: PullScope,
    lease: { fencing: boolean },
  ): Promise<PullResult> {
    const t0 = performance.now();
    let engine: RemoteEngine | undefined;
    let ticket: Admitted | undefined;
    let localIds: number[] | undefined;
    const transfers: Transfer[] = [];
    let transferring = false;
    try {
      engine = await scope.race(this.#engines.get(params));
      const handshakeMs = performance.now() - t0;
      if (params.remote_lease_slot >= engine.leaseSlots) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `kv_transfer_params.remote_lease_slot ${params.remote_lease_slot} is beyond the prefill's ${engine.leaseSlots} lease slots`,
          { field: 'remote_lease_slot' },
        );
      }
      const toRead = params.remote_block_ids.length - cached;
      ticket = await this.#admission.acquire(toRead * this.#bytesPerBlock, scope.signal);
      const queueMs = performance.now() - t0 - handshakeMs;
      localIds = given ?? (await this.#allocate(requestId, toRead, scope));
      scope.check();
      transferring = true;
      this.#metrics.inflight(++this.#inTransfer);
      const tPost = performance.now();
      const opts = { timeoutMs: scope.remainingMs(), signal: scope.signal };
      let reads = { bytes: 0, uncoalesced: 0, posted: 0 };
      let transport: TransportCategory = engine.fence.peer.transport;
      if (toRead > 0) {
        reads = postBlockReads(engine, this.#ranks, localIds, params.remote_block_ids.slice(cached), opts, transfers);
        const stats = await Promise.all(transfers.map((t) => t.done));
        transport = stats[0]!.transport;
      }
      // The fence carries 'done': the prefill frees the lease when it lands, so a heartbeat answer
      // from now on may say "not held" about a pull that succeeded; the fence alone decides. (The
      // heartbeats go on until the fence completes: a slow fence must not outlive the lease.)
      lease.fencing = true;
      const fence = postFence(engine, this.#ranks, this.#scratch.region, ticket.slot, params, {
        timeoutMs: scope.remainingMs(),
        signal: scope.signal,
      });
      transfers.push(fence);
      await fence.done;
      checkFence(this.#scratch.words, ticket.slot, params);
      const transferMs = performance.now() - tPost;
      this.#metrics.pulled(transferMs / 1000, reads.bytes, reads.uncoalesced, reads.posted, toRead, cached);
      return {
        status: 'ready',
        requestId,
        localBlockIds: Object.freeze(localIds),
        blocksRead: toRead,
        blocksCached: cached,
        bytes: reads.bytes,
        descriptors: { uncoalesced: reads.uncoalesced, posted: reads.posted },
        timings: { handshakeMs, queueMs, transferMs, totalMs: performance.now() - t0 },
        gbps: transferMs > 0 ? reads.bytes / (transferMs * 1e6) : 0,
        transport,
      };
    } catch (e) {
      let error = scope.reason ?? asKvwireError(e);
      if (error.code === ErrorCode.CLOSED && !this.#closed) {
        // Not this coordinator closing: the connection to the prefill was dropped under the pull.
        error = new KvwireError(
          ErrorCode.PEER_LOST,
          `the connection to prefill '${params.remote_engine_id}' was lost during request '${requestId}' (${error.message}); the next pull handshakes again`,
          {},
          { cause: error },
        );
      }
      cancelPending(transfers, error.message);
      if (engine !== undefined) {
        // Tell the prefill to free now rather than at lease expiry (best effort: the peer may be gone).
        if (engine.fence.peer.state === 'connected') {
          engine.fence.peer
            .notify(
              encodeLeaseMessage({
                kind: 'abort',
                requestId: params.remote_request_id,
                token: params.remote_lease_token,
              }),
            )
            .catch(() => {});
        }
        if (INVALIDATING.has(error.code) && (error.code !== ErrorCode.TIMEOUT || transferring))
          this.#engines.invalidate(engine);
      }
      if (localIds !== undefined && given === undefined) this.#free(requestId, localIds, transfers);
      throw error;
    } finally {
      if (transferring) this.#metrics.inflight(--this.#inTransfer);
      ticket?.release();
    }
  }

  async #allocate(requestId: string, count: number, scope: PullScope): Promise<number[]> {
    if (count === 0) return [];
    const allocator = this.#allocator!;
    const p = Promise.resolve().then(() => allocator.allocate(requestId, count));
    // Blocks granted after the pull ended must still go back.
    p.then(
      (ids) => {
        if (scope.reason !== undefined) allocator.free(requestId, ids);
      },
      () => {},
    );
    const ids = Array.from(await scope.race(p));
    try {
      validateBlockIds(ids, this.#ranks[0]!.layout.numBlocks, 'allocated block ids');
      if (ids.length !== count)
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `the allocator returned ${ids.length} blocks for ${count} requested`,
          { field: 'allocator' },
        );
    } catch (e) {
      allocator.free(requestId, ids);
      throw e;
    }
    return ids;
  }

  // After a failed or cancelled transfer, operations already handed to the transport may still
  // land in these blocks: they go back to the allocator only once every transfer of the pull has
  // quiesced (the transport bounds that: a peer's death or a deadline ends what it had in flight),
  // plus `quarantineMs` if asked, so a new request never receives a stale late write.
  #free(requestId: string, ids: number[], transfers: readonly Transfer[]): void {
    const allocator = this.#allocator!;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      allocator.free(requestId, ids);
    };
    if (transfers.length === 0) {
      release();
      return;
    }
    const key = Symbol(requestId);
    this.#quarantined.set(key, release);
    void Promise.all(transfers.map((t) => t.quiesced)).then(() => {
      if (!this.#quarantined.has(key)) return; // close() released them already
      const done = () => {
        this.#quarantined.delete(key);
        release();
      };
      if (this.#quarantineMs === 0) {
        done();
        return;
      }
      setTimeout(done, this.#quarantineMs).unref();
    });
  }

  /**
   * Ends every pull (`ERR_KVWIRE_CLOSED`), frees their blocks on both sides, returns quarantined
   * blocks to the allocator, disconnects from every prefill engine and withdraws the fence scratch
   * memory. The rank agents stay open (they are the caller's). Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new KvwireError(ErrorCode.CLOSED, 'the decode coordinator was closed');
    this.#closing.abort(closed);
    this.#keeper?.close();
    this.#admission.rejectAll(closed);
    for (const s of this.#scopes) s.abort(closed);
    // Let the aborted pulls unwind (cancel, abort notifications, frees) before disconnecting.
    await new Promise((r) => setImmediate(r));
    const waiting = [...this.#quarantined.values()];
    this.#quarantined.clear();
    for (const release of waiting) release();
    this.#engines.clear();
    try {
      this.#scratch.region.deregister();
    } catch {
      // Still busy with a cancelled fence read: the agent releases it when that operation ends.
    }
  }
}

export type {
  DecodeBlockAllocator,
  DecodeCoordinatorOptions,
  FailurePolicy,
  PullReady,
  PullRecompute,
  PullRequest,
  PullResult,
} from './decode-options.js';
