/**
 * Types shared by the index's backends and its facade ({@link KvIndex}).
 *
 * @packageDocumentation
 */
import type { BlockKeyList } from './hash.js';

/** Where a worker holds a block: GPU memory, or offloaded to CPU memory. */
export type Tier = 'gpu' | 'cpu';

/** Every tier, best first. */
export const TIERS: readonly Tier[] = ['gpu', 'cpu'];

/** Bit of each tier in a holder's tier mask (a worker may hold a block in both tiers). */
export const TIER_BIT: Readonly<Record<Tier, number>> = { gpu: 1, cpu: 2 };

/** The tiers in a tier mask, best first. */
export function tiersOf(mask: number): Tier[] {
  return TIERS.filter((t) => (mask & TIER_BIT[t]) !== 0);
}

/** Which storage an index uses. */
export type BackendKind = 'memory' | 'redis' | 'redis-cluster';

/** One change to the index, as applied by a backend. */
export type IndexOp =
  | { readonly type: 'stored'; readonly keys: BlockKeyList; readonly tier: Tier }
  | { readonly type: 'removed'; readonly keys: BlockKeyList; readonly tier?: Tier | undefined }
  | { readonly type: 'cleared' };

/** What a backend did with a batch of operations from one worker. */
export interface ApplyOutcome {
  /**
   * `applied`; `duplicate` (its sequence number was at or below the last applied one: ignored);
   * `gap` (a sequence number is missing before it: not applied, the caller may buffer it).
   */
  readonly status: 'applied' | 'duplicate' | 'gap';
  /** The worker's last applied sequence number after this call, if it ever sent one. */
  readonly lastSeq: number | undefined;
  /** Keys evicted by the key bound while applying. */
  readonly evictedKeys: number;
  /** Holders evicted by the per-key worker bound while applying. */
  readonly evictedHolders: number;
  /** Keys in the index afterwards. */
  readonly keys: number;
}

/** A worker's run of consecutive leading blocks, counted by the best tier it holds each in. */
export interface PrefixRun {
  /** The worker. */
  readonly worker: string;
  /** Blocks of the run held in GPU memory. */
  readonly gpu: number;
  /** Blocks of the run held in CPU memory only. */
  readonly cpu: number;
}

/** A worker holding a block. */
export interface Holder {
  /** The worker. */
  readonly worker: string;
  /** The tiers it holds the block in, best first. */
  readonly tiers: readonly Tier[];
}

/** Size of an index. */
export interface BackendStats {
  /** Keys held (including keys whose holders were all removed or cleared, until swept: see `compact`). */
  readonly keys: number;
  /** Workers known (stored at least once and not removed). */
  readonly workers: number;
  /** Keys pinned by at least one reference. */
  readonly pinnedKeys: number;
}

/** Bounds every backend enforces. */
export interface BackendLimits {
  /** Most keys held; least recently used unpinned keys are evicted beyond it. */
  readonly maxKeys: number;
  /** Most workers per key; the least recently stored unpinned holder is evicted beyond it. */
  readonly maxWorkersPerKey: number;
}

/**
 * A storage behind {@link KvIndex}. Both backends implement exactly the same semantics (the shared
 * behaviour tests run against both); methods may answer synchronously or with a promise.
 *
 * Operations take effect in call order: the in-memory backend applies them synchronously, the Redis
 * backend sends each as one script call on one connection, which Redis runs in order.
 */
export interface IndexBackend {
  /** Which storage this is. */
  readonly kind: BackendKind;
  /** Applies `ops` for `worker`; with `seq`, only if it is the next one (or `force` and newer). */
  apply(
    worker: string,
    seq: number | undefined,
    force: boolean,
    ops: readonly IndexOp[],
  ): ApplyOutcome | Promise<ApplyOutcome>;
  /** Forgets `worker`: its blocks (everywhere), its sequence number, its pins. */
  removeWorker(worker: string): void | Promise<void>;
  /** Adds one reference per key pinning (`worker`, key) against eviction. */
  acquire(worker: string, keys: BlockKeyList): void | Promise<void>;
  /** Drops one reference per key (a key with no reference left can be evicted again). */
  release(worker: string, keys: BlockKeyList): void | Promise<void>;
  /**
   * Each worker's run of consecutive leading blocks among `keys` (workers with none are left
   * out), restricted to `workers` when given. Touches the matched keys (LRU).
   */
  prefixRuns(keys: BlockKeyList, workers: ReadonlySet<string> | undefined): PrefixRun[] | Promise<PrefixRun[]>;
  /** The live holders of one key, least recently stored first. */
  holders(key: string): Holder[] | Promise<Holder[]>;
  /** Size of the index. */
  stats(): BackendStats | Promise<BackendStats>;
  /** Deletes holders of removed/cleared workers and keys left with none; returns keys deleted. */
  compact(): number | Promise<number>;
  /** Releases connections (the index is unusable afterwards). */
  close(): void | Promise<void>;
}
