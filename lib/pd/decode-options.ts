/**
 * The decode coordinator's options, requests and results, and the checks of the options.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import type { MetricsRegistry } from '../metrics.js';
import type { TransportCategory } from '../transport/index.js';
import type { KvCacheRank } from './cache.js';
import type { SharedSecret } from './handshake-auth.js';
import { DEFAULT_HEARTBEAT_INTERVAL_MS } from './protocol.js';

/** What to do when a pull fails: reject (`'fail'`), or tell the caller to prefill locally (`'recompute'`). */
export type FailurePolicy = 'fail' | 'recompute';

/** The decode engine's block allocator, as the coordinator uses it. */
export interface DecodeBlockAllocator {
  /** `count` free blocks for `requestId` (throw `ERR_KVWIRE_CAPACITY` when the cache is full). */
  allocate(requestId: string, count: number): readonly number[] | Promise<readonly number[]>;
  /** Takes back blocks of a pull that failed or was cancelled. */
  free(requestId: string, blockIds: readonly number[]): void;
}

/** Options of {@link DecodeCoordinator.create}. */
export interface DecodeCoordinatorOptions {
  /** This decode engine's id. */
  readonly engineId: string;
  /** The registered KV cache of every TP rank, in rank order (see `registerKvCache`). */
  readonly ranks: readonly KvCacheRank[];
  /** The secret shared with prefill workers (at least 16 bytes). */
  readonly secret: SharedSecret;
  /**
   * Accept rank agents that do not authenticate their peers (`AgentOptions.auth`). Default false:
   * the coordinator refuses them, since any process that reaches them could write their KV cache.
   */
  readonly unauthenticatedAgents?: boolean;
  /** Gives local blocks to pulls without `localBlockIds`, and takes back those of failed pulls. */
  readonly allocator?: DecodeBlockAllocator;
  /** Default failure policy; default `'fail'`. */
  readonly policy?: FailurePolicy;
  /** Most bytes in flight across pulls; default 1 GiB. */
  readonly maxInFlightBytes?: number;
  /** Most pulls transferring at once; default 64. */
  readonly maxConcurrentRequests?: number;
  /** Most pulls waiting; beyond, pulls fail with `ERR_KVWIRE_CAPACITY`; default 4096. */
  readonly maxQueuedRequests?: number;
  /** Deadline of a pull (handshake, queue, allocation and transfers together); default 60 000 ms. */
  readonly timeoutMs?: number;
  /** Deadline of a handshake with a new prefill engine (side channel and connects); default 10 000 ms. */
  readonly handshakeTimeoutMs?: number;
  /**
   * Local blocks of a pull whose transfers failed or were cancelled go back to the allocator once
   * every one of those transfers has quiesced (`Transfer.quiesced`: no operation can land in them
   * any more), and then after this many milliseconds more. Default 0.
   */
  readonly quarantineMs?: number;
  /**
   * Interval of the lease heartbeats this worker sends to each prefill while pulls from it are
   * pending (and while requests tracked with `keepLeaseAlive` wait); default 5000 ms
   * ({@link DEFAULT_HEARTBEAT_INTERVAL_MS}); 0 sends none (the prefill's leases then last only
   * their base duration). Keep it well under the prefill's `leaseMs` and `leaseExtensionMs`.
   */
  readonly heartbeatIntervalMs?: number;
  /** Refuses prefill side channels (SSRF guard): return false to refuse `host:port`. Default: allow all. */
  readonly allowPrefill?: (host: string, port: number) => boolean;
  /** Metrics registry; default prom-client's global one. */
  readonly registry?: MetricsRegistry;
}

/** What {@link DecodeCoordinator.pull} takes. */
export interface PullRequest {
  /** This engine's request id. */
  readonly requestId: string;
  /** The `kv_transfer_params` the prefill worker returned (validated here). */
  readonly kvTransferParams: unknown;
  /** Leading blocks this engine already holds (prefix cache hit): not read. Default 0. */
  readonly cachedPrefixBlocks?: number;
  /**
   * Destination blocks for `remote_block_ids[cachedPrefixBlocks..]`, owned by the caller (never
   * freed by the coordinator). Omit to get them from the allocator.
   */
  readonly localBlockIds?: ArrayLike<number>;
  /** Failure policy of this request; default the coordinator's. */
  readonly policy?: FailurePolicy;
  /** Cancels the pull: transfers stop, both sides free the blocks, the pull rejects `ERR_KVWIRE_CANCELLED`. */
  readonly signal?: AbortSignal;
  /** Deadline of this pull; default the coordinator's `timeoutMs`. */
  readonly timeoutMs?: number;
}

/** A pull whose KV is in place. */
export interface PullReady {
  /** `'ready'`. */
  readonly status: 'ready';
  /** The request. */
  readonly requestId: string;
  /** The local blocks that received `remote_block_ids[cachedPrefixBlocks..]`, now the engine's. */
  readonly localBlockIds: readonly number[];
  /** Blocks read from the prefill. */
  readonly blocksRead: number;
  /** Blocks skipped (already held). */
  readonly blocksCached: number;
  /** Bytes read. */
  readonly bytes: number;
  /** Descriptors without coalescing and as posted (the lease fence not counted). */
  readonly descriptors: { readonly uncoalesced: number; readonly posted: number };
  /** Where the time went (ms): handshake (≈0 when cached), queue, transfers with fence, total. */
  readonly timings: {
    readonly handshakeMs: number;
    readonly queueMs: number;
    readonly transferMs: number;
    readonly totalMs: number;
  };
  /** bytes ÷ transferMs, in GB/s. */
  readonly gbps: number;
  /** How the bytes travelled. */
  readonly transport: TransportCategory;
}

/** A failed pull under policy `'recompute'`: prefill the request locally. */
export interface PullRecompute {
  /** `'recompute'`. */
  readonly status: 'recompute';
  /** The request. */
  readonly requestId: string;
  /** Why the KV could not be pulled (its `code`: TIMEOUT, PEER_LOST, LEASE_EXPIRED, INCOMPATIBLE, UNAUTHORIZED, ...). */
  readonly reason: KvwireError;
}

/** What a pull resolves with. */
export type PullResult = PullReady | PullRecompute;

/** The options with defaults applied. */
export interface CheckedDecodeOptions {
  /** Default failure policy. */
  readonly policy: FailurePolicy;
  /** Byte limit of admitted pulls. */
  readonly maxInFlightBytes: number;
  /** Admitted pulls at once. */
  readonly maxConcurrentRequests: number;
  /** Waiting pulls at once. */
  readonly maxQueuedRequests: number;
  /** Pull deadline. */
  readonly timeoutMs: number;
  /** Handshake deadline. */
  readonly handshakeTimeoutMs: number;
  /** Extra wait after quiescence (undefined: 0). */
  readonly quarantineMs: number | undefined;
  /** Heartbeat interval (0: none). */
  readonly heartbeatIntervalMs: number;
}

/**
 * Checks a pull's own `timeoutMs`.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` unless it is a positive integer up to 2^31 - 1.
 */
export function checkPullTimeout(v: unknown, def: number): number {
  return num(v, 'timeoutMs', def, 1, 2 ** 31 - 1);
}

function num(v: unknown, field: string, def: number, min: number, max: number): number {
  if (v === undefined) return def;
  if (
    typeof v !== 'number' ||
    !Number.isFinite(v) ||
    v < min ||
    v > max ||
    (field !== 'maxInFlightBytes' && !Number.isInteger(v))
  ) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${field} must be a number in ${min}..${max}, got ${describeValue(v)}`,
      {
        field,
      },
    );
  }
  return v;
}

/**
 * Applies defaults and checks ranges.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` naming the first bad option.
 */
export function checkOptions(o: DecodeCoordinatorOptions): CheckedDecodeOptions {
  if (o === null || typeof o !== 'object') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'DecodeCoordinator.create needs { engineId, ranks, secret, ... }',
      { field: 'options' },
    );
  }
  const policy = o.policy ?? 'fail';
  if (policy !== 'fail' && policy !== 'recompute') {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `policy must be 'fail' or 'recompute', got ${describeValue(policy)}`,
      {
        field: 'policy',
      },
    );
  }
  if (
    o.allocator !== undefined &&
    (typeof o.allocator?.allocate !== 'function' || typeof o.allocator?.free !== 'function')
  ) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'allocator must have allocate(requestId, count) and free(requestId, blockIds)',
      { field: 'allocator' },
    );
  }
  if (o.allowPrefill !== undefined && typeof o.allowPrefill !== 'function') {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'allowPrefill must be a function (host, port) => boolean', {
      field: 'allowPrefill',
    });
  }
  const maxMs = 2 ** 31 - 1;
  return {
    policy,
    maxInFlightBytes: num(o.maxInFlightBytes, 'maxInFlightBytes', 2 ** 30, 1, Number.MAX_SAFE_INTEGER),
    maxConcurrentRequests: num(o.maxConcurrentRequests, 'maxConcurrentRequests', 64, 1, 65_536),
    maxQueuedRequests: num(o.maxQueuedRequests, 'maxQueuedRequests', 4096, 1, 2 ** 24),
    timeoutMs: num(o.timeoutMs, 'timeoutMs', 60_000, 1, maxMs),
    handshakeTimeoutMs: num(o.handshakeTimeoutMs, 'handshakeTimeoutMs', 10_000, 1, maxMs),
    quarantineMs: o.quarantineMs === undefined ? undefined : num(o.quarantineMs, 'quarantineMs', 0, 0, maxMs),
    heartbeatIntervalMs: num(o.heartbeatIntervalMs, 'heartbeatIntervalMs', DEFAULT_HEARTBEAT_INTERVAL_MS, 0, maxMs),
  };
}
