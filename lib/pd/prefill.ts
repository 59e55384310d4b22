/**
 * `PrefillCoordinator`: the prefill side of the P/D hand-off.
 *
 * After the engine computed a request's KV into its registered cache, `hold()` puts the blocks
 * under a lease and returns the `kv_transfer_params` the decode side needs. The coordinator serves
 * the handshake and the decode side's lease heartbeats on its side channel, listens for the decode side's notifications on every rank
 * agent, and hands the blocks back to the engine (`onFree`, `'blocks-freed'`) exactly once: when
 * the decode side says it read them, when it gives up, when the lease expires (short by default:
 * the decode side extends it with heartbeats while its pull is pending), or when the request is
 * cancelled here.
 *
 * @packageDocumentation
 */
import { safeEmit } from '../util/safe-emit.js';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { compatHash, validateBlockIds } from '../kv/index.js';
import type { MetricsRegistry } from '../metrics.js';
import type { Notification, Region } from '../transport/index.js';
import { checkRankAuth, validateRanks, type KvCacheRank } from './cache.js';
import { NonceWindow, secretKey, type SharedSecret } from './handshake-auth.js';
import { pdCompatibilityFields } from './handshake.js';
import { LeaseBook, LeaseTable, type BlockLease } from './lease.js';
import { PdMetrics } from './metrics.js';
import { MAX_BLOCKS_PER_REQUEST, checkId, type KvTransferParams } from './params.js';
import { prefillHandshakeHandler } from './prefill-handshake.js';
import { prefillHeartbeatHandler, type HeartbeatOutcome } from './heartbeat.js';
import {
  DEFAULT_LEASE_EXTENSION_MS,
  DEFAULT_LEASE_MS,
  LEASE_TABLE_LABEL,
  decodeLeaseMessage,
  type FreeReason,
} from './protocol.js';
import { SideChannel } from './side-channel.js';

/** Options of {@link PrefillCoordinator.create}. */
export interface PrefillCoordinatorOptions {
  /** This prefill engine's id (`remote_engine_id`); unique among the engines decode workers reach. */
  readonly engineId: string;
  /** The registered KV cache of every TP rank, in rank order, with access 'read' (see `registerKvCache`). */
  readonly ranks: readonly KvCacheRank[];
  /** The secret shared with decode workers (at least 16 bytes). */
  readonly secret: SharedSecret;
  /**
   * Accept rank agents that do not authenticate their peers (`AgentOptions.auth`). Default false:
   * the coordinator refuses them, since any process that reaches them could read the KV cache.
   */
  readonly unauthenticatedAgents?: boolean;
  /** Side channel bind address; default '127.0.0.1'. */
  readonly host?: string;
  /** Side channel port; default 0 (any free port). */
  readonly port?: number;
  /** Host decode workers use to reach the side channel (`remote_host`); default `host`, or the host name when bound to all addresses. */
  readonly advertiseHost?: string;
  /**
   * Base lease duration: how long blocks stay held when no heartbeat arrives; default 30 000 ms
   * ({@link DEFAULT_LEASE_MS}). (vLLM's old fixed lease, `VLLM_NIXL_ABORT_REQUEST_TIMEOUT`, was 480 s.)
   */
  readonly leaseMs?: number;
  /**
   * How far each decode heartbeat extends a held lease: it then expires no earlier than this long
   * after the heartbeat; default 30 000 ms ({@link DEFAULT_LEASE_EXTENSION_MS}). Must exceed the
   * decode workers' `heartbeatIntervalMs` with room for a lost heartbeat or two.
   */
  readonly leaseExtensionMs?: number;
  /** Most leases held at once (lease table slots); default 16 384. */
  readonly maxLeases?: number;
  /** Accepted clock difference between the two hosts for handshakes; default 60 000 ms. */
  readonly maxClockSkewMs?: number;
  /** Gives blocks back to the engine's allocator; called exactly once per lease. */
  readonly onFree?: (event: BlocksFreedEvent) => void;
  /** Metrics registry; default prom-client's global one. */
  readonly registry?: MetricsRegistry;
}

/** What {@link PrefillCoordinator.hold} takes. */
export interface HoldRequest {
  /** The request id (unique among held requests). */
  readonly requestId: string;
  /** The blocks holding the request's KV, in token order. */
  readonly blockIds: ArrayLike<number>;
  /** This lease's duration; default the coordinator's `leaseMs`. */
  readonly leaseMs?: number;
  /** Cancels the request here: the blocks are freed (reason 'cancelled'). */
  readonly signal?: AbortSignal;
}

/** Event `'blocks-held'`: a lease began (wire it to a KV index's `stored`). */
export interface BlocksHeldEvent {
  /** This engine's id. */
  readonly engineId: string;
  /** The request. */
  readonly requestId: string;
  /** Its blocks. */
  readonly blockIds: readonly number[];
  /** When the lease expires (ms since the epoch). */
  readonly expiresAt: number;
}

/** Event `'blocks-freed'` (and `'lease-expired'`): a lease ended and its blocks went back to the engine. */
export interface BlocksFreedEvent {
  /** This engine's id. */
  readonly engineId: string;
  /** The request. */
  readonly requestId: string;
  /** Its blocks. */
  readonly blockIds: readonly number[];
  /** Why: the decode side read them, the lease expired, either side cancelled, or the coordinator closed. */
  readonly reason: FreeReason;
  /** How long the blocks were held. */
  readonly heldMs: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

function checkMs(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_TIMER_MS) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `${field} must be a positive number of milliseconds up to ${MAX_TIMER_MS}, got ${describeValue(v)}`,
      { field },
    );
  }
  return Math.ceil(v);
}

/**
 * The prefill side of the P/D hand-off. Events: `'blocks-held'` ({@link BlocksHeldEvent}),
 * `'blocks-freed'` ({@link BlocksFreedEvent}), `'lease-expired'` (the same, for expirations
 * only), `'handshake'` ({@link HandshakeOutcome}), `'heartbeat'` ({@link HeartbeatOutcome}: each
 * heartbeat request, accepted or refused).
 */
export class PrefillCoordinator extends EventEmitter {
  /** This engine's id. */
  readonly engineId: string;
  /** The TP size (`tp_size`). */
  readonly tpSize: number;
  /** The host put in `remote_host`. */
  readonly host: string;
  /** The side channel's port (`remote_port`). */
  readonly port: number;
  /** Default base lease duration. */
  readonly leaseMs: number;
  /** How far each heartbeat extends a lease. */
  readonly leaseExtensionMs: number;
  readonly #ranks: readonly KvCacheRank[];
  readonly #numBlocks: number;
  readonly #book: LeaseBook;
  readonly #leaseRegions: Region[];
  readonly #channel: SideChannel;
  readonly #metrics: PdMetrics;
  readonly #onFree: ((e: BlocksFreedEvent) => void) | undefined;
  readonly #listener: (n: Notification) => void;
  #closed = false;

  /**
   * Validates the options, registers the lease table with every rank agent and starts the side channel.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for bad options (naming the field),
   *   `ERR_KVWIRE_PEER_UNREACHABLE` when the side channel cannot listen.
   */
  static async create(options: PrefillCoordinatorOptions): Promise<PrefillCoordinator> {
    if (options === null || typeof options !== 'object') {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        'PrefillCoordinator.create needs { engineId, ranks, secret, ... }',
        { field: 'options' },
      );
    }
    const engineId = checkId(options.engineId, 'engineId');
    const key = secretKey(options.secret);
    validateRanks(options.ranks, true);
    checkRankAuth(options.ranks, options.unauthenticatedAgents);
    const leaseMs = checkMs(options.leaseMs ?? DEFAULT_LEASE_MS, 'leaseMs');
    const leaseExtensionMs = checkMs(options.leaseExtensionMs ?? DEFAULT_LEASE_EXTENSION_MS, 'leaseExtensionMs');
    const skew = checkMs(options.maxClockSkewMs ?? 60_000, 'maxClockSkewMs');
    const table = new LeaseTable(options.maxLeases ?? 16_384);
    const ranks = [...options.ranks];
    const leaseRegions: Region[] = [];
    try {
      for (const r of ranks)
        leaseRegions.push(r.agent.register(table.words, { access: 'read', label: LEASE_TABLE_LABEL }));
    } catch (e) {
      for (const r of leaseRegions) r.deregister();
      throw e;
    }
    const layout = ranks[0]!.layout;
    const compat = pdCompatibilityFields(layout);
    // The side channel's handlers reach the coordinator once it exists (it needs the channel's
    // address first); a request that arrives before then is answered without it.
    const created: { coordinator?: PrefillCoordinator } = {};
    let channel: SideChannel;
    const window = new NonceWindow(skew);
    try {
      channel = await SideChannel.listen({
        heartbeat: prefillHeartbeatHandler(
          key,
          window,
          {
            engineId,
            extend: (requestId, token) => {
              const c = created.coordinator;
              return c === undefined ? undefined : c.#extend(requestId, token, leaseExtensionMs);
            },
          },
          (o) => {
            const c = created.coordinator;
            if (c !== undefined) c.#heartbeat(o);
          },
        ),
        ...(options.host === undefined ? {} : { host: options.host }),
        ...(options.port === undefined ? {} : { port: options.port }),
        handler: prefillHandshakeHandler(
          key,
          window,
          {
            engineId,
            instance: randomBytes(8).toString('hex'),
            compat,
            compatHash: compatHash(compat),
            cache: {
              numBlocks: layout.numBlocks,
              arenaAlignment: layout.arenaAlignment,
              addressing: ranks[0]!.addressing,
              tpSize: ranks.length,
            },
            leaseTable: { label: LEASE_TABLE_LABEL, slots: table.slots },
            metadata: () => ranks.map((r) => r.agent.metadata()),
          },
          (o) => {
            const c = created.coordinator;
            if (c !== undefined) safeEmit(c, 'handshake', o);
          },
        ),
      });
    } catch (e) {
      for (const r of leaseRegions) r.deregister();
      throw e;
    }
    const bound = channel.host;
    const advertise = options.advertiseHost ?? (bound === '0.0.0.0' || bound === '::' ? hostname() : bound);
    const coordinator = new PrefillCoordinator(engineId, ranks, table, leaseRegions, channel, advertise, leaseMs, {
      ...options,
      leaseExtensionMs,
    });
    created.coordinator = coordinator;
    return coordinator;
  }

  private constructor(
    engineId: string,
    ranks: KvCacheRank[],
    table: LeaseTable,
    leaseRegions: Region[],
    channel: SideChannel,
    host: string,
    leaseMs: number,
    options: PrefillCoordinatorOptions,
  ) {
    super();
    this.engineId = engineId;
    this.#ranks = ranks;
    this.tpSize = ranks.length;
    this.#numBlocks = ranks[0]!.layout.numBlocks;
    this.#leaseRegions = leaseRegions;
    this.#channel = channel;
    this.host = host;
    this.port = channel.port;
    this.leaseMs = leaseMs;
    this.leaseExtensionMs = options.leaseExtensionMs ?? DEFAULT_LEASE_EXTENSION_MS;
    this.#onFree = options.onFree;
    this.#metrics = new PdMetrics(engineId, options.registry);
    this.#book = new LeaseBook(table, (lease, reason) => this.#freed(lease, reason));
    this.#listener = (n: Notification) => {
      const m = decodeLeaseMessage(n.message);
      if (m !== undefined) this.#book.end(m.requestId, m.kind === 'done' ? 'notified' : 'cancelled', m.token);
    };
    for (const r of ranks) r.agent.on('notification', this.#listener);
  }

  /** Leases held now. */
  get leases(): number {
    return this.#book.size;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The lease held for `requestId`, if any. */
  lease(requestId: string): BlockLease | undefined {
    return this.#book.get(requestId);
  }

  /**
   * Holds the blocks of a request for a decode worker and returns its `kv_transfer_params`.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` for a bad or duplicate request id or bad
   *   block ids, `ERR_KVWIRE_OUT_OF_BOUNDS` for a block beyond the cache, `ERR_KVWIRE_CAPACITY`
   *   when `maxLeases` leases are held, `ERR_KVWIRE_CANCELLED` when `signal` is aborted,
   *   `ERR_KVWIRE_CLOSED` after `close()`.
   */
  hold(request: HoldRequest): KvTransferParams {
    if (this.#closed) throw new KvwireError(ErrorCode.CLOSED, 'the prefill coordinator is closed');
    const requestId = checkId(request?.requestId, 'requestId');
    const ids = request.blockIds;
    validateBlockIds(ids, this.#numBlocks, 'blockIds');
    if (ids.length === 0 || ids.length > MAX_BLOCKS_PER_REQUEST) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `blockIds must name 1..${MAX_BLOCKS_PER_REQUEST} blocks, got ${ids.length}`,
        { field: 'blockIds' },
      );
    }
    const leaseMs = request.leaseMs === undefined ? this.leaseMs : checkMs(request.leaseMs, 'leaseMs');
    if (request.signal !== undefined && !(request.signal instanceof AbortSignal)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `signal must be an AbortSignal, not ${describeValue(request.signal)}`,
        {
          field: 'signal',
        },
      );
    }
    const lease = this.#book.hold(requestId, Array.from(ids), leaseMs, request.signal);
    this.#metrics.held(this.#book.size);
    safeEmit(this, 'blocks-held', {
      engineId: this.engineId,
      requestId,
      blockIds: lease.blockIds,
      expiresAt: lease.expiresAt,
    } satisfies BlocksHeldEvent);
    return Object.freeze({
      do_remote_prefill: true,
      do_remote_decode: false,
      remote_engine_id: this.engineId,
      remote_request_id: requestId,
      remote_block_ids: lease.blockIds,
      remote_host: this.host,
      remote_port: this.port,
      tp_size: this.tpSize,
      remote_lease_slot: lease.slot,
      remote_lease_token: lease.token,
    });
  }

  /**
   * Cancels a request here: frees its blocks now (reason 'cancelled'). A decode worker reading
   * them finds the lease gone and fails with `ERR_KVWIRE_LEASE_EXPIRED`. Returns false when no
   * lease was held for it.
   */
  release(requestId: string): boolean {
    return this.#book.end(requestId, 'cancelled') !== undefined;
  }

  // A heartbeat named this lease: extend it if it is held with this token (else nothing happens).
  #extend(requestId: string, token: number, extensionMs: number): number | undefined {
    if (this.#closed || this.#book.extend(requestId, token, extensionMs) === undefined) return undefined;
    return this.#book.remainingMs(requestId);
  }

  #heartbeat(o: HeartbeatOutcome): void {
    this.#metrics.heartbeatReceived(o);
    safeEmit(this, 'heartbeat', o);
  }

  #freed(lease: BlockLease, reason: FreeReason): void {
    const event: BlocksFreedEvent = {
      engineId: this.engineId,
      requestId: lease.requestId,
      blockIds: lease.blockIds,
      reason,
      heldMs: Date.now() - lease.heldAt,
    };
    this.#metrics.freed(reason, lease.blockIds.length, this.#book.size);
    if (this.#onFree !== undefined) {
      try {
        this.#onFree(event);
      } catch (e) {
        process.nextTick(() => {
          throw e;
        });
      }
    }
    safeEmit(this, 'blocks-freed', event);
    if (reason === 'expired') safeEmit(this, 'lease-expired', event);
  }

  /**
   * Stops the side channel, frees every held lease (reason 'closed'), stops listening for
   * notifications and withdraws the lease table. The rank agents stay open (they are the caller's).
   * Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const r of this.#ranks) r.agent.off('notification', this.#listener);
    this.#book.endAll('closed');
    for (const r of this.#leaseRegions) {
      try {
        r.deregister();
      } catch {
        // Busy only while this agent's own transfers use it, which never happens for the lease table.
      }
    }
    await this.#channel.close();
  }
}
