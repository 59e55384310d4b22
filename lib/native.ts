/**
 * The typed face of the native addon (native/*.cc), and its loader.
 *
 * The addon is found by node-gyp-build: `build/Release/kvwire.node` when it was built here, else a
 * prebuild in `prebuilds/<platform>-<arch>/`. When neither loads, {@link loadNative} returns
 * `undefined` and {@link nativeLoadError} says why: kvwire then offers the loopback engine only,
 * and `capabilities()` reports the reason.
 *
 * Everything here is internal: the public API is in `lib/transport`.
 *
 * @packageDocumentation
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

/**
 * Options the native engine understands: exactly the keys of `KVWIRE_AGENT_OPTIONS` in
 * native/agent.h (the addon refuses any other; test/transport/native-contract.test.ts compares
 * {@link NATIVE_AGENT_OPTION_KEYS} with the addon's list).
 */
export interface NativeAgentOptions {
  /** Agent name (UCX context name, and what peers see as `from`). */
  name: string;
  /** UCX_TLS value for this agent; empty: the environment's UCX_TLS, else UCX's default. */
  transports?: string;
  /** Data path: 'am' never uses one-sided access, even where the target grants it. */
  protocol?: 'auto' | 'rma' | 'am';
  /** Grant one-sided access to trusted same-host peers (default true). */
  directAccess?: boolean;
  /** Keys derived from the shared secrets (lib/transport/auth.ts), the signing key first. */
  auth?: { keys: { id: Uint8Array; key: Uint8Array }[] };
  /** Busy-poll this long (µs) after the last activity before sleeping. */
  spinUs?: number;
  /** Active-message payloads at least this large use rendezvous (received in place). */
  rndvThreshold?: number;
  /** Active-message operations in flight per transfer. */
  windowOps?: number;
  /** One-sided transfers (mapped shared memory, cross-memory attach) up to this many bytes are copied by the calling thread. */
  inlineBytes?: number;
  /** The posting thread waits up to this long (µs) for a small queued transfer to complete (0: never). */
  completionSpinUs?: number;
  /** Largest transfer (bytes) the posting thread waits for (completionSpinUs). */
  completionSpinBytes?: number;
  /** Active messages: runs of descriptors shorter than this travel packed (0: each alone). */
  batchBelow?: number;
  /** Largest packed message, in bytes. */
  batchBytes?: number;
  /** CUDA path and staging pipeline. */
  cuda?: { path?: string; stagingChunkBytes?: number; stagingBuffers?: number };
}

/** Every key of {@link NativeAgentOptions}, in the order of native/agent.h's list. */
export const NATIVE_AGENT_OPTION_KEYS = [
  'name',
  'transports',
  'protocol',
  'directAccess',
  'auth',
  'spinUs',
  'rndvThreshold',
  'windowOps',
  'inlineBytes',
  'completionSpinUs',
  'completionSpinBytes',
  'batchBelow',
  'batchBytes',
  'cuda',
] as const satisfies readonly (keyof NativeAgentOptions)[];

// Compile-time half of the parity check: a key added to NativeAgentOptions but not to the list
// above makes this line fail to compile.
const optionKeysComplete: Exclude<keyof NativeAgentOptions, (typeof NATIVE_AGENT_OPTION_KEYS)[number]> extends never
  ? true
  : never = true;
void optionKeysComplete;

/**
 * Numeric event kinds: the names and numbers of `KVWIRE_EVENT_KINDS` in native/engine/types.h
 * (the addon exports its list as `contract.eventKinds`; the parity test compares the two).
 */
export const NativeEventKind = Object.freeze({
  TransferDone: 0,
  Connected: 1,
  Notification: 2,
  PeerLost: 3,
  NotifyDone: 4,
  RegionRevoked: 5,
  Warning: 6,
  RegionReleased: 7,
  TransferQuiesced: 8,
  Handshaked: 9,
  Closed: 10,
} as const);

/** One of {@link NativeEventKind}'s numbers. */
export type NativeEventKind = (typeof NativeEventKind)[keyof typeof NativeEventKind];

/** What the engine learned about a connection (Connected on success, Handshaked). */
export interface NativeConnection {
  /** UCX's transport category: 'sm', 'tcp', 'rdma', 'self', 'cuda' or 'unknown'. */
  transport: string;
  /** The lanes UCX chose, e.g. 'sysv/memory+cma/memory'. */
  lanes: string;
  /** 'rma' when one-sided access was granted, else 'am'. */
  protocol: string;
  /** The CUDA path, when one applies ('ucx', 'ipc' or 'staging'). */
  cudaPath?: string;
  /** How the calling thread checks the peer lives before a cross-memory-attach copy ('beacon', 'pidfd'). */
  liveness?: string;
}

/** One event from the engine thread. */
export interface NativeEvent {
  kind: NativeEventKind;
  id: number;
  aux?: number;
  code?: string;
  text?: string;
  bytes?: Buffer;
  connection?: NativeConnection;
  startNs?: number;
  postedNs?: number;
  doneNs?: number;
}

/** The lists the native/TypeScript contract is made of, as the addon has them (native/agent.cc ContractObject). */
export interface NativeContract {
  /** Event kind name → number (KVWIRE_EVENT_KINDS). */
  eventKinds: Record<string, number>;
  /** Every error code the addon can report (KVWIRE_ERROR_CODES). */
  errorCodes: string[];
  /** Every option key the NativeAgent constructor accepts (KVWIRE_AGENT_OPTIONS). */
  agentOptions: string[];
}

/** A remote region as the native engine needs it. */
export interface NativeRemoteRegion {
  id: number;
  base: bigint;
  length: number;
  access: number;
  rkey: Uint8Array;
  /** Device memory only: the peer's device ordinal and how to reach it (lib/transport/device-key.ts). */
  device?: number;
  ipcHandle?: Uint8Array;
  ipcOffset?: number;
  busId?: string;
  stagingChunk?: number;
}

/** What `connect` needs to know about a peer (its regions come later, from its grant: `attach`). */
export interface NativePeerInfo {
  name: string;
  address: Uint8Array;
  pid: number;
  pidStart: number;
  hostId: string;
}

/** The native agent class (one UCX context, worker and engine thread). */
export declare class NativeAgent {
  constructor(options: NativeAgentOptions, onEvents: (events: NativeEvent[]) => void);
  /** UCX worker address bytes. */
  readonly address: Buffer;
  /** The UCX_TLS value in effect. */
  readonly transports: string;
  /** Registers memory in place; returns the packed rkey and the base address. */
  register(
    id: number,
    label: string,
    memory: ArrayBuffer | ArrayBufferView,
    access: number,
  ): { rkey: Buffer; base: bigint };
  /** Validates device memory with the driver, exports its IPC handle and registers it. */
  registerDevice(
    id: number,
    label: string,
    pointer: bigint,
    length: number,
    device: number,
    access: number,
  ): {
    base: bigint;
    rkey: Buffer;
    allocBase: bigint;
    allocSize: number;
    ipcHandle?: Buffer;
    ipcError?: string;
    busId?: string;
    stagingChunk: number;
  };
  /** Allocates memory with UCX (shared memory where possible) and registers it. */
  allocate(
    id: number,
    label: string,
    length: number,
    access: number,
  ): { rkey: Buffer; base: bigint; buffer: ArrayBuffer };
  /** 0: done; N > 0: N local transfers still use it; -1: unknown id. */
  deregister(id: number): number;
  /** Starts the handshake; throws (BAD_METADATA) when the worker address fails its check. */
  connect(peerId: number, info: NativePeerInfo, timeoutMs: number): void;
  /** After the Handshaked event: the peer's regions, checked against its grant. */
  attach(peerId: number, regions: NativeRemoteRegion[]): void;
  /** The keys a device region is granted with: to trusted peers, and to any other. */
  setGrantKeys(id: number, trusted: Uint8Array, restricted: Uint8Array): void;
  disconnect(peerId: number): void;
  /**
   * Posts a transfer: 0 when queued (its completion comes as an event), else the monotonic clock in
   * ns (as `process.hrtime.bigint()`) when it completed on this thread (an inline copy, or a small
   * completion this thread waited for). Throws (with `code`) if a descriptor fails a check.
   * `alone` (default true): no other transfer of the agent is pending, so this thread may wait.
   */
  post(
    id: number,
    op: 0 | 1,
    peerId: number,
    descs: Float64Array,
    notify: Uint8Array | null,
    timeoutMs: number,
    alone?: boolean,
  ): number;
  cancel(id: number, code?: string): void;
  notify(peerId: number, message: Uint8Array, token: number): void;
  /**
   * Starts closing and returns at once: the engine thread fails what is in flight, says goodbye
   * and frees UCX. True: `Closed` will be its last event (the failed transfers and released
   * regions come before it); false: it was closed already and no event follows. Every other
   * call throws `ERR_KVWIRE_CLOSED` from here on.
   */
  close(): boolean;
  ref(): void;
  unref(): void;
}

/** What the addon reports about UCX and CUDA. */
export interface NativeCapabilities {
  ucx: {
    built: boolean;
    version?: string;
    reason?: string;
    transports: { name: string; device: string; type: string }[];
    tlsEnv?: string;
  };
  cuda: { headers: boolean; driver: boolean; devices: number; driverVersion?: number; reason?: string };
}

/** A CUDA device as the driver describes it. */
export interface NativeCudaDevice {
  ordinal: number;
  name: string;
  pciBusId: string;
  totalBytes: number;
}

/** The addon's `cuda` object (native/cuda/cuda_api.cc). Every function throws ERR_KVWIRE_UNSUPPORTED without a driver. */
export interface NativeCuda {
  devices(): NativeCudaDevice[];
  /** cuMemAlloc on `device`; returns the device address. */
  alloc(device: number, bytes: number): bigint;
  /** cuMemFree of a pointer `alloc` returned (any other pointer is refused). */
  free(pointer: bigint): void;
  /** Synchronous copy: direction 0 host to device, 1 device to host; the range is validated first. */
  copy(direction: 0 | 1, device: number, pointer: bigint, bytes: Uint8Array): void;
  /** Synchronous cuMemsetD8 of a validated range. */
  memset(device: number, pointer: bigint, value: number, length: number): void;
  /** Copy bandwidth measured with CUDA events on a worker thread. */
  baseline(
    kind: 'dtod' | 'htod' | 'dtoh',
    device: number,
    bytes: number,
    iterations: number,
  ): Promise<{ seconds: number; gbps: number }>;
}

/** The addon's exports. */
export interface NativeAddon {
  NativeAgent: typeof NativeAgent;
  capabilities(): NativeCapabilities;
  processIdentity(): { pid: number; pidStart: number; hostId: string };
  memcpyBandwidth(bytes: number, iterations: number): number;
  monotonicNs(): number;
  /** Where the first byte of `memory` lies in its page (the bench registers page-aligned memory). */
  pageOffset(memory: ArrayBuffer | ArrayBufferView): number;
  cuda: NativeCuda;
  hasUcx: boolean;
  /**
   * Whether UCX installed its memory hooks (patches to libc's mmap, munmap, brk, ...) when it
   * loaded: the process environment had no `UCX_MEM_EVENTS` then (native/engine/ucx_memory_hooks.h).
   */
  ucxMemoryHooks: boolean;
  /** The contract lists as the addon has them (compared with this file by the parity test). */
  contract: NativeContract;
}

let cached: NativeAddon | null | undefined;
let loadError: string | undefined;
let loadedFrom: string | undefined;

/** The package root (where binding.gyp and build/ or prebuilds/ live). */
export function packageRoot(): string {
  // dist/lib/native.js or lib/native.ts: walk up to the folder holding package.json.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  return dirname(dirname(fileURLToPath(import.meta.url)));
}

/**
 * UCX settings kvwire applies before UCX loads, unless the environment sets them already.
 *
 * `UCX_MEM_EVENTS=no`: UCX's memory hooks patch libc's mmap/munmap/brk/sbrk at run time ("bistro");
 * inside Node, whose V8 threads map and unmap memory concurrently, that crashes the process now
 * and then (at exit about once in a hundred runs with nothing but the library loaded; V8's
 * concurrent marker faulting on malloc memory given back under it, or glibc aborting with "break
 * adjusted to free malloc space", in processes whose first agent was a worker thread's). kvwire does
 * not need the hooks: it registers every region explicitly (ucp_mem_map) and passes the memory
 * handle with each operation, so UCX's registration cache, the only user of the hooks, stays out of
 * the data path.
 *
 * `UCX_LOG_FILE=stderr`: UCX logs to stdout by default, which corrupts the output of programs that
 * print JSON (e.g. `kvwire bench --json`) when UCX warns about a peer that died.
 *
 * UCX reads them from the process environment when the addon loads. Only the main thread's
 * `process.env` is that environment (a worker's is its own copy): kvwire sets them when the main
 * thread imports it, so that a worker loading the addon later finds them.
 */
export const UCX_ENV_DEFAULTS: Readonly<Record<string, string>> = { UCX_MEM_EVENTS: 'no', UCX_LOG_FILE: 'stderr' };

/** Sets the unset {@link UCX_ENV_DEFAULTS} in this thread's `process.env`; the names it set. */
function applyUcxEnvDefaults(): string[] {
  const set: string[] = [];
  for (const [k, v] of Object.entries(UCX_ENV_DEFAULTS)) {
    if (process.env[k] === undefined) {
      process.env[k] = v;
      set.push(k);
    }
  }
  return set;
}

if (isMainThread) applyUcxEnvDefaults();

/** The warning a process gets when UCX loaded with its memory hooks because no thread could say no. */
export const UCX_MEMORY_HOOKS_WARNING =
  'kvwire: UCX was loaded first by a worker thread, where the process environment cannot be set, ' +
  "found no UCX_MEM_EVENTS and installed its memory hooks (patches to libc's mmap, munmap and brk), " +
  'which can crash Node. Set UCX_MEM_EVENTS=no in the environment, or import kvwire on the main ' +
  'thread before starting workers.';

/** Loads the addon once; `undefined` when it cannot be loaded (see {@link nativeLoadError}). */
export function loadNative(): NativeAddon | undefined {
  if (cached !== undefined) return cached ?? undefined;
  // On the main thread (or a worker sharing its environment) this reaches UCX; in other workers
  // only this copy, and the addon reports what UCX did.
  const defaulted = applyUcxEnvDefaults();
  const require = createRequire(import.meta.url);
  try {
    const nodeGypBuild = require('node-gyp-build') as ((dir: string) => unknown) & { path?: (dir: string) => string };
    const root = packageRoot();
    loadedFrom = nodeGypBuild.path?.(root);
    cached = nodeGypBuild(root) as NativeAddon;
  } catch (e) {
    cached = null;
    loadError =
      `the native addon could not be loaded (${(e as Error).message.split('\n')[0]}); ` +
      'build it with `npm rebuild kvwire` (needs g++, and libucx-dev for the UCX engine)';
  }
  // Hooks the environment asked for (UCX_MEM_EVENTS set by the user) are no surprise.
  if (cached?.ucxMemoryHooks === true && defaulted.includes('UCX_MEM_EVENTS')) {
    process.emitWarning(UCX_MEMORY_HOOKS_WARNING, { code: 'KVWIRE_UCX_MEMORY_HOOKS' });
  }
  return cached ?? undefined;
}

/** Why the addon did not load, when it did not. */
export function nativeLoadError(): string | undefined {
  loadNative();
  return loadError;
}

/** The file the addon was loaded from, when it was. */
export function nativePath(): string | undefined {
  loadNative();
  return loadedFrom;
}
