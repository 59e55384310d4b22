/**
 * The fake engine's block allocator: a free list over `[0, total)` that refuses double frees and
 * foreign ids, so a leak or a double free in the coordinators shows up as an error or as blocks
 * missing at the end — and a decode-side prefix cache of full blocks (vLLM's automatic prefix
 * caching in miniature): blocks keyed by their chained hash, reference counted, evicted least
 * recently used when the pool runs dry.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../errors.js';

/** A pool of block ids. */
export class BlockPool {
  /** Blocks in the pool. */
  readonly total: number;
  readonly #free: number[] = [];
  readonly #used: Uint8Array;

  constructor(total: number) {
    this.total = total;
    this.#used = new Uint8Array(total);
    for (let b = total - 1; b >= 0; b--) this.#free.push(b); // pops 0, 1, 2, ...: contiguous runs at first
  }

  /** Free blocks. */
  get free(): number {
    return this.#free.length;
  }

  /** Blocks in use. */
  get used(): number {
    return this.total - this.#free.length;
  }

  /**
   * Takes `n` blocks.
   *
   * @throws KvwireError `ERR_KVWIRE_CAPACITY` when fewer than `n` are free.
   */
  allocate(n: number): number[] {
    if (n > this.#free.length) {
      throw new KvwireError(
        ErrorCode.CAPACITY,
        `the block pool has ${this.#free.length} free blocks of ${this.total}, ${n} needed`,
      );
    }
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = this.#free.pop()!;
      this.#used[b] = 1;
      out.push(b);
    }
    return out;
  }

  /**
   * Gives blocks back.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for an id not in use (a double free) or out of range.
   */
  release(ids: readonly number[]): void {
    for (const b of ids) {
      if (!Number.isInteger(b) || b < 0 || b >= this.total || this.#used[b] !== 1) {
        throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `block ${b} is not in use: double free or foreign id`, {
          index: b,
        });
      }
    }
    // Freed in reverse so the next allocation of as many blocks gets them back in order.
    for (let i = ids.length - 1; i >= 0; i--) {
      this.#used[ids[i]!] = 0;
      this.#free.push(ids[i]!);
    }
  }
}

interface CachedBlock {
  readonly blockId: number;
  refs: number;
}

/** Full blocks kept after their request finished, by chained hash. */
export class PrefixCache {
  readonly #byKey = new Map<string, CachedBlock>(); // insertion order = least recently used first
  readonly #pool: BlockPool;

  constructor(pool: BlockPool) {
    this.#pool = pool;
  }

  /** Blocks cached. */
  get size(): number {
    return this.#byKey.size;
  }

  /** The longest run of leading `keys` cached: their block ids, each pinned (unpin when done). */
  match(keys: readonly string[]): number[] {
    const ids: number[] = [];
    for (const k of keys) {
      const c = this.#byKey.get(k);
      if (c === undefined) break;
      c.refs++;
      this.#byKey.delete(k);
      this.#byKey.set(k, c); // most recently used
      ids.push(c.blockId);
    }
    return ids;
  }

  /** Unpins blocks `match` returned for `keys`. */
  unpin(keys: readonly string[]): void {
    for (const k of keys) {
      const c = this.#byKey.get(k);
      if (c !== undefined && c.refs > 0) c.refs--;
    }
  }

  /** Keeps `blockId` under `key`; returns false (and keeps nothing) when the key is cached already. */
  insert(key: string, blockId: number): boolean {
    if (this.#byKey.has(key)) return false;
    this.#byKey.set(key, { blockId, refs: 0 });
    return true;
  }

  /** Evicts unpinned blocks, least recently used first, until `need` blocks are free or none is left to evict. */
  evictFor(need: number): void {
    for (const [k, c] of this.#byKey) {
      if (this.#pool.free >= need) return;
      if (c.refs > 0) continue;
      this.#byKey.delete(k);
      this.#pool.release([c.blockId]);
    }
  }

  /** Evicts every unpinned block; returns how many stay pinned. */
  clear(): number {
    this.evictFor(Infinity);
    return this.#byKey.size;
  }
}
