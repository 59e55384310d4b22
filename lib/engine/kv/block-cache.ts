/**
 * The engine's KV block cache: registered memory (lib/pd's `registerKvCache`) cut into blocks of
 * `blockTokens` tokens, a pool of free blocks, and vLLM-style automatic prefix caching — full
 * blocks stay after their request, keyed by their chained hash, reference counted, evicted least
 * recently used when the pool runs dry. Every block that enters the prefix cache is announced
 * (`onStored`, a KV event `BlockStored`), every eviction too (`onRemoved`).
 *
 * A block is "owned" by whoever allocated or acquired it (a running request, a prefill lease)
 * until `release`; a cached block with no owner is evictable. The hazard guarded: a block a lease
 * still exposes to a decode worker's READs must never be evicted and rewritten — leases own
 * their blocks until lib/pd frees them.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../errors.js';
import type { KvCacheRank } from '../../pd/index.js';
import { tensorViews } from '../runtimes/synthetic/content.js';
import type { KvBlockViews } from '../runtimes/types.js';
import { BlockPool } from './block-pool.js';
import { eventHash, type BlockHash } from './block-hashes.js';

/** A block announced to KV-event subscribers. */
export interface StoredBlock {
  /** Event hash (53-bit safe integer). */
  readonly hash: number;
  /** Parent's event hash, null for a first block. */
  readonly parent: number | null;
  /** The block's token ids. */
  readonly tokens: readonly number[];
}

interface Entry {
  readonly key: string;
  readonly blockId: number;
  readonly hash: number;
  refs: number;
}

/** Hooks for KV events and metrics. */
export interface BlockCacheHooks {
  /** Blocks entered the prefix cache (in prompt order). */
  onStored?(blocks: readonly StoredBlock[]): void;
  /** Blocks left it (event hashes). */
  onRemoved?(hashes: readonly number[]): void;
}

/** The engine's KV block cache (rank 0 of a registered cache). */
export class BlockCache {
  /** The registered rank. */
  readonly rank: KvCacheRank;
  /** Views for runtimes. */
  readonly views: KvBlockViews;
  /** Tokens per block. */
  readonly blockTokens: number;
  /** Blocks evicted since start. */
  evictions = 0;
  readonly #pool: BlockPool;
  readonly #byKey = new Map<string, Entry>(); // insertion order: least recently used first
  readonly #byId = new Map<number, Entry>();
  readonly #private = new Map<number, number>(); // block id -> owners, for blocks not in the prefix cache
  readonly #hooks: BlockCacheHooks;

  constructor(rank: KvCacheRank, hooks: BlockCacheHooks = {}) {
    this.rank = rank;
    this.views = { layout: rank.layout, tensors: tensorViews(rank.layout, rank.regions, rank.addressing) };
    this.blockTokens = rank.layout.blockTokens;
    this.#pool = new BlockPool(rank.layout.numBlocks);
    this.#hooks = hooks;
    // Touch every page now: the first write into fresh shared memory faults page by page, which
    // would land on the first hand-offs' TTFT instead of on start-up.
    for (const t of this.views.tensors) t.fill(0);
  }

  /** Blocks in the cache. */
  get total(): number {
    return this.#pool.total;
  }

  /** Blocks owned by a request or lease, or cached (vLLM's KV cache usage counts both). */
  get used(): number {
    return this.#pool.used;
  }

  /** Blocks owned by a running request or a lease right now. */
  get pinned(): number {
    let n = this.#private.size;
    for (const e of this.#byId.values()) if (e.refs > 0) n++;
    return n;
  }

  /** Blocks in the prefix cache. */
  get cached(): number {
    return this.#byKey.size;
  }

  /**
   * The longest run of leading `hashes` cached (at most `limit` blocks): their ids, each owned by
   * the caller until `release`.
   */
  acquirePrefix(hashes: readonly BlockHash[], limit = hashes.length): number[] {
    const ids: number[] = [];
    for (let i = 0; i < Math.min(limit, hashes.length); i++) {
      const h = hashes[i]!;
      if (!h.full) break;
      const e = this.#byKey.get(h.key);
      if (e === undefined) break;
      e.refs++;
      this.#byKey.delete(h.key);
      this.#byKey.set(h.key, e); // most recently used
      ids.push(e.blockId);
    }
    return ids;
  }

  /**
   * Takes `n` free blocks (evicting unowned cached blocks, least recently used first), owned by
   * the caller until `release`.
   *
   * @throws KvwireError `ERR_KVWIRE_CAPACITY` when even eviction cannot free enough.
   */
  allocate(n: number): number[] {
    if (this.#pool.free < n) this.#evictFor(n);
    const ids = this.#pool.allocate(n);
    for (const id of ids) this.#private.set(id, 1);
    return ids;
  }

  /**
   * Publishes the full blocks among `blockIds[from..]` (which hold `hashes[from..]`) into the
   * prefix cache; ownership stays with the caller. A block whose hash is already cached (another
   * request computed it meanwhile) stays private and goes back to the pool on release.
   */
  publish(hashes: readonly BlockHash[], blockIds: readonly number[], tokens: readonly number[], from: number): void {
    const stored: StoredBlock[] = [];
    const B = this.blockTokens;
    for (let i = from; i < Math.min(hashes.length, blockIds.length); i++) {
      const h = hashes[i]!;
      const id = blockIds[i]!;
      if (!h.full || this.#byKey.has(h.key) || this.#byId.has(id)) continue;
      const owners = this.#private.get(id);
      if (owners === undefined) continue;
      this.#private.delete(id);
      const e: Entry = { key: h.key, blockId: id, hash: eventHash(h.key), refs: owners };
      this.#byKey.set(h.key, e);
      this.#byId.set(id, e);
      stored.push({
        hash: e.hash,
        parent: i === 0 ? null : eventHash(hashes[i - 1]!.key),
        tokens: tokens.slice(i * B, (i + 1) * B),
      });
    }
    if (stored.length > 0) this.#hooks.onStored?.(stored);
  }

  /** Adds an owner to blocks the caller already owns (a lease taking over a request's blocks). */
  retain(blockIds: readonly number[]): void {
    for (const id of blockIds) {
      const e = this.#byId.get(id);
      if (e !== undefined) e.refs++;
      else if (this.#private.has(id)) this.#private.set(id, this.#private.get(id)! + 1);
      else
        throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `block ${id} is not owned by anyone: it cannot be retained`);
    }
  }

  /** Gives up one ownership of each block: cached blocks stay (evictable when unowned), private ones return to the pool. */
  release(blockIds: readonly number[]): void {
    const back: number[] = [];
    for (const id of blockIds) {
      const e = this.#byId.get(id);
      if (e !== undefined) {
        if (e.refs <= 0)
          throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `block ${id} released more often than owned`);
        e.refs--;
        continue;
      }
      const owners = this.#private.get(id);
      if (owners === undefined)
        throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `block ${id} is not owned: double release`);
      if (owners > 1) this.#private.set(id, owners - 1);
      else {
        this.#private.delete(id);
        back.push(id);
      }
    }
    if (back.length > 0) this.#pool.release(back);
  }

  /** Evicts every unowned cached block; returns the hashes removed. */
  clear(): number[] {
    return this.#evictFor(Infinity);
  }

  #evictFor(need: number): number[] {
    const removed: number[] = [];
    const ids: number[] = [];
    for (const [k, e] of this.#byKey) {
      if (this.#pool.free + ids.length >= need) break;
      if (e.refs > 0) continue;
      this.#byKey.delete(k);
      this.#byId.delete(e.blockId);
      ids.push(e.blockId);
      removed.push(e.hash);
    }
    if (ids.length > 0) {
      this.#pool.release(ids);
      this.evictions += ids.length;
      this.#hooks.onRemoved?.(removed);
    }
    return removed;
  }
}
