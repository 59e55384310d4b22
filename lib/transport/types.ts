/**
 * Public types of the transport contract.
 *
 * @packageDocumentation
 */

import type { AgentAuthOptions } from './auth.js';

/** What a remote peer may do with a region. Local use (as the source or destination of this
 * agent's own transfers) needs no remote access: 'none' is the safe default. */
export type Access = 'read' | 'write' | 'readwrite' | 'none';

/** Transfer direction: READ pulls remote bytes into local memory, WRITE pushes local bytes out. */
export type TransferOp = 'read' | 'write';

/** Which engine moves the bytes. */
export type EngineKind = 'ucx' | 'loopback';

/** Engine choice at creation: 'auto' is UCX when available, else an error that says why. */
export type EngineChoice = 'auto' | EngineKind;

/** Where a region's bytes live: host memory, or CUDA device memory. */
export type MemoryKind = 'host' | 'cuda';

/**
 * How transfers that touch device memory travel to a peer: 'ucx' (UCX moves device memory itself,
 * when it was built with CUDA transports), 'ipc' (same host: CUDA IPC, device-to-device copies on a
 * stream) or 'staging' (pinned host buffers and the UCX wire, pipelined in chunks).
 */
export type CudaPath = 'ucx' | 'ipc' | 'staging';

/**
 * How an agent checks that a same-host peer's process still lives before its calling thread copies
 * the peer's memory by cross-memory attach: 'beacon' (one memory load of a page the kernel marks
 * when the peer's engine thread ends) or 'pidfd' (one system call per transfer).
 */
export type PeerLiveness = 'beacon' | 'pidfd';

/** Host memory kvwire registers in place (never copied). */
export type HostMemory = ArrayBuffer | ArrayBufferView;

/** How the bytes travel between two agents, as the engine actually chose it. */
export type TransportCategory = 'sm' | 'tcp' | 'rdma' | 'self' | 'cuda' | 'loopback' | 'unknown';

/** Options of {@link Agent.create}. */
export interface AgentOptions {
  /** Name peers see (as `from` of notifications). Default: `kvwire-<pid>-<n>`. */
  name?: string;
  /** 'auto' (default): UCX if this build and machine have it; 'loopback': in-process mock engine. */
  engine?: EngineChoice;
  /**
   * Transports UCX may use, as UCX_TLS spells them (e.g. 'tcp', 'sm', 'sm,tcp', 'rc,sm').
   * Default: the UCX_TLS environment variable, else everything UCX finds.
   */
  transports?: string | readonly string[];
  /** Deadline of a transfer that does not give its own `timeoutMs`. Default 30 000 ms. */
  defaultTimeoutMs?: number;
  /**
   * Data path: 'auto' (default) uses one-sided access where the target grants it (same-host
   * peers, see `directAccess`) and active messages, checked by the target, everywhere else. 'am'
   * never uses one-sided access. 'rma' requires it: `connect()` fails with
   * `ERR_KVWIRE_UNSUPPORTED` when the target does not grant it (the initiator cannot choose a path
   * the target did not offer).
   */
  protocol?: 'auto' | 'rma' | 'am';
  /** Keep the process alive while the agent is open, even when idle (like a listening server). */
  keepAlive?: boolean;
  /**
   * Authentication of peers with a secret the agents of a deployment share (docs/SECURITY.md).
   * With it, `metadata()` is signed and `connect()` refuses metadata not signed with the secret
   * before parsing any of it; the engines' handshake is challenge/response and a target serves
   * nothing to a connection that has not proved it holds the secret. Default: the
   * `KVWIRE_SECRET` environment variable when set, else none (every peer that can reach the agent
   * is served). `false`: none, whatever the environment says.
   */
  auth?: AgentAuthOptions | false;
  /**
   * Which peers this agent grants one-sided access to: paths it cannot check itself, where the
   * peer copies the bytes (shared memory it maps, cross-memory attach, CUDA IPC). 'same-host'
   * (default): peers on this host running as the same user, to whom the kernel already allows as
   * much (ptrace rules permitting). 'none': no peer; every byte a peer moves passes this agent's
   * checks (region, access, bounds), at some cost in speed on one host.
   */
  directAccess?: 'same-host' | 'none';
  /** How device memory moves (UCX engine; see docs/cuda.md). */
  cuda?: {
    /** 'auto' (default): 'ucx' when UCX moves device memory, else 'ipc' on the same host, else 'staging'. */
    path?: 'auto' | CudaPath;
    /** Size of a staging buffer, the unit of the staging pipeline (default 16 MiB; 4 KiB .. 1 GiB). */
    stagingChunkBytes?: number;
    /** Staging buffers per direction (default 4; 1 .. 64): copies and the wire overlap across them. */
    stagingBuffers?: number;
  };
  /**
   * Tuning of the native engine (advanced). Every value is an integer in its documented range, and
   * an unknown key is refused (`ERR_KVWIRE_INVALID_ARGUMENT`): nothing is clamped or ignored.
   */
  tuning?: {
    /** Busy-poll this long (µs) after the last activity before sleeping. Default 100; 0 .. 1 000 000. */
    spinUs?: number;
    /** Active-message payloads at least this large go by rendezvous. Default 16 KiB; 0 .. 1 GiB. */
    rndvThreshold?: number;
    /** Active-message operations in flight per transfer. Default 256; 1 .. 65 536. */
    windowOps?: number;
    /**
     * Active-message protocol (tcp): runs of descriptors shorter than this many bytes travel
     * packed in one message, copied out and scattered on arrival (fewer, larger messages).
     * Default 128 KiB; 0 sends every descriptor alone; at most 32 MiB.
     */
    batchBelow?: number;
    /** Largest packed message, in bytes (default 1 MiB; 1 .. 32 MiB). */
    batchBytes?: number;
    /**
     * Transfers of at most this many bytes that go one-sided to a same-host peer granted it
     * (shared memory it allocated with `agent.allocate()`, mapped here; or memory it registered
     * with `agent.register()`, by cross-memory attach) are copied by the calling thread: no
     * thread hand-off, done when `read()`/`write()` returns. It bounds how long such a call
     * holds the event loop: about 66 µs for 1 MiB of registered memory (cross-memory attach; 43-53 µs
     * where a second core is free: from 512 KiB a helper thread copies half of it at the same time)
     * and 26 µs of allocated memory (memcpy), measured on 2 vCPUs. Default 1 MiB; 0 disables; at
     * most 1 GiB.
     */
    inlineBytes?: number;
    /**
     * How long (µs) the calling thread may wait in `read()`/`write()` for a transfer that went to
     * the engine (tcp, or above `inlineBytes`) and is at most `completionSpinBytes`: if it
     * completes meanwhile, the call returns it completed (`transfer.stats` set), without the
     * completion's trip back through the event loop (a thread wake-up: about 10-15 µs on a VM);
     * otherwise it completes as usual. While it waits, the calling thread runs the engine's work
     * itself (posts the transfer, progresses UCX), and the engine thread steps aside while such
     * waits keep coming; a failure ends the wait at once. It holds the event loop up to this long
     * per such call, and gives the core away between looks. It waits only for a transfer posted
     * while no other of the agent's is pending (one at a time: latency-bound), never for one among
     * many in flight. After four waits in a row that ended without the completion, only one
     * transfer in sixteen waits until one pays again. Default 120; 0 never waits; at most 10,000.
     */
    completionSpinUs?: number;
    /** Largest transfer, in bytes, the calling thread waits for (`completionSpinUs`). Default 64 KiB. */
    completionSpinBytes?: number;
  };
}

/** Options of {@link Agent.register}. */
export interface RegisterOptions {
  /** What remote peers may do. Default 'none' (local use only). */
  access?: Access;
  /** A name unique within the agent; peers find the region by it. Default `region-<id>`. */
  label?: string;
}

/** One contiguous byte range of a region. */
export interface Descriptor<R> {
  /** The region (a local {@link Region} or a peer's {@link RemoteRegion}). */
  readonly region: R;
  /** First byte, from the start of the region. */
  readonly offset: number;
  /** Number of bytes (> 0). */
  readonly length: number;
}

/**
 * Descriptors as columns (the fast path for thousands of them): descriptor `i` covers
 * `regions[region[i]]` from `offset[i]` for `length[i]` bytes. `count` defaults to `region.length`.
 */
export interface DescriptorColumns<R> {
  readonly regions: readonly R[];
  readonly region: Uint32Array;
  readonly offset: Float64Array;
  readonly length: Float64Array;
  readonly count?: number;
}

/** A descriptor list: an array of {@link Descriptor}s, or columns. */
export type DescriptorInput<R> = readonly Descriptor<R>[] | DescriptorColumns<R>;

/** Options of a READ or WRITE. */
export interface TransferOptions {
  /**
   * A notification delivered to the remote agent only after every byte of this transfer is in
   * place (WRITE: in the remote memory; READ: in local memory). At most 1 MiB.
   */
  notify?: string | Uint8Array;
  /** Deadline in milliseconds (default: the agent's `defaultTimeoutMs`). */
  timeoutMs?: number;
  /** Cancels the transfer when aborted. */
  signal?: AbortSignal;
  /** Merge descriptors that are contiguous on both sides (default true). */
  coalesce?: boolean;
}

/** Telemetry of a completed transfer. Times are milliseconds on the monotonic clock. */
export interface TransferStats {
  readonly op: TransferOp;
  /** Bytes moved. */
  readonly bytes: number;
  /** Descriptors as given. */
  readonly descriptors: number;
  /** Descriptors posted after coalescing. */
  readonly postedDescriptors: number;
  /** When the call to read()/write()/post() began. */
  readonly startedAt: number;
  /** When the engine had handed the last operation to the transport. */
  readonly postedAt: number;
  /** When the transfer completed (all bytes in place, notification sent). */
  readonly completedAt: number;
  /** JavaScript-side validation and marshalling time. */
  readonly prepMs: number;
  /**
   * From the end of preparation until the last operation was posted; for a transfer that was
   * complete when `read()`/`write()` returned (copied by the calling thread, or waited for:
   * `tuning.completionSpinUs`), until it completed.
   */
  readonly postMs: number;
  /** From the last post until completion (0 for a transfer complete when the call returned). */
  readonly completionMs: number;
  /** From start to completion. */
  readonly durationMs: number;
  /** Throughput in GB/s (10^9 bytes per second) over `durationMs`. */
  readonly gbps: number;
  /** How the bytes travelled. */
  readonly transport: TransportCategory;
}

/** The state of a {@link Transfer}. */
export type TransferStatus = 'pending' | 'done' | 'failed' | 'cancelled';

/** A notification received from a peer. */
export interface Notification {
  /** The sending agent's name. */
  readonly from: string;
  /** The message bytes (a Buffer: `message.toString()` decodes UTF-8). */
  readonly message: Buffer;
}

/** Options of {@link Agent.connect}. */
export interface ConnectOptions {
  /** Handshake deadline (default 10 000 ms). */
  timeoutMs?: number;
  /** Cancels the connection attempt. */
  signal?: AbortSignal;
}
