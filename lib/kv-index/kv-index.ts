/**
 * {@link KvIndex}: which worker holds which prompt blocks, and which worker a prompt should go to.
 *
 * Fed by events (blocks stored, blocks removed, all cleared) from our own coordinators directly and
 * from engines over HTTP ({@link createKvEventsHandler}); asked by a router for scores
 * ({@link KvIndex.score}) or a choice ({@link KvIndex.pick}). In memory by default; in Redis to
 * share one index between many router replicas.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { defaultRegistry, type MetricsRegistry } from '../metrics.js';
import { describeValue } from '../util/describe-value.js';
import { BlockHasher, BlockKeyList, type BlockExtra, type TokenIds } from './hash.js';
import { MemoryBackend } from './memory.js';
import { IndexMetrics } from './metrics.js';
import { choose, parseLoads, pickWeights, type Loads, type PickResult, type PickWeights } from './pick.js';
import type { RedisBackendOptions } from './redis.js';
import { EventSequencer } from './sequencer.js';
import {
  TIERS,
  type ApplyOutcome,
  type BackendKind,
  type BackendStats,
  type Holder,
  type IndexBackend,
  type IndexOp,
  type Tier,
} from './types.js';

/** Options of {@link KvIndex.create}. */
export interface KvIndexOptions {
  /**
   * `'memory'` (default: this process only), `'redis'` (one Redis server, shared by router replicas) or
   * `'redis-cluster'` (Redis Cluster: `redis.nodes`; the index lives in the slot of its prefix's hash tag).
   */
  readonly backend?: BackendKind;
  /** Tokens per block; must equal the engines' KV block size. Default 16. */
  readonly blockSize?: number;
  /** Seed of the block hash, an integer in [0, 2^64). Default 0. */
  readonly hashSeed?: number | bigint;
  /** Most keys held (LRU eviction beyond; pinned keys are never evicted). Default 2,000,000. */
  readonly maxKeys?: number;
  /** Most workers recorded per key, 1 to 255. Default 32. */
  readonly maxWorkersPerKey?: number;
  /** Weight of a block by the best tier a worker holds it in, in (0, 1]. Default gpu 1, cpu 0.8. */
  readonly tierWeights?: Partial<Record<Tier, number>>;
  /** Weights of {@link KvIndex.pick}'s formula. */
  readonly pickWeights?: Partial<PickWeights>;
  /** How long a numbered event batch waits for a missing predecessor, in ms. Default 2,000. */
  readonly gapTimeoutMs?: number;
  /** Most numbered batches waiting per worker. Default 256. */
  readonly maxPendingBatches?: number;
  /** Redis connection and key prefix (backends `'redis'` and `'redis-cluster'`). */
  readonly redis?: RedisBackendOptions;
  /** Metrics registry. Default prom-client's global registry. */
  readonly registry?: MetricsRegistry;
  /** Value of the `index` label on this index's metrics. Default `'default'`. */
  readonly name?: string;
}

/** An event from a worker, as {@link KvIndex.apply} takes them. */
export type KvEvent =
  | { readonly type: 'stored'; readonly keys: readonly string[]; readonly tier?: Tier }
  | { readonly type: 'removed'; readonly keys: readonly string[]; readonly tier?: Tier }
  | { readonly type: 'cleared' };

/** Options of the event methods. */
export interface EventOptions {
  /**
   * The batch's sequence number in the worker's stream (a non-negative integer). Numbered batches
   * apply in order, once; see {@link EventSequencer}. Unnumbered ones apply in call order.
   */
  readonly seq?: number;
  /**
   * Apply a numbered batch now even if batches before it are missing (the caller tried to fill the
   * gap and could not, e.g. the engine's replay buffer no longer holds them). Default false: wait.
   */
  readonly force?: boolean;
}

/** Options of {@link KvIndex.stored}. */
export interface StoredOptions extends EventOptions {
  /** Where the worker holds the blocks. Default `'gpu'`. */
  readonly tier?: Tier;
}

/** Options of {@link KvIndex.removed}. */
export interface RemovedOptions extends EventOptions {
  /** Remove the blocks from this tier only. Default: from every tier. */
  readonly tier?: Tier;
}

/** What an event call did. */
export interface EventResult {
  /** `applied`; `duplicate` (its `seq` was already applied: ignored); `buffered` (waiting for a missing `seq`). */
  readonly status: 'applied' | 'duplicate' | 'buffered';
  /** Keys evicted by the key bound (0 unless applied). */
  readonly evictedKeys: number;
  /** Holders evicted by the per-key worker bound (0 unless applied). */
  readonly evictedHolders: number;
}

/** Size of an index. */
export interface IndexStats extends BackendStats {
  /** Numbered event batches waiting for a missing predecessor in this process. */
  readonly pendingBatches: number;
}

const WORKER_MAX = 256;

function positiveInt(v: unknown, name: string, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${name} is ${describeValue(v)}: pass an integer from 1 to ${max.toLocaleString('en-US')}`,
      { field: name },
    );
  }
  return v;
}

function checkWorker(worker: unknown): string {
  if (typeof worker !== 'string' || worker.length === 0 || worker.length > WORKER_MAX) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `worker is ${describeValue(worker)}: name a worker with a non-empty string of at most ${WORKER_MAX} characters`,
      { field: 'worker' },
    );
  }
  return worker;
}

function checkTier(tier: unknown, dflt: Tier | undefined): Tier | undefined {
  if (tier === undefined) return dflt;
  if (!TIERS.includes(tier as Tier)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `tier is ${describeValue(tier)}: use one of ${TIERS.map((t) => `'${t}'`).join(', ')}`,
      { field: 'tier' },
    );
  }
  return tier as Tier;
}

function checkSeq(seq: unknown): number | undefined {
  if (seq === undefined) return undefined;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `seq is ${describeValue(seq)}: a sequence number is a non-negative safe integer`,
      { field: 'seq' },
    );
  }
  return seq;
}

function checkWorkers(workers: unknown): ReadonlySet<string> | undefined {
  if (workers === undefined) return undefined;
  if (
    workers === null ||
    typeof workers !== 'object' ||
    typeof (workers as Iterable<unknown>)[Symbol.iterator] !== 'function'
  ) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `workers is ${describeValue(workers)}: pass an array, Set or other iterable of worker names, or nothing for all workers`,
      { field: 'workers' },
    );
  }
  const set = new Set<string>();
  for (const w of workers as Iterable<unknown>) set.add(checkWorker(w));
  return set;
}

/**
 * The KV block location index. Create with {@link KvIndex.create}.
 *
 * @example
 * ```ts
 * const index = await KvIndex.create();                       // in memory
 * await index.stored('decode-0', index.blockKeys(promptTokens));
 * const scores = await index.score(nextPromptTokens);        // Map { 'decode-0' => 12 }
 * const { worker, reason } = await index.pick(nextPromptTokens, { 'decode-0': { queue: 3 }, 'decode-1': { queue: 0 } });
 * ```
 */
export class KvIndex {
  /** Which storage this index uses. */
  readonly backend: BackendKind;
  /** Tokens per block. */
  readonly blockSize: number;
  /** The block hasher (exposed for engines' event translation). */
  readonly hasher: BlockHasher;
  private readonly tierWeight: Readonly<Record<Tier, number>>;
  private readonly weights: PickWeights;
  private readonly metrics: IndexMetrics;
  private readonly sequencer: EventSequencer;
  private closed = false;

  private constructor(
    private readonly store: IndexBackend,
    hasher: BlockHasher,
    options: KvIndexOptions,
  ) {
    this.backend = store.kind;
    this.hasher = hasher;
    this.blockSize = hasher.blockSize;
    const tw = { gpu: 1, cpu: 0.8, ...(options.tierWeights ?? {}) };
    for (const t of TIERS) {
      if (typeof tw[t] !== 'number' || !(tw[t] > 0 && tw[t] <= 1)) {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `tierWeights.${t} is ${describeValue(tw[t])}: a tier weight is a number in (0, 1]`,
          { field: `tierWeights.${t}` },
        );
      }
    }
    this.tierWeight = tw;
    this.weights = pickWeights(options.pickWeights);
    this.metrics = new IndexMetrics(options.registry ?? defaultRegistry(), store.kind, options.name ?? 'default');
    this.sequencer = new EventSequencer(async (w, seq, force, ops) => store.apply(w, seq, force, ops), {
      gapTimeoutMs: positiveInt(options.gapTimeoutMs, 'gapTimeoutMs', 3_600_000, 2_000),
      maxPending: positiveInt(options.maxPendingBatches, 'maxPendingBatches', 1_000_000, 256),
      onApplied: (o, ops) => this.onApplied(o, ops),
      onBatch: (s) => this.metrics.batch(s),
    });
  }

  /**
   * Creates an index. With `backend: 'redis'`, connects first.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on bad options; `ERR_KVWIRE_BACKEND_UNAVAILABLE`
   *   when Redis cannot be reached; `ERR_KVWIRE_INCOMPATIBLE` when the Redis prefix holds an index
   *   with other settings.
   */
  static async create(options: KvIndexOptions = {}): Promise<KvIndex> {
    if (options === null || typeof options !== 'object') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `options is ${describeValue(options)}: pass an object like { backend: 'memory' }`,
        { field: 'options' },
      );
    }
    const hasher = new BlockHasher({ blockSize: options.blockSize, hashSeed: options.hashSeed });
    const limits = {
      maxKeys: positiveInt(options.maxKeys, 'maxKeys', 2 ** 31 - 1, 2_000_000),
      maxWorkersPerKey: positiveInt(options.maxWorkersPerKey, 'maxWorkersPerKey', 255, 32),
    };
    const kind = options.backend ?? 'memory';
    let store: IndexBackend;
    if (kind === 'memory') {
      store = new MemoryBackend(limits);
    } else if (kind === 'redis' || kind === 'redis-cluster') {
      const { RedisBackend } = await import('./redis.js');
      const seed = BigInt(options.hashSeed ?? 0).toString(); // validated by the hasher
      store = await RedisBackend.connect(options.redis ?? {}, kind === 'redis-cluster', {
        ...limits,
        blockSize: hasher.blockSize,
        hashSeed: seed,
      });
    } else {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `backend is ${describeValue(kind)}: use 'memory', 'redis' or 'redis-cluster'`,
        {
          field: 'backend',
        },
      );
    }
    try {
      return new KvIndex(store, hasher, options);
    } catch (e) {
      await store.close();
      throw e;
    }
  }

  private live(what: string): void {
    if (this.closed)
      throw new KvwireError(ErrorCode.CLOSED, `the index is closed: cannot ${what}; create a new KvIndex`);
  }

  private onApplied(o: ApplyOutcome, ops: readonly IndexOp[]): void {
    this.metrics.applied(o.keys, o.evictedKeys, o.evictedHolders);
    for (const op of ops) this.metrics.event(op.type);
  }

  /**
   * Keys of the full blocks of `tokens` (see `hash.ts` for the exact definition). Pure: works after
   * `close()` too.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a token that is not an integer in [0, 2^32).
   */
  blockKeys(tokens: TokenIds, extra?: BlockExtra): string[] {
    return this.hasher.keys(tokens, extra);
  }

  /** `worker` now holds the blocks `keys` (in `options.tier`, default GPU). */
  async stored(worker: string, keys: readonly string[], options: StoredOptions = {}): Promise<EventResult> {
    return this.apply(worker, [{ type: 'stored', keys, tier: options.tier ?? 'gpu' }], options);
  }

  /** `worker` no longer holds the blocks `keys` (in `options.tier`, or at all). */
  async removed(worker: string, keys: readonly string[], options: RemovedOptions = {}): Promise<EventResult> {
    const ev: KvEvent =
      options.tier === undefined ? { type: 'removed', keys } : { type: 'removed', keys, tier: options.tier };
    return this.apply(worker, [ev], options);
  }

  /** `worker` dropped its whole cache (it stays known). */
  async cleared(worker: string, options: EventOptions = {}): Promise<EventResult> {
    return this.apply(worker, [{ type: 'cleared' }], options);
  }

  /**
   * Applies a batch of events from `worker`, in order, atomically (one backend call).
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a malformed event (nothing is applied);
   *   `ERR_KVWIRE_BACKEND_UNAVAILABLE`; `ERR_KVWIRE_CLOSED`.
   */
  async apply(worker: string, events: readonly KvEvent[], options: EventOptions = {}): Promise<EventResult> {
    this.live('apply events');
    checkWorker(worker);
    const seq = checkSeq(options?.seq);
    if (!Array.isArray(events)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `events is ${describeValue(events)}: pass an array of { type: 'stored' | 'removed' | 'cleared', ... }`,
        { field: 'events' },
      );
    }
    const ops: IndexOp[] = events.map((ev: KvEvent, i) => {
      const where = `events[${i}]`;
      if (ev === null || typeof ev !== 'object') {
        throw new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `${where} is ${describeValue(ev)}: an event is an object with a type`,
          { index: i, field: where },
        );
      }
      switch (ev.type) {
        case 'stored':
          return {
            type: 'stored',
            keys: BlockKeyList.fromHex(ev.keys, `${where}.keys`),
            tier: checkTier(ev.tier, 'gpu')!,
          };
        case 'removed':
          return {
            type: 'removed',
            keys: BlockKeyList.fromHex(ev.keys, `${where}.keys`),
            tier: checkTier(ev.tier, undefined),
          };
        case 'cleared':
          return { type: 'cleared' };
        default:
          throw new KvwireError(
            ErrorCode.INVALID_ARGUMENT,
            `${where}.type is ${describeValue((ev as { type: unknown }).type)}: use 'stored', 'removed' or 'cleared'`,
            { index: i, field: `${where}.type` },
          );
      }
    });
    const r = await this.sequencer.submit(worker, seq, ops, options?.force === true && seq !== undefined);
    return {
      status: r.status,
      evictedKeys: r.outcome?.evictedKeys ?? 0,
      evictedHolders: r.outcome?.evictedHolders ?? 0,
    };
  }

  /** Forgets `worker` everywhere (it died or scaled down): its blocks, sequence number, pins and waiting batches. */
  async removeWorker(worker: string): Promise<void> {
    this.live('remove a worker');
    checkWorker(worker);
    this.sequencer.forget(worker);
    await this.store.removeWorker(worker);
  }

  /**
   * Pins (`worker`, key) for each key against eviction, e.g. while a lease holds the blocks; one
   * reference per call, dropped by {@link KvIndex.release}.
   */
  async acquire(worker: string, keys: readonly string[]): Promise<void> {
    this.live('pin blocks');
    checkWorker(worker);
    await this.store.acquire(worker, BlockKeyList.fromHex(keys));
  }

  /** Drops one reference per key taken by {@link KvIndex.acquire} (extra releases are ignored). */
  async release(worker: string, keys: readonly string[]): Promise<void> {
    this.live('unpin blocks');
    checkWorker(worker);
    await this.store.release(worker, BlockKeyList.fromHex(keys));
  }

  /**
   * Per worker, the tier-weighted number of consecutive leading blocks of `tokens` it holds: each
   * block of its run counts its best tier's weight (GPU 1, CPU 0.8 by default), so a worker's score
   * never exceeds the length of its cached prefix.
   *
   * @param workers - only these workers (each appears in the result, 0 if it holds nothing);
   *   default every worker with a score above 0.
   * @param extra - the request's extra keys (LoRA, cache salt), as given to `blockKeys`.
   */
  async score(tokens: TokenIds, workers?: Iterable<string>, extra?: BlockExtra): Promise<Map<string, number>> {
    const t0 = performance.now();
    this.live('score a prompt');
    return this.scoreList(this.hasher.keyList(tokens, extra), checkWorkers(workers), t0);
  }

  /** Like {@link KvIndex.score}, for block keys already computed. */
  async scoreKeys(keys: readonly string[], workers?: Iterable<string>): Promise<Map<string, number>> {
    const t0 = performance.now();
    this.live('score a prompt');
    return this.scoreList(BlockKeyList.fromHex(keys), checkWorkers(workers), t0);
  }

  private async scoreList(
    keys: BlockKeyList,
    workers: ReadonlySet<string> | undefined,
    t0: number,
  ): Promise<Map<string, number>> {
    const runs = await this.store.prefixRuns(keys, workers);
    const out = new Map<string, number>();
    if (workers !== undefined) for (const w of workers) out.set(w, 0);
    let hits = 0;
    for (const r of runs) {
      out.set(r.worker, r.gpu * this.tierWeight.gpu + r.cpu * this.tierWeight.cpu);
      hits = Math.max(hits, r.gpu + r.cpu);
    }
    this.metrics.lookup(keys.length, hits, (performance.now() - t0) / 1000);
    return out;
  }

  /**
   * Chooses a worker among those in `loads` for `tokens`, weighing each one's cached prefix against
   * its load (formula in `pick.ts`), and says why.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when `loads` is empty or malformed.
   */
  async pick(tokens: TokenIds, loads: Loads, options: { extra?: BlockExtra } = {}): Promise<PickResult> {
    const t0 = performance.now();
    this.live('pick a worker');
    const candidates = parseLoads(loads);
    const keys = this.hasher.keyList(tokens, options.extra);
    const scores = await this.scoreList(keys, checkWorkers(candidates.map((c) => c.worker)), t0);
    return choose(keys.length, scores, candidates, this.weights);
  }

  /** The workers holding `key` now and in which tiers, least recently stored first. */
  async holders(key: string): Promise<Holder[]> {
    this.live('read holders');
    return this.store.holders(BlockKeyList.fromHex([key], 'key').hex[0]!);
  }

  /** Size of the index. */
  async stats(): Promise<IndexStats> {
    this.live('read stats');
    return { ...(await this.store.stats()), pendingBatches: this.sequencer.pending };
  }

  /**
   * Deletes what removed or cleared workers left behind (their holders are already invisible) and
   * the keys left with no holder; returns how many keys were deleted. Optional housekeeping: the
   * LRU bound reclaims the same space in time.
   */
  async compact(): Promise<number> {
    this.live('compact');
    const n = await this.store.compact();
    this.metrics.applied((await this.store.stats()).keys, 0, 0);
    return n;
  }

  /** Stops timers, drops waiting batches, closes the Redis connection. Later calls fail with `ERR_KVWIRE_CLOSED`. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sequencer.close();
    await this.store.close();
  }
}
