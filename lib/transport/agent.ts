/**
 * Agent: one per process or GPU. Registers memory, exports metadata, connects to peers, moves
 * descriptor lists by READ and WRITE, and receives notifications.
 *
 * The parts live beside it: options checking (agent-options.ts, transfer-options.ts), region
 * bookkeeping (region-table.ts), connects in progress (connecting.ts), the transfer-posting path
 * (transfer-posting.ts), deadlines (deadline.ts) and what keeps the process alive (keep-alive.ts).
 *
 * @packageDocumentation
 */
import { EventEmitter } from 'node:events';
import { ErrorCode, KvwireError } from '../errors.js';
import { nowNs } from '../util/clock.js';
import { safeEmit } from '../util/safe-emit.js';
import { checkAgentOptions, checkTimeout } from './agent-options.js';
import { invalid, optionsObject, signalOption } from './arguments.js';
import type { AuthKey } from './auth.js';
import { PendingConnects, checkForcedCudaPath, checkPeerMetadata, transportFallbackWarning } from './connecting.js';
import { checkCudaMemory, cuda, CudaAllocation } from './cuda.js';
import type { CudaMemory } from './cuda.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from './deadline.js';
import type { Engine, EngineConnection, EngineListener } from './engine.js';
import { processIdentity } from './identity.js';
import { KeepAlive } from './keep-alive.js';
import { LoopbackEngine } from './loopback.js';
import type { LoopbackFaults } from './loopback.js';
import { encodeMetadata } from './metadata.js';
import type { AgentDescription } from './metadata.js';
import { NativeEngine, ucxUnavailableReason } from './native-engine.js';
import { NotificationHub, notificationMatcher } from './notifications.js';
import type { NotificationIteratorOptions, WaitOptions } from './notifications.js';
import { Peer } from './peer.js';
import type { PeerHost } from './peer.js';
import { Region, RemoteRegion } from './region.js';
import type { RegionOwner } from './region.js';
import { RegionTable, checkAccess, checkAllocationLength, hostBytes, pinMemory } from './region-table.js';
import { PreparedTransfer, Transfer } from './transfer.js';
import type { PreparedHost } from './transfer.js';
import { checkNotification, checkTransferOptions } from './transfer-options.js';
import { TransferPoster, preparedRows, prepareList } from './transfer-posting.js';
import type {
  Access,
  AgentOptions,
  ConnectOptions,
  CudaPath,
  DescriptorInput,
  EngineKind,
  HostMemory,
  Notification,
  TransferOp,
  TransferOptions,
} from './types.js';

let agentCounter = 0;

/**
 * The entry point of the transport.
 *
 * Events: `'notification'` ({@link Notification}), `'peer-lost'` (peer, error), `'warning'`
 * (message: e.g. a peer reached over tcp although shared memory was allowed), `'close'`.
 *
 * `close()` is required: an agent is never garbage-collected while its process (or worker thread)
 * lives, even when nothing references it any more (the engine's event callback holds it), so an
 * agent dropped without `close()` keeps its memory registered, its engine thread and its
 * connections until the process exits or the worker terminates; then an environment cleanup hook
 * closes it, and the process still exits cleanly.
 */
export class Agent extends EventEmitter implements RegionOwner, PreparedHost, PeerHost {
  /** This agent's name, as peers see it. */
  readonly name: string;
  /** The engine moving the bytes. */
  readonly engine: EngineKind;
  /** Deadline of transfers that give none. */
  readonly defaultTimeoutMs: number;
  /** Fault injection (loopback engine only; undefined otherwise). */
  readonly faults: LoopbackFaults | undefined;
  readonly #engine: Engine;
  readonly #cudaPath: 'auto' | CudaPath;
  /** Derived keys, the signing key first; empty: peers are not authenticated. */
  readonly #authKeys: readonly AuthKey[];
  readonly #keepAlive: KeepAlive;
  readonly #regions = new RegionTable();
  readonly #peers = new Map<number, Peer>();
  readonly #connects: PendingConnects;
  readonly #transfers: TransferPoster;
  /** Notifications sent on their own (`peer.notify`), by token, until the engine reports them sent. */
  readonly #notifies = new Map<number, { resolve: () => void; reject: (e: KvwireError) => void }>();
  readonly #hub: NotificationHub;
  #nextPeer = 1;
  #nextToken = 1;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Creates an agent; rejects with `ERR_KVWIRE_INVALID_ARGUMENT` naming a bad option. */
  static create(opts: AgentOptions = {}): Promise<Agent> {
    return new Promise((resolve) => resolve(new Agent(opts))); // a throw becomes the rejection
  }

  private constructor(input: AgentOptions) {
    super();
    const opts = checkAgentOptions(input);
    this.name = opts.name ?? `kvwire-${process.pid}-${++agentCounter}`;
    this.defaultTimeoutMs = opts.defaultTimeoutMs;
    this.#cudaPath = opts.cuda?.path ?? 'auto';
    this.#authKeys = opts.authKeys;
    const listener = this.#listener();
    if (opts.engine === 'loopback') {
      const engine = new LoopbackEngine(this.name, listener);
      this.#engine = engine;
      this.faults = engine.faults;
    } else {
      const reason = ucxUnavailableReason();
      if (reason !== undefined) {
        throw new KvwireError(
          ErrorCode.UNSUPPORTED,
          `the UCX engine is unavailable: ${reason}; engine: 'loopback' works in-process`,
        );
      }
      this.#engine = new NativeEngine(this.name, listener, opts);
      this.faults = undefined;
    }
    this.engine = this.#engine.kind;
    const closed = () => this.#closed;
    this.#keepAlive = new KeepAlive(this.#engine, opts.keepAlive);
    this.#hub = new NotificationHub((d) => this.#keepAlive.adjust(d));
    const addPeer = this.#addPeer.bind(this);
    this.#connects = new PendingConnects(this.#engine, this.#keepAlive, opts.protocol, closed, addPeer);
    this.#transfers = new TransferPoster(this.#engine, this.#keepAlive, this.defaultTimeoutMs, closed);
  }

  /** The transports the engine may use (UCX_TLS syntax; 'loopback' for the loopback engine). */
  get transports(): string {
    return this.#engine.transports;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Registered regions. */
  get regions(): readonly Region[] {
    return this.#regions.all;
  }

  /** Connected (or lost) peers. */
  get peers(): readonly Peer[] {
    return [...this.#peers.values()];
  }

  /** Transfers in flight. */
  get inFlight(): number {
    return this.#transfers.pending;
  }

  /** True when this agent authenticates its peers (`AgentOptions.auth` or `KVWIRE_SECRET`). */
  get authenticates(): boolean {
    return this.#authKeys.length > 0;
  }

  // ------------------------------------------------------------------------------------------
  // Memory

  /**
   * Registers memory in place (no copy): host memory (a Buffer, typed array, DataView or
   * ArrayBuffer), or CUDA device memory `{ kind: 'cuda', device, pointer, length }` (e.g. a tensor's
   * data pointer as a bigint, or a `cuda.alloc()` allocation), which the driver validates: it must
   * lie inside one allocation of that device. A device region has no `bytes` view.
   * `access` says what remote peers may do with it (default 'none': usable only as the local side
   * of this agent's transfers, and not exported).
   *
   * With the UCX engine, the whole 2 MiB pages inside host memory are advised for huge pages
   * (`madvise(MADV_HUGEPAGE)`): pages touched from then on may be 2 MiB ones, which peers on this
   * host reach by cross-memory attach 1.5-1.9x faster in large transfers. The advice stays with
   * the memory after deregistration; `KVWIRE_HUGE_PAGES=0` in the environment turns it off.
   */
  register(memory: HostMemory | CudaMemory, options: { access?: Access; label?: string } = {}): Region {
    this.#assertOpen();
    const opts = optionsObject(options, 'register options');
    const access = checkAccess(opts.access);
    const bytes = hostBytes(memory);
    if (bytes === undefined) return this.#registerDevice(memory as CudaMemory, access, opts.label);
    const { id, label } = this.#regions.reserve(opts.label);
    pinMemory(bytes);
    this.#engine.register(id, label, bytes, access);
    return this.#regions.add(new Region(this, id, label, access, bytes, memory));
  }

  #registerDevice(memory: CudaMemory, access: Access, requested: string | undefined): Region {
    checkCudaMemory(memory);
    const reason = cuda.unavailableReason();
    if (reason !== undefined) throw new KvwireError(ErrorCode.UNSUPPORTED, `CUDA is unavailable: ${reason}`);
    const { id, label } = this.#regions.reserve(requested);
    const { ipcError } = this.#engine.registerDevice(id, label, memory, access);
    const region = this.#regions.add(new Region(this, id, label, access, undefined, memory, memory));
    if (memory instanceof CudaAllocation) {
      memory.retain(); // it cannot be freed until no operation can touch the region
      void region.released.then(() => memory.release());
    }
    if (ipcError !== undefined) {
      const msg = `kvwire: ${region}: ${ipcError}`;
      process.emitWarning(msg, { code: 'KVWIRE_CUDA_IPC' });
      safeEmit(this, 'warning', msg);
    }
    return region;
  }

  /**
   * Allocates `length` bytes of host memory for the engine and registers them; `region.bytes` views
   * them. With UCX the memory is shared memory where UCX can allocate it, so a peer on this host
   * maps it and moves bytes with one memcpy per descriptor instead of a system call: allocate
   * the memory peers READ from or WRITE into (a prefill worker's KV cache) this way for the fastest
   * shared-memory path. The memory stays valid while `region.bytes` is reachable, even after
   * deregistration. Its contents are unspecified until written (fresh pages are zero, but UCX may
   * fall back to the heap).
   */
  allocate(length: number, options: { access?: Access; label?: string } = {}): Region {
    this.#assertOpen();
    const opts = optionsObject(options, 'allocate options');
    const access = checkAccess(opts.access);
    checkAllocationLength(length);
    const { id, label } = this.#regions.reserve(opts.label);
    const { memory } = this.#engine.allocate(id, label, length, access);
    pinMemory(memory);
    return this.#regions.add(new Region(this, id, label, access, new Uint8Array(memory), memory));
  }

  /** Deregisters a region (same as `region.deregister()`). */
  deregister(region: Region): void {
    if (!(region instanceof Region) || region.owner !== this) invalid('region', 'a Region of this agent', region);
    region.deregister();
  }

  /** @internal */
  deregisterRegion(region: Region): void {
    if (!this.#regions.holds(region)) return;
    const users = this.#engine.deregister(region.id);
    if (users > 0) {
      throw new KvwireError(
        ErrorCode.REGION_BUSY,
        `${region} is used by ${users} transfer(s) in flight; await or cancel them before deregistering it`,
      );
    }
    const released = users < 0; // the engine did not know it: nothing can touch it
    this.#regions.remove(region, released);
    if (!released) this.#keepAlive.adjust(1); // until released: `await region.released` must not let the process exit
  }

  // ------------------------------------------------------------------------------------------
  // Metadata and peers

  /** Versioned metadata describing this agent and its exported regions (access other than 'none'). */
  metadata(): Uint8Array {
    this.#assertOpen();
    const id = processIdentity();
    return encodeMetadata(
      {
        engine: this.engine,
        name: this.name,
        pid: id.pid,
        pidStart: id.pidStart,
        hostId: id.hostId,
        address: this.#engine.address,
        regions: this.#regions.exported(),
      },
      this.#authKeys[0],
    );
  }

  /**
   * @internal The device key a device region is granted with in handshakes, to a trusted same-host
   * peer (with the allocation's CUDA IPC handle) or to any other (without): what tests inspect.
   */
  deviceGrantKey(region: Region, trusted: boolean): Uint8Array | undefined {
    return this.#engine instanceof NativeEngine ? this.#engine.deviceGrantKey(region.id, trusted) : undefined;
  }

  /** Connects to the agent that produced `metadata`. Resolves once the peer answered the handshake. */
  connect(metadata: Uint8Array, options: ConnectOptions = {}): Promise<Peer> {
    try {
      this.#assertOpen();
      const opts = optionsObject(options, 'connect options');
      const signal = signalOption(opts.signal);
      const d = checkPeerMetadata(metadata, this.#authKeys, this.engine);
      const timeoutMs = checkTimeout(opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, 'timeoutMs');
      if (signal?.aborted) throw new KvwireError(ErrorCode.CANCELLED, 'connect was aborted');
      checkForcedCudaPath(this.engine, this.#cudaPath, d);
      return this.#connects.start(this.#nextPeer++, d, timeoutMs, signal);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #addPeer(peerId: number, d: AgentDescription, revoked: readonly number[], conn: EngineConnection): Peer {
    const peer = new Peer(this, peerId, d, conn, d.hostId === processIdentity().hostId);
    for (const id of revoked) peer.regionById(id)?.markRevoked();
    this.#peers.set(peerId, peer);
    const warning = transportFallbackWarning(peer, conn, this.engine, this.transports);
    if (warning !== undefined) {
      process.emitWarning(warning, { code: 'KVWIRE_TRANSPORT_FALLBACK' });
      safeEmit(this, 'warning', warning);
    }
    return peer;
  }

  /** @internal */
  disconnectPeer(peer: Peer): void {
    if (this.#peers.get(peer.id) !== peer) return;
    this.#peers.delete(peer.id);
    peer.markClosed();
    if (!this.#closed) this.#engine.disconnect(peer.id);
  }

  /** @internal */
  notifyPeer(peer: Peer, message: Uint8Array): Promise<void> {
    try {
      this.#assertOpen();
      peer.assertConnected();
      checkNotification(message);
      const token = this.#nextToken++;
      return new Promise<void>((resolve, reject) => {
        this.#notifies.set(token, { resolve, reject });
        this.#keepAlive.adjust(1);
        try {
          this.#engine.notify(peer.id, message, token);
        } catch (e) {
          this.#notifies.delete(token);
          this.#keepAlive.adjust(-1);
          reject(e);
        }
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  // ------------------------------------------------------------------------------------------
  // Transfers

  /** READs `remote` ranges of `peer` into `local` ranges (equal-length lists, paired by index). */
  read(
    peer: Peer,
    local: DescriptorInput<Region>,
    remote: DescriptorInput<RemoteRegion>,
    opts?: TransferOptions,
  ): Transfer {
    return this.#transfer('read', peer, local, remote, opts);
  }

  /** WRITEs `local` ranges into `remote` ranges of `peer` (equal-length lists, paired by index). */
  write(
    peer: Peer,
    local: DescriptorInput<Region>,
    remote: DescriptorInput<RemoteRegion>,
    opts?: TransferOptions,
  ): Transfer {
    return this.#transfer('write', peer, local, remote, opts);
  }

  #transfer(
    op: TransferOp,
    peer: Peer,
    local: DescriptorInput<Region>,
    remote: DescriptorInput<RemoteRegion>,
    options: TransferOptions | undefined,
  ): Transfer {
    const startNs = nowNs();
    this.#assertPeer(peer);
    const opts = checkTransferOptions(options);
    const flat = this.#transfers.flatten(op, this, peer, local, remote, opts.coalesce);
    return this.#transfers.post(op, peer, flat, opts, startNs);
  }

  /**
   * Validates a descriptor list against `peer` once; the result posts READ or WRITE of all of it or
   * of any subset by index, many times, without validating again (the fast path).
   */
  prepare(peer: Peer, local: DescriptorInput<Region>, remote: DescriptorInput<RemoteRegion>): PreparedTransfer {
    this.#assertPeer(peer);
    return prepareList(this, this, peer, local, remote, (id) => this.#regions.get(id));
  }

  /** @internal */
  postPrepared(
    p: PreparedTransfer,
    op: TransferOp,
    indices: ArrayLike<number> | undefined,
    options: TransferOptions | undefined,
  ): Transfer {
    const startNs = nowNs();
    const peer = p.peer as Peer;
    this.#assertPeer(peer);
    const opts = checkTransferOptions(options);
    const flat = preparedRows(p, op, peer.name, indices, opts.coalesce);
    return this.#transfers.post(op, peer, flat, opts, startNs);
  }

  // ------------------------------------------------------------------------------------------
  // Notifications

  /** An async iterator over notifications arriving from now on (ends when the agent closes). */
  notifications(opts: NotificationIteratorOptions = {}): AsyncIterableIterator<Notification> {
    return this.#hub.iterate(opts);
  }

  /**
   * Resolves with the first notification matching `match` (a string equal to the message text, a
   * RegExp tested on it, or a predicate); one that arrived shortly before the call counts too.
   */
  waitForNotification(
    match?: string | RegExp | ((n: Notification) => boolean),
    opts: WaitOptions = {},
  ): Promise<Notification> {
    let test: (n: Notification) => boolean;
    try {
      test = notificationMatcher(match);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#hub.wait(test, opts);
  }

  // ------------------------------------------------------------------------------------------
  // Lifetime

  /** Keeps the process alive while the agent is open, even when idle. */
  ref(): this {
    this.#keepAlive.override(true);
    return this;
  }

  /** Lets the process exit while the agent is idle (the default unless `keepAlive`). */
  unref(): this {
    this.#keepAlive.override(false);
    return this;
  }

  /**
   * Closes the agent: transfers in flight fail with `ERR_KVWIRE_CLOSED`, peers are told, memory
   * is deregistered and the engine freed.
   *
   * Asynchronous: from the call on, {@link Agent.closed} is true and every method throws
   * `ERR_KVWIRE_CLOSED`; the UCX engine shuts down on its own thread (flushing, goodbyes to peers:
   * up to ~1.5 s when a peer does not answer) while the event loop runs, and the promise resolves
   * once it has stopped, after every transfer it failed was settled. `'close'` is emitted then.
   * Idempotent: a second call returns the same promise. An agent whose process exits (or whose
   * worker thread terminates) before the promise resolves is closed synchronously by the exit hook.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    const closed = new KvwireError(ErrorCode.CLOSED, 'the agent was closed');
    this.#connects.rejectAll(closed);
    // Started before anything else is torn down here; the transfers it fails are delivered while
    // it runs, and before it resolves.
    const engineClosed = this.#engine.close();
    for (const [token, n] of [...this.#notifies]) {
      this.#notifies.delete(token);
      n.reject(closed);
    }
    this.#hub.rejectWaits(closed);
    this.#hub.close();
    for (const p of this.#peers.values()) p.markClosed();
    await engineClosed;
    this.#transfers.closeAll(); // any the engine did not report
    this.#regions.releaseAll();
    this.#keepAlive.close();
    this.emit('close');
  }

  #assertOpen(): void {
    if (this.#closed)
      throw new KvwireError(ErrorCode.CLOSED, 'the agent is closed; create a new one with Agent.create()');
  }

  #assertPeer(peer: Peer): void {
    this.#assertOpen();
    if (!(peer instanceof Peer) || this.#peers.get(peer.id) !== peer) {
      if (peer instanceof Peer && peer.state !== 'connected') peer.assertConnected();
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, "peer must be a Peer returned by this agent's connect()");
    }
    peer.assertConnected();
  }

  /** What the engine reports, routed to the part of the agent it concerns. Called on the JS thread. */
  #listener(): EngineListener {
    return {
      transferDone: (id, error, timing, inFlight) => this.#transfers.done(id, error, timing, inFlight),
      transferQuiesced: (id) => this.#transfers.quiesced(id),
      handshaked: (peerId, grant, oneSided) => this.#connects.handshaked(peerId, grant, oneSided),
      connected: (peerId, error, conn) => this.#connects.connected(peerId, error, conn),
      notification: (from, message) => {
        const n: Notification = { from, message };
        this.#hub.push(n);
        safeEmit(this, 'notification', n);
      },
      peerLost: (peerId, error) => {
        const peer = this.#peers.get(peerId);
        if (peer === undefined) return;
        peer.markLost(error);
        safeEmit(this, 'peer-lost', peer, error);
      },
      notifyDone: (token, error) => {
        const n = this.#notifies.get(token);
        if (n === undefined) return;
        this.#notifies.delete(token);
        this.#keepAlive.adjust(-1);
        if (error !== undefined) n.reject(error);
        else n.resolve();
      },
      regionRevoked: (peerId, regionId) => this.#peers.get(peerId)?.regionById(regionId)?.markRevoked(),
      regionReleased: (regionId) => {
        if (this.#regions.released(regionId)) this.#keepAlive.adjust(-1);
      },
      warning: (message) => {
        process.emitWarning(`kvwire: ${message}`, { code: 'KVWIRE_ENGINE' });
        safeEmit(this, 'warning', message);
      },
    };
  }
}
