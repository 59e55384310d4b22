/**
 * Agent: one per process or GPU. Registers memory, exports metadata, connects to peers, moves
 * descriptor lists by READ and WRITE, and receives notifications.
 *
 * @packageDocumentation
 */
import { safeEmit } from '../util/safe-emit.js';
import { EventEmitter } from 'node:events';
import { totalmem } from 'node:os';
import { markAsUntransferable } from 'node:worker_threads';
import { describeValue } from '../util/describe-value.js';
import { ErrorCode, KvwireError } from '../errors.js';
import { flattenDescriptors, selectRows } from './descriptors.js';
import type { FlatDescriptors } from './descriptors.js';
import type { Engine, EngineConnection, EngineListener, EngineTiming } from './engine.js';
import { checkCudaMemory, cuda, CudaAllocation, isCudaMemory } from './cuda.js';
import type { CudaMemory } from './cuda.js';
import { forcedCudaPathProblem } from './cuda-options.js';
import { checkAgentOptions, checkTimeout } from './agent-options.js';
import { booleanOption, invalid, optionsObject, signalOption } from './arguments.js';
import { processIdentity } from './identity.js';
import { LoopbackEngine } from './loopback.js';
import type { LoopbackFaults } from './loopback.js';
import { decodeMetadata, encodeMetadata } from './metadata.js';
import type { AgentDescription } from './metadata.js';
import { NativeEngine, ucxUnavailableReason } from './native-engine.js';
import { NotificationHub } from './notifications.js';
import type { NotificationIteratorOptions, WaitOptions } from './notifications.js';
import { Peer } from './peer.js';
import type { PeerHost } from './peer.js';
import { Region, RemoteRegion } from './region.js';
import type { RegionOwner } from './region.js';
import { PreparedTransfer, Transfer } from './transfer.js';
import type { PreparedHost, TransferHost } from './transfer.js';
import type {
  Access,
  AgentOptions,
  ConnectOptions,
  DescriptorInput,
  EngineKind,
  HostMemory,
  Notification,
  TransferOp,
  TransferOptions,
} from './types.js';

const ACCESS = new Set<Access>(['read', 'write', 'readwrite', 'none']);
const MAX_NOTIFY = 1 << 20;
let agentCounter = 0;

function allIndices(n: number): Uint32Array {
  const all = new Uint32Array(n);
  for (let i = 0; i < n; i++) all[i] = i;
  return all;
}

/**
 * Makes the memory under `m` impossible to detach for good. Hazard guarded: registered memory
 * used after it was freed. The Region keeps the ArrayBuffer object alive, but transferring it
 * (`structuredClone(ab, { transfer: [ab] })`, `port.postMessage(ab, [ab])`) would move its
 * backing store to a new object that is collected, and freed, on its own; a peer's READ then read
 * freed memory (a crash, or someone else's bytes). Marked untransferable, a transfer copies the
 * bytes instead and the registered ones stay where they are, owned by the object the Region holds.
 */
function pinMemory(m: ArrayBuffer | ArrayBufferView): void {
  markAsUntransferable(ArrayBuffer.isView(m) ? m.buffer : m);
}

function nowNs(): number {
  return Number(process.hrtime.bigint());
}

/** Transfer options after checking: notify as bytes, a real AbortSignal, coalesce as a boolean. */
interface CheckedTransferOptions {
  readonly timeoutMs: number | undefined;
  readonly notify: Uint8Array | null;
  readonly signal: AbortSignal | undefined;
  readonly coalesce: boolean;
}

function checkTransferOptions(options: TransferOptions | undefined): CheckedTransferOptions {
  const o = optionsObject(options, 'transfer options');
  const timeoutMs = o.timeoutMs === undefined ? undefined : checkTimeout(o.timeoutMs, 'timeoutMs');
  let notify: Uint8Array | null = null;
  if (o.notify !== undefined) {
    notify = typeof o.notify === 'string' ? Buffer.from(o.notify, 'utf8') : o.notify;
    if (!(notify instanceof Uint8Array)) invalid('notify', 'a string or a Uint8Array', o.notify);
    if (notify.byteLength > MAX_NOTIFY) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `a notification holds at most ${MAX_NOTIFY} bytes`);
    }
  }
  const signal = signalOption(o.signal);
  const coalesce = booleanOption(o.coalesce, 'coalesce') ?? true;
  return { timeoutMs, notify, signal, coalesce };
}

/** The descriptor count of columns input (0 for an array: no scratch array is needed for it). */
function columnsCount(input: unknown): number {
  if (Array.isArray(input) || input === null || typeof input !== 'object') return 0;
  const c = input as { count?: unknown; region?: unknown };
  if (typeof c.count === 'number' && Number.isSafeInteger(c.count) && c.count >= 0) return c.count;
  return c.region instanceof Uint32Array ? c.region.length : 0;
}

/** True when the transports string lets UCX use shared memory. */
function allowsSharedMemory(tls: string): boolean {
  const parts = tls.split(',').map((s) => s.trim());
  if (parts.some((p) => p.startsWith('^'))) return !parts.some((p) => /\^?(sm|shm|posix|sysv|cma)$/.test(p));
  return parts.some((p) => ['all', 'sm', 'shm', 'posix', 'sysv', 'cma', 'knem', 'xpmem'].includes(p));
}

interface PendingConnect {
  d: AgentDescription;
  resolve: (p: Peer) => void;
  reject: (e: KvwireError) => void;
  cleanup: () => void;
}

/**
 * The entry point of the transport.
 *
 * Events: `'notification'` ({@link Notification}), `'peer-lost'` (peer, error), `'warning'`
 * (message: e.g. a peer reached over tcp although shared memory was allowed), `'close'`.
 */
export class Agent extends EventEmitter implements RegionOwner, TransferHost, PreparedHost, PeerHost {
  /** This agent's name, as peers see it. */
  readonly name: string;
  /** The engine moving the bytes. */
  readonly engine: EngineKind;
  /** Deadline of transfers that give none. */
  readonly defaultTimeoutMs: number;
  /** Fault injection (loopback engine only; undefined otherwise). */
  readonly faults: LoopbackFaults | undefined;
  readonly #engine: Engine;
  readonly #regions = new Map<number, Region>();
  readonly #labels = new Map<string, Region>();
  readonly #releasing = new Map<number, Region>();
  readonly #peers = new Map<number, Peer>();
  readonly #connecting = new Map<number, PendingConnect>();
  readonly #transfers = new Map<number, Transfer>();
  readonly #unquiesced = new Map<number, Transfer>(); // posted, not yet reported quiet by the engine
  readonly #notifies = new Map<number, { resolve: () => void; reject: (e: KvwireError) => void }>();
  readonly #hub: NotificationHub;
  readonly #keepAlive: boolean;
  #nextRegion = 1;
  #nextPeer = 1;
  #nextTransfer = 1;
  #nextToken = 1;
  #pending = 0;
  #refed = false;
  #closed = false;

  /** Creates an agent. */
  static async create(opts: AgentOptions = {}): Promise<Agent> {
    return new Agent(opts);
  }

  private constructor(input: AgentOptions) {
    super();
    const opts = checkAgentOptions(input);
    const choice = opts.engine;
    this.name = opts.name ?? `kvwire-${process.pid}-${++agentCounter}`;
    this.defaultTimeoutMs = opts.defaultTimeoutMs;
    this.#keepAlive = opts.keepAlive;
    this.#cudaPath = opts.cuda?.path ?? 'auto';
    this.#hub = new NotificationHub((d) => this.#adjustPending(d));
    const listener = this.#listener();
    if (choice === 'loopback') {
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
    if (this.#keepAlive) this.#adjustPending(0);
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
    return [...this.#regions.values()];
  }

  /** Connected (or lost) peers. */
  get peers(): readonly Peer[] {
    return [...this.#peers.values()];
  }

  /** Transfers in flight. */
  get inFlight(): number {
    return this.#transfers.size;
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
   */
  register(memory: HostMemory | CudaMemory, options: { access?: Access; label?: string } = {}): Region {
    this.#assertOpen();
    const opts = optionsObject(options, 'register options');
    const access = this.#checkAccess(opts.access);
    let bytes: Uint8Array;
    if (memory instanceof ArrayBuffer) bytes = new Uint8Array(memory);
    else if (ArrayBuffer.isView(memory)) bytes = new Uint8Array(memory.buffer, memory.byteOffset, memory.byteLength);
    else if (isCudaMemory(memory)) {
      return this.#registerDevice(memory, access, opts.label);
    } else {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        'memory must be an ArrayBuffer, a typed array, a DataView or a Buffer',
      );
    }
    if (bytes.byteLength === 0)
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'cannot register an empty (or detached) buffer');
    const { id, label } = this.#newRegionName(opts.label);
    pinMemory(bytes);
    const { base, key } = this.#engine.register(id, label, bytes, access);
    return this.#addRegion(new Region(this, id, label, access, bytes, memory), base, key);
  }

  #registerDevice(memory: CudaMemory, access: Access, requested: string | undefined): Region {
    checkCudaMemory(memory);
    const reason = cuda.unavailableReason();
    if (reason !== undefined) throw new KvwireError(ErrorCode.UNSUPPORTED, `CUDA is unavailable: ${reason}`);
    const { id, label } = this.#newRegionName(requested);
    const { base, key, ipcError } = this.#engine.registerDevice(id, label, memory, access);
    const region = this.#addRegion(new Region(this, id, label, access, undefined, memory, memory), base, key);
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
    const access = this.#checkAccess(opts.access);
    if (!Number.isSafeInteger(length) || length <= 0) invalid('length', 'a positive integer', length);
    // Far beyond the machine's memory, UCX falls back from shared memory to mapping it anyway and
    // the process dies when the pages are touched: refuse up front instead.
    if (length > totalmem()) {
      throw new KvwireError(
        ErrorCode.CAPACITY,
        `cannot allocate ${length.toLocaleString('en-US')} bytes: this machine has ${totalmem().toLocaleString('en-US')} bytes of memory`,
      );
    }
    const { id, label } = this.#newRegionName(opts.label);
    const { base, key, memory } = this.#engine.allocate(id, label, length, access);
    pinMemory(memory);
    return this.#addRegion(new Region(this, id, label, access, new Uint8Array(memory), memory), base, key);
  }

  #checkAccess(access: Access | undefined): Access {
    const a = access ?? 'none';
    if (!ACCESS.has(a)) invalid('access', "'read', 'write', 'readwrite' or 'none'", a);
    return a;
  }

  #newRegionName(requested: string | undefined): { id: number; label: string } {
    const id = this.#nextRegion;
    const label = requested ?? `region-${id}`;
    if (typeof label !== 'string' || label.length === 0 || Buffer.byteLength(label) > 1024) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'label must be a non-empty string of at most 1024 bytes');
    }
    if (this.#labels.has(label)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `label '${label}' is already registered with this agent; labels must be unique`,
      );
    }
    this.#nextRegion++;
    return { id, label };
  }

  #addRegion(region: Region, base: bigint, key: Uint8Array): Region {
    this.#regionInfo.set(region.id, { base, key });
    this.#regions.set(region.id, region);
    this.#labels.set(region.label, region);
    return region;
  }

  #scratch = new Float64Array(0);

  readonly #regionInfo = new Map<number, { base: bigint; key: Uint8Array }>();

  /** Deregisters a region (same as `region.deregister()`). */
  deregister(region: Region): void {
    if (!(region instanceof Region) || region.owner !== this) invalid('region', 'a Region of this agent', region);
    region.deregister();
  }

  /** @internal */
  deregisterRegion(region: Region): void {
    if (this.#regions.get(region.id) !== region) return;
    const r = this.#closed ? 0 : this.#engine.deregister(region.id);
    if (r > 0) {
      throw new KvwireError(
        ErrorCode.REGION_BUSY,
        `${region} is used by ${r} transfer(s) in flight; await or cancel them before deregistering it`,
      );
    }
    this.#regions.delete(region.id);
    this.#labels.delete(region.label);
    this.#regionInfo.delete(region.id);
    region.markDeregistered();
    if (r < 0) {
      region.markReleased();
    } else {
      this.#releasing.set(region.id, region);
      this.#adjustPending(1); // until released: `await region.released` must not let the process exit
    }
  }

  // ------------------------------------------------------------------------------------------
  // Metadata and peers

  /** Versioned metadata describing this agent and its exported regions (access other than 'none'). */
  metadata(): Uint8Array {
    this.#assertOpen();
    const id = processIdentity();
    return encodeMetadata({
      engine: this.engine,
      name: this.name,
      pid: id.pid,
      pidStart: id.pidStart,
      hostId: id.hostId,
      address: this.#engine.address,
      regions: [...this.#regions.values()]
        .filter((r) => r.access !== 'none')
        .map((r) => ({
          id: r.id,
          label: r.label,
          access: r.access,
          length: r.length,
          memory: r.kind,
          ...this.#regionInfo.get(r.id)!,
        })),
    });
  }

  /** Connects to the agent that produced `metadata`. Resolves once the peer answered the handshake. */
  connect(metadata: Uint8Array, options: ConnectOptions = {}): Promise<Peer> {
    try {
      this.#assertOpen();
      const given = optionsObject(options, 'connect options');
      const opts = { timeoutMs: given.timeoutMs, signal: signalOption(given.signal) };
      const d = decodeMetadata(metadata);
      if (d.engine !== this.engine) {
        throw new KvwireError(
          ErrorCode.BAD_METADATA,
          `bad metadata: it comes from a '${d.engine}' agent but this agent uses the '${this.engine}' engine; both sides must use the same engine`,
        );
      }
      const timeoutMs = checkTimeout(opts.timeoutMs ?? 10_000, 'timeoutMs');
      if (opts.signal?.aborted) throw new KvwireError(ErrorCode.CANCELLED, 'connect was aborted');
      const cudaProblem = this.engine === 'ucx' ? forcedCudaPathProblem(this.#cudaPath, d) : undefined;
      if (cudaProblem !== undefined) throw new KvwireError(ErrorCode.UNSUPPORTED, cudaProblem);
      const peerId = this.#nextPeer++;
      return new Promise<Peer>((resolve, reject) => {
        const fail = (e: KvwireError) => {
          if (this.#connecting.get(peerId) !== entry) return;
          this.#connecting.delete(peerId);
          entry.cleanup();
          if (!this.#closed) this.#engine.disconnect(peerId);
          reject(e);
        };
        const backstop = setTimeout(
          () => fail(new KvwireError(ErrorCode.PEER_UNREACHABLE, `no answer from '${d.name}' within ${timeoutMs} ms`)),
          timeoutMs + 2000,
        );
        backstop.unref();
        const onAbort = () => fail(new KvwireError(ErrorCode.CANCELLED, 'connect was aborted'));
        opts.signal?.addEventListener('abort', onAbort, { once: true });
        const entry: PendingConnect = {
          d,
          resolve,
          reject: fail,
          cleanup: () => {
            clearTimeout(backstop);
            opts.signal?.removeEventListener('abort', onAbort);
            this.#adjustPending(-1);
          },
        };
        this.#connecting.set(peerId, entry);
        this.#adjustPending(1);
        this.#engine.connect(peerId, d, timeoutMs);
      });
    } catch (e) {
      return Promise.reject(e);
    }
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
      if (!(message instanceof Uint8Array))
        throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'message must be a string or a Uint8Array');
      if (message.byteLength > MAX_NOTIFY)
        throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `a notification holds at most ${MAX_NOTIFY} bytes`);
      const token = this.#nextToken++;
      return new Promise<void>((resolve, reject) => {
        this.#notifies.set(token, { resolve, reject });
        this.#adjustPending(1);
        try {
          this.#engine.notify(peer.id, message, token);
        } catch (e) {
          this.#notifies.delete(token);
          this.#adjustPending(-1);
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
    opts: TransferOptions = {},
  ): Transfer {
    return this.#transfer('read', peer, local, remote, opts);
  }

  /** WRITEs `local` ranges into `remote` ranges of `peer` (equal-length lists, paired by index). */
  write(
    peer: Peer,
    local: DescriptorInput<Region>,
    remote: DescriptorInput<RemoteRegion>,
    opts: TransferOptions = {},
  ): Transfer {
    return this.#transfer('write', peer, local, remote, opts);
  }

  #transfer(
    op: TransferOp,
    peer: Peer,
    local: DescriptorInput<Region>,
    remote: DescriptorInput<RemoteRegion>,
    options: TransferOptions,
  ): Transfer {
    const startNs = nowNs();
    this.#assertPeer(peer);
    const opts = checkTransferOptions(options);
    // The flat list lives only until the engine takes it (both engines copy it in post()), so one
    // scratch array serves every call: no 650 KB allocation (and its garbage) per 16k-descriptor READ.
    const n = columnsCount(local);
    if (n * 5 > this.#scratch.length && n <= 1 << 24)
      this.#scratch = new Float64Array(2 ** Math.ceil(Math.log2(n * 5)));
    const flat = flattenDescriptors(op, this, peer, peer.name, local, remote, opts.coalesce, this.#scratch);
    return this.#post(op, peer, flat, opts, startNs);
  }

  /**
   * Validates a descriptor list against `peer` once; the result posts READ or WRITE of all of it or
   * of any subset by index, many times, without validating again (the fast path).
   */
  prepare(peer: Peer, local: DescriptorInput<Region>, remote: DescriptorInput<RemoteRegion>): PreparedTransfer {
    this.#assertPeer(peer);
    // Validated for both directions' bounds; access is checked per post (cheap: per region).
    const flat = flattenDescriptors(undefined, this, peer, peer.name, local, remote, false);
    const localRegions = new Set<Region>();
    const remoteRegions = new Set<RemoteRegion>();
    for (let i = 0; i < flat.flat.length; i += 5) {
      localRegions.add(this.#regions.get(flat.flat[i]!)!);
      remoteRegions.add(peer.regionById(flat.flat[i + 2]!)!);
    }
    return new PreparedTransfer(this, peer, flat.flat, flat.bytes, [...localRegions], [...remoteRegions]);
  }

  /** @internal */
  postPrepared(
    p: PreparedTransfer,
    op: TransferOp,
    indices: ArrayLike<number> | undefined,
    options: TransferOptions,
  ): Transfer {
    const startNs = nowNs();
    const peer = p.peer as Peer;
    this.#assertPeer(peer);
    const opts = checkTransferOptions(options);
    for (const r of p.localRegions) {
      if (!r.registered)
        throw new KvwireError(
          ErrorCode.DEREGISTERED,
          `${r} was deregistered since the list was prepared; prepare it again`,
        );
    }
    for (const r of p.remoteRegions as readonly RemoteRegion[]) {
      if (r.revoked)
        throw new KvwireError(
          ErrorCode.DEREGISTERED,
          `peer '${peer.name}' deregistered ${r} since the list was prepared`,
        );
      const need = op === 'read' ? 'read' : 'write';
      if (r.access !== 'readwrite' && r.access !== need) {
        throw new KvwireError(
          ErrorCode.ACCESS_DENIED,
          `${r} of peer '${peer.name}' allows ${r.access} access, so it cannot be ${op === 'read' ? 'read' : 'written'}`,
        );
      }
    }
    const coalesce = opts.coalesce;
    let flat: FlatDescriptors;
    if (indices === undefined) {
      // The whole list: coalesced once, reused by every post (engines never modify it).
      flat = coalesce
        ? (p.allCoalesced ??= selectRows(p.flat, allIndices(p.length), true))
        : { flat: p.flat, count: p.length, bytes: p.bytes, given: p.length };
    } else {
      if (!Array.isArray(indices) && !ArrayBuffer.isView(indices)) {
        invalid('indices', 'an array (or typed array) of descriptor indices', indices);
      }
      flat = selectRows(p.flat, indices, coalesce);
    }
    return this.#post(op, peer, flat, opts, startNs);
  }

  #post(op: TransferOp, peer: Peer, flat: FlatDescriptors, opts: CheckedTransferOptions, startNs: number): Transfer {
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const notify = opts.notify;
    if (opts.signal?.aborted)
      throw new KvwireError(ErrorCode.CANCELLED, 'the transfer was aborted before it was posted');
    const id = this.#nextTransfer++;
    const t = new Transfer(this, id, op, flat.bytes, flat.given, flat.count, startNs, peer.transport);
    t.markPrepared(nowNs());
    if (this.#engine.post(id, op === 'write' ? 1 : 0, peer.id, flat.flat, notify, timeoutMs)) {
      const done = nowNs();
      t.settle(undefined, { startNs, postedNs: done, doneNs: done }); // copied inline: complete now
      t.markQuiesced();
      return t;
    }
    this.#transfers.set(id, t);
    this.#unquiesced.set(id, t);
    this.#adjustPending(1);
    // Backstop: the engine enforces the deadline; this guards against an engine that cannot.
    const backstop = setTimeout(() => {
      this.cancelTransfer(t, ErrorCode.TIMEOUT, `transfer ${id} did not complete within ${timeoutMs} ms`);
    }, timeoutMs + 1000);
    backstop.unref();
    const onAbort = () => this.cancelTransfer(t, ErrorCode.CANCELLED, 'the transfer was aborted');
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    t.onSettle = () => {
      clearTimeout(backstop);
      opts.signal?.removeEventListener('abort', onAbort);
      this.#transfers.delete(id);
      this.#adjustPending(-1);
    };
    return t;
  }

  /** @internal */
  cancelTransfer(t: Transfer, code: string, message: string): void {
    if (!t.pending) return;
    if (!this.#closed) this.#engine.cancel(t.id, code);
    t.settle(KvwireError.fromCode(code, message));
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
    const test =
      match === undefined
        ? () => true
        : typeof match === 'string'
          ? (n: Notification) => n.message.toString('utf8') === match
          : match instanceof RegExp
            ? (n: Notification) => match.test(n.message.toString('utf8'))
            : match;
    if (typeof test !== 'function') {
      return Promise.reject(
        new KvwireError(
          ErrorCode.INVALID_ARGUMENT,
          `match must be a string, a RegExp or a predicate function, not ${describeValue(match)}`,
        ),
      );
    }
    return this.#hub.wait(test, opts);
  }

  // ------------------------------------------------------------------------------------------
  // Lifetime

  /** Keeps the process alive while the agent is open, even when idle. */
  ref(): this {
    this.#keepAliveOverride = true;
    this.#adjustPending(0);
    return this;
  }

  /** Lets the process exit while the agent is idle (the default unless `keepAlive`). */
  unref(): this {
    this.#keepAliveOverride = false;
    this.#adjustPending(0);
    return this;
  }

  #keepAliveOverride: boolean | undefined;
  readonly #cudaPath: 'auto' | 'ucx' | 'ipc' | 'staging';

  /**
   * Closes the agent: transfers in flight fail with `ERR_KVWIRE_CLOSED`, peers are told, memory
   * is deregistered and the engine freed. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new KvwireError(ErrorCode.CLOSED, 'the agent was closed');
    for (const c of [...this.#connecting.values()]) c.reject(closed);
    this.#engine.close(); // delivers the transfers it failed, synchronously
    for (const t of [...this.#transfers.values()])
      t.settle(new KvwireError(ErrorCode.CLOSED, 'the agent was closed while this transfer was in flight'));
    for (const t of this.#unquiesced.values()) t.markQuiesced(); // the engine is gone: nothing runs
    this.#unquiesced.clear();
    for (const [token, n] of [...this.#notifies]) {
      this.#notifies.delete(token);
      n.reject(closed);
    }
    this.#hub.rejectWaits(closed);
    this.#hub.close();
    for (const p of this.#peers.values()) p.markClosed();
    for (const r of [...this.#regions.values(), ...this.#releasing.values()]) r.markReleased();
    this.#regions.clear();
    this.#labels.clear();
    this.#releasing.clear();
    this.#pending = 0;
    this.emit('close');
  }

  #quiesce(id: number): void {
    const t = this.#unquiesced.get(id);
    if (t === undefined) return;
    this.#unquiesced.delete(id);
    t.markQuiesced();
  }

  #adjustPending(delta: number): void {
    this.#pending += delta;
    if (this.#closed) return;
    const want = this.#pending > 0 || (this.#keepAliveOverride ?? this.#keepAlive);
    if (want !== this.#refed) {
      this.#refed = want;
      if (want) this.#engine.ref();
      else this.#engine.unref();
    }
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

  #listener(): EngineListener {
    return {
      transferDone: (id: number, error: KvwireError | undefined, timing: EngineTiming, inFlight: number) => {
        this.#transfers.get(id)?.settle(error, timing);
        if (inFlight === 0) this.#quiesce(id);
      },
      transferQuiesced: (id: number) => this.#quiesce(id),
      connected: (peerId: number, error: KvwireError | undefined, conn?: EngineConnection) => {
        const entry = this.#connecting.get(peerId);
        if (entry === undefined) {
          if (error === undefined && !this.#closed) this.#engine.disconnect(peerId); // gave up already
          return;
        }
        if (error !== undefined || conn === undefined) {
          entry.reject(error ?? new KvwireError(ErrorCode.PEER_UNREACHABLE, 'connect failed'));
          return;
        }
        this.#connecting.delete(peerId);
        entry.cleanup();
        const sameHost = entry.d.hostId === processIdentity().hostId;
        const peer = new Peer(this, peerId, entry.d, conn, sameHost);
        this.#peers.set(peerId, peer);
        if (conn.transport === 'tcp' && sameHost && this.engine === 'ucx' && allowsSharedMemory(this.transports)) {
          const msg =
            `kvwire: peer '${peer.name}' is on this host but is reached over tcp (${conn.lanes}), not shared memory ` +
            `(transports: ${this.transports}); check that both processes can share memory (same IPC namespace, /dev/shm), or set transports to 'tcp' to silence this`;
          process.emitWarning(msg, { code: 'KVWIRE_TRANSPORT_FALLBACK' });
          safeEmit(this, 'warning', msg);
        }
        entry.resolve(peer);
      },
      notification: (from: string, message: Buffer) => {
        const n: Notification = { from, message };
        this.#hub.push(n);
        safeEmit(this, 'notification', n);
      },
      peerLost: (peerId: number, error: KvwireError) => {
        const peer = this.#peers.get(peerId);
        if (peer === undefined) return;
        peer.markLost(error);
        safeEmit(this, 'peer-lost', peer, error);
      },
      notifyDone: (token: number, error: KvwireError | undefined) => {
        const n = this.#notifies.get(token);
        if (n === undefined) return;
        this.#notifies.delete(token);
        this.#adjustPending(-1);
        if (error !== undefined) n.reject(error);
        else n.resolve();
      },
      regionRevoked: (peerId: number, regionId: number) => {
        this.#peers.get(peerId)?.regionById(regionId)?.markRevoked();
      },
      regionReleased: (regionId: number) => {
        const r = this.#releasing.get(regionId);
        if (r === undefined) return;
        this.#releasing.delete(regionId);
        this.#adjustPending(-1);
        r.markReleased();
      },
      warning: (message: string) => {
        process.emitWarning(`kvwire: ${message}`, { code: 'KVWIRE_ENGINE' });
        safeEmit(this, 'warning', message);
      },
    };
  }
}
