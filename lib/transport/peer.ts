/**
 * Peer: a remote agent this agent connected to.
 *
 * @packageDocumentation
 */
import { EventEmitter } from 'node:events';
import { ErrorCode, KvwireError } from '../errors.js';
import type { EngineConnection } from './engine.js';
import type { AgentDescription } from './metadata.js';
import { invalid } from './arguments.js';
import { RemoteRegion } from './region.js';
import type { CudaPath, PeerLiveness, TransportCategory } from './types.js';

/** What a Peer needs from its agent. @internal */
export interface PeerHost {
  /** @internal */
  notifyPeer(peer: Peer, message: Uint8Array): Promise<void>;
  /** @internal */
  disconnectPeer(peer: Peer): void;
}

/** The state of a {@link Peer}. */
export type PeerState = 'connected' | 'lost' | 'closed';

/**
 * A connected remote agent. Transfers name its regions ({@link Peer.region}); `transport` says how
 * bytes actually travel to it. Emits 'lost' (with a KvwireError) when it dies or closes.
 */
export class Peer extends EventEmitter {
  /** Agent-local id. */
  readonly id: number;
  /** The remote agent's name. */
  readonly name: string;
  /** How bytes travel: 'sm', 'tcp', 'rdma', ... as the engine chose it (never guessed). */
  readonly transport: TransportCategory;
  /** Transport details, e.g. "sysv/memory+posix/memory+cma/memory" or "tcp/lo". */
  readonly lanes: string;
  /** Data path: one-sided RMA, active messages, or the loopback copy. */
  readonly protocol: 'rma' | 'am' | 'loopback';
  /** True when the peer runs on this host (same kernel and pid namespace). */
  readonly sameHost: boolean;
  /**
   * How transfers that touch device memory travel to this peer ('ucx', 'ipc' or 'staging'), as the
   * engine chose it when connecting; null for engines that move host memory only (loopback).
   */
  readonly cudaPath: CudaPath | null;
  /**
   * How this agent checks that the peer's process still lives before its calling thread copies
   * the peer's registered memory itself (small transfers to a same-host peer over shared memory,
   * by cross-memory attach): 'beacon', one memory load of a page the kernel marks when the peer's
   * engine thread ends (native/engine/liveness.h); 'pidfd', a system call per transfer (where the
   * peer offers no beacon); null where no transfer to this peer is copied that way.
   */
  readonly liveness: PeerLiveness | null;
  /** The regions the peer exported (access other than 'none'). */
  readonly regions: readonly RemoteRegion[];
  #state: PeerState = 'connected';
  #error: KvwireError | undefined;
  readonly #byLabel = new Map<string, RemoteRegion>();
  readonly #byId = new Map<number, RemoteRegion>();
  readonly #host: PeerHost;

  /** @internal Created by {@link Agent.connect}. */
  constructor(host: PeerHost, id: number, d: AgentDescription, conn: EngineConnection, sameHost: boolean) {
    super();
    this.#host = host;
    this.id = id;
    this.name = d.name;
    this.transport = conn.transport;
    this.lanes = conn.lanes;
    this.protocol = conn.protocol;
    this.sameHost = sameHost;
    this.cudaPath = conn.cudaPath ?? null;
    this.liveness = conn.liveness ?? null;
    this.regions = d.regions.map((r) => new RemoteRegion(this, r.id, r.label, r.access, r.length, r.memory ?? 'host'));
    for (const r of this.regions) {
      this.#byLabel.set(r.label, r);
      this.#byId.set(r.id, r);
    }
  }

  /** 'connected', 'lost' (died or closed its agent) or 'closed' (disconnected here). */
  get state(): PeerState {
    return this.#state;
  }

  /** Why the peer was lost, once it was. */
  get error(): KvwireError | undefined {
    return this.#error;
  }

  /** The peer's region with this label. Throws `ERR_KVWIRE_UNKNOWN_REGION` naming the labels it has. */
  region(label: string): RemoteRegion {
    if (typeof label !== 'string') invalid('label', 'a string', label);
    const r = this.#byLabel.get(label);
    if (r === undefined) {
      const have = [...this.#byLabel.keys()];
      throw new KvwireError(
        ErrorCode.UNKNOWN_REGION,
        `peer '${this.name}' exported no region '${label}'` +
          (have.length > 0
            ? `; it exported: ${have
                .slice(0, 20)
                .map((l) => `'${l}'`)
                .join(', ')}`
            : '; it exported none (regions with access none are not exported)'),
      );
    }
    return r;
  }

  /** @internal */
  regionById(id: number): RemoteRegion | undefined {
    return this.#byId.get(id);
  }

  /** Sends a notification on its own (it arrives after any transfer this agent completed before). */
  notify(message: string | Uint8Array): Promise<void> {
    const bytes = typeof message === 'string' ? Buffer.from(message, 'utf8') : message;
    return this.#host.notifyPeer(this, bytes);
  }

  /** Disconnects: transfers in flight to it fail with `ERR_KVWIRE_CLOSED`. Idempotent. */
  disconnect(): void {
    if (this.#state === 'connected' || this.#state === 'lost') this.#host.disconnectPeer(this);
  }

  /** @internal */
  markLost(error: KvwireError): void {
    if (this.#state !== 'connected') return;
    this.#state = 'lost';
    this.#error = error;
    if (this.listenerCount('lost') > 0) this.emit('lost', error);
  }

  /** @internal */
  markClosed(): void {
    this.#state = 'closed';
  }

  /** Throws unless connected. @internal */
  assertConnected(): void {
    if (this.#state === 'connected') return;
    if (this.#state === 'lost')
      throw this.#error ?? new KvwireError(ErrorCode.PEER_LOST, `peer '${this.name}' was lost`);
    throw new KvwireError(
      ErrorCode.CLOSED,
      `peer '${this.name}' was disconnected; connect again with agent.connect(metadata)`,
    );
  }
}
