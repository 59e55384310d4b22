/**
 * A fake LLM engine for tests and the demo: a block pool, a registered KV cache per TP rank, and
 * the real coordinators over real agents — with no ML. Its prefill writes deterministic bytes
 * (see `content.ts`) into the blocks of a request and holds them; its decode pulls them, checks
 * every byte of every block (pulled or prefix-cached) and "generates" deterministic tokens.
 *
 * @packageDocumentation
 */
import type { Addressing, KvOrder, KvSplit, ModelShape } from '../../../kv/index.js';
import { KvLayout } from '../../../kv/index.js';
import type { MetricsRegistry } from '../../../metrics.js';
import {
  PrefillCoordinator,
  registerKvCache,
  type BlocksFreedEvent,
  type KvCacheRank,
  type KvTransferParams,
  type SharedSecret,
} from '../../../pd/index.js';
import type { Access, Agent } from '../../../transport/index.js';
import { BlockPool } from '../../kv/block-pool.js';
import { blockHashes, tensorViews, writeBlock } from './content.js';

/** A request of the fake engine: an id and its prompt tokens. */
export interface FakeRequest {
  /** Request id. */
  readonly id: string;
  /** Prompt token ids. */
  readonly tokens: readonly number[];
}

/** What both fake engines are built from. */
export interface FakeEngineOptions {
  /** Engine id. */
  readonly engineId: string;
  /** One agent per TP rank (the engine registers its cache with them; the caller closes them). */
  readonly agents: readonly Agent[];
  /** The model's KV shape. */
  readonly model: ModelShape;
  /** Blocks in the cache. */
  readonly numBlocks: number;
  /** Tokens per block; default 16. */
  readonly blockTokens?: number;
  /** K/V storage (MHA); default 'split'. */
  readonly kv?: KvSplit;
  /** Block order (MHA); default 'HND'. */
  readonly order?: KvOrder;
  /** One region per tensor, or one arena; default 'tensor'. */
  readonly addressing?: Addressing;
  /** Shared handshake secret. */
  readonly secret: SharedSecret;
  /** Metrics registry. */
  readonly registry?: MetricsRegistry;
}

/** Registers a cache for every rank of a fake engine. */
export function fakeCacheRanks(o: FakeEngineOptions, access: Access): KvCacheRank[] {
  const ranks: KvCacheRank[] = [];
  try {
    o.agents.forEach((agent, rank) => {
      const layout = new KvLayout({
        model: o.model,
        numBlocks: o.numBlocks,
        blockTokens: o.blockTokens ?? 16,
        tp: { size: o.agents.length, rank },
        ...(o.model.attention === 'mla' ? {} : { kv: o.kv ?? 'split', order: o.order ?? 'HND' }),
      });
      ranks.push(registerKvCache(agent, layout, { access, addressing: o.addressing ?? 'tensor' }));
    });
  } catch (e) {
    releaseCacheRanks(ranks);
    throw e;
  }
  return ranks;
}

/** Deregisters what {@link fakeCacheRanks} registered (ignoring agents already closed). */
export function releaseCacheRanks(ranks: readonly KvCacheRank[]): void {
  for (const r of ranks) {
    for (const region of r.regions) {
      try {
        region.deregister();
      } catch {
        // busy: a transfer still uses it; the agent's close releases it
      }
    }
  }
}

/** Options of {@link FakePrefillEngine.create}. */
export interface FakePrefillOptions extends FakeEngineOptions {
  /** Base lease duration (ms). */
  readonly leaseMs?: number;
  /** Extension of a lease by each heartbeat (ms). */
  readonly leaseExtensionMs?: number;
  /** Side channel bind address. */
  readonly host?: string;
  /** Side channel port. */
  readonly port?: number;
}

/** The prefill half of the fake engine. */
export class FakePrefillEngine {
  /** The block pool. */
  readonly pool: BlockPool;
  /** The coordinator. */
  readonly coordinator: PrefillCoordinator;
  /** Each rank's cache. */
  readonly ranks: readonly KvCacheRank[];
  /** Blocks freed, by reason. */
  readonly freed: Record<BlocksFreedEvent['reason'], number> = { notified: 0, expired: 0, cancelled: 0, closed: 0 };
  readonly #views: Uint8Array[][];

  private constructor(pool: BlockPool, coordinator: PrefillCoordinator, ranks: KvCacheRank[]) {
    this.pool = pool;
    this.coordinator = coordinator;
    this.ranks = ranks;
    this.#views = ranks.map((r) => tensorViews(r.layout, r.regions, r.addressing));
  }

  /** Registers the cache and starts the coordinator. */
  static async create(o: FakePrefillOptions): Promise<FakePrefillEngine> {
    const pool = new BlockPool(o.numBlocks);
    const ranks = fakeCacheRanks(o, 'read');
    let engine: FakePrefillEngine | undefined;
    try {
      const coordinator = await PrefillCoordinator.create({
        engineId: o.engineId,
        ranks,
        secret: o.secret,
        ...(o.leaseMs === undefined ? {} : { leaseMs: o.leaseMs }),
        ...(o.leaseExtensionMs === undefined ? {} : { leaseExtensionMs: o.leaseExtensionMs }),
        ...(o.host === undefined ? {} : { host: o.host }),
        ...(o.port === undefined ? {} : { port: o.port }),
        ...(o.registry === undefined ? {} : { registry: o.registry }),
        onFree: (e) => {
          pool.release(e.blockIds);
          if (engine !== undefined) engine.freed[e.reason] += e.blockIds.length;
        },
      });
      engine = new FakePrefillEngine(pool, coordinator, ranks);
      return engine;
    } catch (e) {
      releaseCacheRanks(ranks);
      throw e;
    }
  }

  /**
   * "Computes" the KV of `request` into fresh blocks of every rank and holds them for a decode worker.
   *
   * @throws KvwireError `ERR_KVWIRE_CAPACITY` when the pool is out of blocks; the coordinator's errors.
   */
  prefill(request: FakeRequest, options: { signal?: AbortSignal; leaseMs?: number } = {}): KvTransferParams {
    const layout = this.ranks[0]!.layout;
    const hashes = blockHashes(request.tokens, layout.blockTokens);
    const ids = this.pool.allocate(hashes.length);
    try {
      this.ranks.forEach((r, i) => {
        for (let b = 0; b < ids.length; b++) writeBlock(r.layout, this.#views[i]!, ids[b]!, hashes[b]!.seed);
      });
      return this.coordinator.hold({ requestId: request.id, blockIds: ids, ...options });
    } catch (e) {
      this.pool.release(ids);
      throw e;
    }
  }

  /** Closes the coordinator (freeing held leases) and deregisters the cache. */
  async close(): Promise<void> {
    await this.coordinator.close();
    releaseCacheRanks(this.ranks);
  }
}
