/**
 * The engine interface: what the native UCX engine and the loopback engine each implement for
 * {@link Agent}. Internal: users see Agent, Region, Peer and Transfer.
 *
 * The Agent validates every call before it reaches an engine (so both engines give the same
 * errors); engines re-check what they can (the native engine re-checks every descriptor, and the
 * target side of a transfer checks again what a peer asks of it).
 *
 * @packageDocumentation
 */
import type { KvwireError } from '../errors.js';
import type { AgentDescription } from './metadata.js';
import type { CudaMemory } from './cuda.js';
import type { Access, CudaPath, EngineKind, HostMemory, PeerLiveness, TransportCategory } from './types.js';

/** Engine timestamps of a transfer, in nanoseconds on the monotonic clock. */
export interface EngineTiming {
  readonly startNs: number;
  readonly postedNs: number;
  readonly doneNs: number;
}

/** How a connection travels, as the engine found out. */
export interface EngineConnection {
  readonly transport: TransportCategory;
  /** Details, e.g. "sysv/memory+posix/memory+cma/memory" or "tcp/lo". */
  readonly lanes: string;
  /** Data path: one-sided RMA, active messages, or the in-process copy. */
  readonly protocol: 'rma' | 'am' | 'loopback';
  /** How transfers touching device memory travel (undefined: the engine moves host memory only). */
  readonly cudaPath?: CudaPath;
  /**
   * How the calling thread checks that the peer's process lives before it copies the peer's
   * registered memory itself (cross-memory attach); undefined where it never does.
   */
  readonly liveness?: PeerLiveness;
}

/** What an engine tells its agent. Called on the JS thread. */
export interface EngineListener {
  /** `inFlight` > 0: operations of it still run; `transferQuiesced(id)` follows once they finished. */
  transferDone(id: number, error: KvwireError | undefined, timing: EngineTiming, inFlight: number): void;
  transferQuiesced(id: number): void;
  /**
   * The target accepted the handshake and sent its grant (lib/transport/grant.ts); the agent checks
   * it against the metadata, then calls `attach` (or `disconnect`). `oneSided`: the target granted
   * one-sided access and this engine will use it.
   */
  handshaked(peerId: number, grant: Uint8Array, oneSided: boolean): void;
  /** The connection is usable (after `attach`), or connecting failed. */
  connected(peerId: number, error: KvwireError | undefined, connection?: EngineConnection): void;
  notification(from: string, message: Buffer): void;
  peerLost(peerId: number, error: KvwireError): void;
  notifyDone(token: number, error: KvwireError | undefined): void;
  regionRevoked(peerId: number, regionId: number): void;
  regionReleased(regionId: number): void;
  warning(message: string): void;
}

/** One engine instance, owned by one Agent. */
export interface Engine {
  readonly kind: EngineKind;
  /** The transports this engine may use (UCX_TLS syntax), for diagnostics. */
  readonly transports: string;
  /** The engine address peers connect to (part of the metadata). */
  readonly address: Uint8Array;
  /** Registers memory in place (the engine grants peers its keys itself, in the handshake). */
  register(id: number, label: string, memory: HostMemory, access: Access): void;
  /**
   * Registers validated-shape device memory (the engine validates it with the driver); returns its
   * device address and the key peers need, and `ipcError` when same-host peers cannot map it.
   */
  registerDevice(id: number, label: string, memory: CudaMemory, access: Access): { ipcError?: string };
  /** Allocates `length` bytes the engine chooses (shared memory for UCX) and registers them. */
  allocate(id: number, label: string, length: number, access: Access): { memory: ArrayBuffer };
  /** 0: deregistered; N > 0: N local transfers still use it; -1: unknown. */
  deregister(id: number): number;
  /**
   * Starts connecting (throws `ERR_KVWIRE_BAD_METADATA` when the address cannot be given to the
   * transport); `handshaked(peerId, ...)` follows, or `connected(peerId, error)`.
   */
  connect(peerId: number, peer: AgentDescription, timeoutMs: number): void;
  /** After `handshaked`: the peer's regions as checked against the grant; `connected` follows. */
  attach(peerId: number, peer: AgentDescription): void;
  disconnect(peerId: number): void;
  /**
   * Posts a validated transfer (flat descriptors, stride 5); throws a KvwireError if refused.
   * The engine copies `descs` before returning: the caller reuses the array.
   * Returns 0 when the transfer is queued (`transferDone` reports it), else the time it completed
   * on the calling thread (in ns, the clock of `process.hrtime.bigint()`): small copies to
   * same-host memory are done right there, and its `transferDone` is then never reported. The
   * time comes from the engine, so a small transfer's post costs the caller no second clock read.
   * `alone`: no other transfer of this agent is pending, so the engine may let the calling thread
   * wait for this one's completion (`tuning.completionSpinUs`); with others in flight it never
   * does, which would hold back the posts that follow.
   */
  post(
    id: number,
    op: 0 | 1,
    peerId: number,
    descs: Float64Array,
    notify: Uint8Array | null,
    timeoutMs: number,
    alone: boolean,
  ): number;
  cancel(id: number, code: string): void;
  notify(peerId: number, message: Uint8Array, token: number): void;
  /** Keep the process alive (pending work) or not. */
  ref(): void;
  unref(): void;
  /**
   * Closes: transfers in flight fail with `ERR_KVWIRE_CLOSED`. Resolves once the engine has
   * stopped; every event it produced while closing was delivered before. Idempotent (the same
   * promise). The native engine shuts down on its own thread: the event loop runs meanwhile.
   */
  close(): Promise<void>;
}

/** Creates an engine for an agent. */
export type EngineFactory = (name: string, listener: EngineListener) => Engine;
