/**
 * The decode half of the fake engine: a prefix cache of full blocks, pulls through the real
 * `DecodeCoordinator` (reading only the blocks it does not hold), a check of every byte of every
 * block of the request, and deterministic "generated" tokens. Under policy `'recompute'` a failed
 * pull is followed by a local "prefill" (the same bytes, written here).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../../errors.js';
import { DecodeCoordinator, type FailurePolicy, type KvCacheRank, type PullReady } from '../../../pd/index.js';
import { BlockPool, PrefixCache } from '../../kv/block-pool.js';
import { blockHashes, generateTokens, tensorViews, verifyBlock, writeBlock } from './content.js';
import { fakeCacheRanks, releaseCacheRanks, type FakeEngineOptions, type FakeRequest } from './fake-engine.js';

/** Options of {@link FakeDecodeEngine.create}. */
export interface FakeDecodeOptions extends FakeEngineOptions {
  /** Default failure policy; default 'fail'. */
  readonly policy?: FailurePolicy;
  /** Keep full blocks after a request for later prefix hits; default true. */
  readonly prefixCaching?: boolean;
  /** Backpressure and deadlines, passed to the coordinator. */
  readonly maxInFlightBytes?: number;
  /** Most pulls transferring at once. */
  readonly maxConcurrentRequests?: number;
  /** Pull deadline (ms). */
  readonly timeoutMs?: number;
  /** Handshake deadline (ms). */
  readonly handshakeTimeoutMs?: number;
  /** Quarantine of blocks of failed pulls (ms). */
  readonly quarantineMs?: number;
  /** Interval of lease heartbeats to prefills (ms; 0: none). */
  readonly heartbeatIntervalMs?: number;
  /** Tokens to generate per request; default 8. */
  readonly generate?: number;
}

/** What {@link FakeDecodeEngine.decode} reports. */
export interface FakeDecodeResult {
  /** 'ready' (pulled) or 'recompute' (pull failed, prefilled locally). */
  readonly status: 'ready' | 'recompute';
  /** The request. */
  readonly requestId: string;
  /** Generated tokens. */
  readonly tokens: number[];
  /** Bytes checked (every block of the request, every rank). */
  readonly verifiedBytes: number;
  /** Blocks of the request. */
  readonly blocks: number;
  /** Blocks served from the prefix cache. */
  readonly blocksCached: number;
  /** The pull, when it succeeded. */
  readonly pull?: PullReady;
  /** Why the pull failed, under 'recompute'. */
  readonly reason?: KvwireError;
}

/** The decode half of the fake engine. */
export class FakeDecodeEngine {
  /** The block pool. */
  readonly pool: BlockPool;
  /** The prefix cache. */
  readonly prefixes: PrefixCache;
  /** The coordinator. */
  readonly coordinator: DecodeCoordinator;
  /** Each rank's cache. */
  readonly ranks: readonly KvCacheRank[];
  readonly #views: Uint8Array[][];
  readonly #caching: boolean;
  readonly #generate: number;

  private constructor(
    pool: BlockPool,
    prefixes: PrefixCache,
    coordinator: DecodeCoordinator,
    ranks: KvCacheRank[],
    o: FakeDecodeOptions,
  ) {
    this.pool = pool;
    this.prefixes = prefixes;
    this.coordinator = coordinator;
    this.ranks = ranks;
    this.#views = ranks.map((r) => tensorViews(r.layout, r.regions, r.addressing));
    this.#caching = o.prefixCaching ?? true;
    this.#generate = o.generate ?? 8;
  }

  /** Registers the cache and creates the coordinator. */
  static async create(o: FakeDecodeOptions): Promise<FakeDecodeEngine> {
    const pool = new BlockPool(o.numBlocks);
    const prefixes = new PrefixCache(pool);
    const ranks = fakeCacheRanks(o, 'none');
    try {
      const opt = <K extends keyof FakeDecodeOptions>(k: K) => (o[k] === undefined ? {} : { [k]: o[k] });
      const coordinator = await DecodeCoordinator.create({
        engineId: o.engineId,
        ranks,
        secret: o.secret,
        ...opt('policy'),
        ...opt('maxInFlightBytes'),
        ...opt('maxConcurrentRequests'),
        ...opt('timeoutMs'),
        ...opt('handshakeTimeoutMs'),
        ...opt('quarantineMs'),
        ...opt('heartbeatIntervalMs'),
        ...opt('registry'),
        allocator: {
          allocate: (_id, count) => {
            prefixes.evictFor(count);
            return pool.allocate(count);
          },
          free: (_id, ids) => pool.release(ids),
        },
      });
      return new FakeDecodeEngine(pool, prefixes, coordinator, ranks, o);
    } catch (e) {
      releaseCacheRanks(ranks);
      throw e;
    }
  }

  /**
   * Pulls the KV of `request`, checks every byte, generates tokens, and finishes the request (full
   * blocks go to the prefix cache, the rest back to the pool).
   *
   * @throws KvwireError the pull's error under policy 'fail' or when cancelled;
   *   `ERR_KVWIRE_CORRUPTED` when a byte differs.
   */
  async decode(
    request: FakeRequest,
    kvTransferParams: unknown,
    options: { signal?: AbortSignal; policy?: FailurePolicy } = {},
  ): Promise<FakeDecodeResult> {
    const layout = this.ranks[0]!.layout;
    const hashes = blockHashes(request.tokens, layout.blockTokens);
    const fullKeys = hashes.filter((h) => h.full).map((h) => h.key);
    const prefixIds = this.#caching ? this.prefixes.match(fullKeys) : [];
    const cached = prefixIds.length;
    let table: number[] = [];
    try {
      const result = await this.coordinator.pull({
        requestId: request.id,
        kvTransferParams,
        cachedPrefixBlocks: cached,
        ...(options.signal === undefined ? {} : { signal: options.signal }),
        ...(options.policy === undefined ? {} : { policy: options.policy }),
      });
      let fresh: number[];
      if (result.status === 'ready') {
        fresh = [...result.localBlockIds];
      } else {
        // Prefill locally: the same deterministic bytes, written here.
        this.prefixes.evictFor(hashes.length - cached);
        fresh = this.pool.allocate(hashes.length - cached);
        this.ranks.forEach((r, i) =>
          fresh.forEach((b, j) => writeBlock(r.layout, this.#views[i]!, b, hashes[cached + j]!.seed)),
        );
      }
      table = [...prefixIds, ...fresh];
      let verifiedBytes = 0;
      this.ranks.forEach((r, i) => {
        table.forEach((b, j) => {
          verifiedBytes += verifyBlock(r.layout, this.#views[i]!, b, hashes[j]!.seed, `request '${request.id}'`);
        });
      });
      return {
        status: result.status,
        requestId: request.id,
        tokens: generateTokens(hashes[hashes.length - 1]!.seed, this.#generate),
        verifiedBytes,
        blocks: hashes.length,
        blocksCached: cached,
        ...(result.status === 'ready' ? { pull: result } : { reason: result.reason }),
      };
    } finally {
      this.#finish(
        hashes.map((h) => (h.full ? h.key : undefined)),
        table.slice(cached),
      );
      if (this.#caching) this.prefixes.unpin(fullKeys.slice(0, cached));
    }
  }

  // The request is over: its full blocks stay as prefix cache (unless cached already), the rest go back.
  #finish(keys: (string | undefined)[], fresh: number[]): void {
    const cached = keys.length - fresh.length;
    const back: number[] = [];
    fresh.forEach((b, j) => {
      const key = keys[cached + j];
      if (!(this.#caching && key !== undefined && this.prefixes.insert(key, b))) back.push(b);
    });
    if (back.length > 0) this.pool.release(back);
  }

  /**
   * Empties the prefix cache (every block back to the pool).
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when blocks are still pinned by requests.
   */
  drain(): void {
    const pinned = this.prefixes.clear();
    if (pinned > 0)
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `${pinned} prefix blocks are still pinned by requests in progress`,
      );
  }

  /** Closes the coordinator and deregisters the cache. */
  async close(): Promise<void> {
    await this.coordinator.close();
    releaseCacheRanks(this.ranks);
  }
}
