/**
 * The native UCX engine behind the {@link Engine} interface: a thin adapter over lib/native.ts.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { loadNative, nativeLoadError, NativeEventKind } from '../native.js';
import type { NativeAgent, NativeEvent } from '../native.js';
import type { Engine, EngineConnection, EngineListener } from './engine.js';
import { fromNativeError } from './native-errors.js';
import { accessBits } from './metadata.js';
import type { AgentDescription } from './metadata.js';
import type { CudaMemory } from './cuda.js';
import { decodeDeviceKey, encodeDeviceKey } from './device-key.js';
import type { CheckedAgentOptions } from './agent-options.js';
import type { Access, CudaPath, HostMemory, TransportCategory } from './types.js';

const CATEGORIES = new Set<TransportCategory>(['sm', 'tcp', 'rdma', 'self', 'cuda', 'unknown']);
const CUDA_PATHS = new Set<CudaPath>(['ucx', 'ipc', 'staging']);

export { fromNativeError };

/** Why the UCX engine is unavailable here, or undefined when it is available. */
export function ucxUnavailableReason(): string | undefined {
  const native = loadNative();
  if (native === undefined) return nativeLoadError();
  if (!native.hasUcx) {
    return 'this build of kvwire has no UCX (libucx-dev was not found when it was built); install libucx-dev and run `npm rebuild kvwire`';
  }
  return undefined;
}

/** The UCX engine. */
export class NativeEngine implements Engine {
  readonly kind = 'ucx' as const;
  readonly transports: string;
  readonly address: Uint8Array;
  readonly #agent: NativeAgent;
  readonly #listener: EngineListener;
  readonly #deviceKeys = new Map<number, { trusted: Uint8Array; restricted: Uint8Array }>();
  /** close()'s promise, and what resolves it (the engine's `Closed` event). */
  #closing: Promise<void> | undefined;
  #resolveClosing: (() => void) | undefined;

  /** @internal The device key a region is granted with, to a trusted peer or to any other (tests). */
  deviceGrantKey(id: number, trusted: boolean): Uint8Array | undefined {
    const k = this.#deviceKeys.get(id);
    return trusted ? k?.trusted : k?.restricted;
  }

  constructor(name: string, listener: EngineListener, opts: CheckedAgentOptions) {
    const reason = ucxUnavailableReason();
    const native = loadNative();
    if (reason !== undefined || native === undefined) {
      throw new KvwireError(
        ErrorCode.UNSUPPORTED,
        `the UCX engine is unavailable: ${reason}; use engine: 'loopback' for in-process tests`,
      );
    }
    this.#listener = listener;
    try {
      this.#agent = new native.NativeAgent(
        {
          name,
          transports: opts.transports ?? '',
          protocol: opts.protocol,
          directAccess: opts.directAccess,
          ...(opts.authKeys.length > 0 ? { auth: { keys: opts.authKeys.map((k) => ({ id: k.id, key: k.key })) } } : {}),
          ...(opts.tuning?.spinUs !== undefined ? { spinUs: opts.tuning.spinUs } : {}),
          ...(opts.tuning?.rndvThreshold !== undefined ? { rndvThreshold: opts.tuning.rndvThreshold } : {}),
          ...(opts.tuning?.windowOps !== undefined ? { windowOps: opts.tuning.windowOps } : {}),
          ...(opts.tuning?.inlineBytes !== undefined ? { inlineBytes: opts.tuning.inlineBytes } : {}),
          ...(opts.tuning?.completionSpinUs !== undefined ? { completionSpinUs: opts.tuning.completionSpinUs } : {}),
          ...(opts.tuning?.completionSpinBytes !== undefined
            ? { completionSpinBytes: opts.tuning.completionSpinBytes }
            : {}),
          ...(opts.tuning?.batchBelow !== undefined ? { batchBelow: opts.tuning.batchBelow } : {}),
          ...(opts.tuning?.batchBytes !== undefined ? { batchBytes: opts.tuning.batchBytes } : {}),
          ...(opts.cuda !== undefined ? { cuda: { ...opts.cuda } } : {}),
        },
        (events) => this.#dispatch(events),
      );
    } catch (e) {
      throw fromNativeError(e);
    }
    this.address = new Uint8Array(this.#agent.address);
    this.transports = this.#agent.transports;
  }

  #dispatch(events: NativeEvent[]): void {
    const l = this.#listener;
    for (const e of events) {
      const error = e.code !== undefined ? KvwireError.fromCode(e.code, e.text ?? e.code) : undefined;
      switch (e.kind) {
        case NativeEventKind.TransferDone:
          l.transferDone(
            e.id,
            error,
            { startNs: e.startNs ?? 0, postedNs: e.postedNs ?? 0, doneNs: e.doneNs ?? 0 },
            e.aux ?? 0,
          );
          break;
        case NativeEventKind.TransferQuiesced:
          l.transferQuiesced(e.id);
          break;
        case NativeEventKind.Handshaked:
          l.handshaked(e.id, e.bytes ?? Buffer.alloc(0), e.aux === 1);
          break;
        case NativeEventKind.Connected: {
          let conn: EngineConnection | undefined;
          if (error === undefined) {
            const c = e.connection;
            conn = {
              transport: CATEGORIES.has(c?.transport as TransportCategory)
                ? (c?.transport as TransportCategory)
                : 'unknown',
              lanes: c?.lanes ?? '',
              protocol: c?.protocol === 'rma' ? 'rma' : 'am',
              ...(CUDA_PATHS.has(c?.cudaPath as CudaPath) ? { cudaPath: c?.cudaPath as CudaPath } : {}),
              ...(c?.liveness === 'beacon' || c?.liveness === 'pidfd' ? { liveness: c.liveness } : {}),
            };
          }
          l.connected(e.id, error, conn);
          break;
        }
        case NativeEventKind.Notification:
          l.notification(e.text ?? '', e.bytes ?? Buffer.alloc(0));
          break;
        case NativeEventKind.PeerLost:
          l.peerLost(e.id, error ?? new KvwireError(ErrorCode.PEER_LOST, e.text ?? 'peer lost'));
          break;
        case NativeEventKind.NotifyDone:
          l.notifyDone(e.id, error);
          break;
        case NativeEventKind.RegionRevoked:
          l.regionRevoked(e.id, e.aux ?? 0);
          break;
        case NativeEventKind.RegionReleased:
          l.regionReleased(e.id);
          break;
        case NativeEventKind.Warning:
          l.warning(e.text ?? '');
          break;
        case NativeEventKind.Closed:
          this.#resolveClosing?.(); // after the events before it in this batch: they were dispatched above
          break;
      }
    }
  }

  register(id: number, label: string, memory: HostMemory, access: Access): void {
    try {
      this.#agent.register(id, label, memory, accessBits(access));
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  registerDevice(id: number, label: string, memory: CudaMemory, access: Access): { ipcError?: string } {
    try {
      const r = this.#agent.registerDevice(id, label, memory.pointer, memory.length, memory.device, accessBits(access));
      // What the engine grants: to a trusted same-host peer the key with the allocation's IPC
      // handle (it maps the memory and copies itself), to anyone else the key without it (it
      // reaches the memory through this agent's staging, checked here).
      const common = {
        device: memory.device,
        stagingChunk: r.stagingChunk,
        busId: r.busId ?? '',
        rkey: new Uint8Array(0),
      };
      const trusted = encodeDeviceKey({
        ...common,
        ...(r.ipcHandle !== undefined ? { ipcHandle: new Uint8Array(r.ipcHandle) } : {}),
        ipcOffset: Number(memory.pointer - r.allocBase),
      });
      const restricted = encodeDeviceKey({ ...common, ipcOffset: 0 });
      this.#agent.setGrantKeys(id, trusted, restricted);
      this.#deviceKeys.set(id, { trusted, restricted });
      return r.ipcError !== undefined ? { ipcError: r.ipcError } : {};
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  allocate(id: number, label: string, length: number, access: Access): { memory: ArrayBuffer } {
    try {
      return { memory: this.#agent.allocate(id, label, length, accessBits(access)).buffer };
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  deregister(id: number): number {
    const r = this.#agent.deregister(id);
    if (r === 0) this.#deviceKeys.delete(id);
    return r;
  }

  connect(peerId: number, d: AgentDescription, timeoutMs: number): void {
    try {
      this.#agent.connect(
        peerId,
        { name: d.name, address: d.address, pid: d.pid, pidStart: d.pidStart, hostId: d.hostId },
        timeoutMs,
      );
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  attach(peerId: number, d: AgentDescription): void {
    const empty = new Uint8Array(0);
    this.#agent.attach(
      peerId,
      d.regions.map((r) => {
        const key = r.key ?? empty;
        const common = { id: r.id, base: r.base ?? 0n, length: r.length, access: accessBits(r.access) };
        if (r.memory !== 'cuda') return { ...common, rkey: key };
        // Revoked since the metadata was taken: named, never reachable.
        if (key.length === 0) return { ...common, rkey: empty, device: 0, stagingChunk: 0 };
        const k = decodeDeviceKey(key);
        return {
          ...common,
          rkey: empty,
          device: k.device,
          ipcOffset: k.ipcOffset,
          busId: k.busId,
          stagingChunk: k.stagingChunk,
          ...(k.ipcHandle !== undefined ? { ipcHandle: k.ipcHandle } : {}),
        };
      }),
    );
  }
  disconnect(peerId: number): void {
    this.#agent.disconnect(peerId);
  }

  post(
    id: number,
    op: 0 | 1,
    peerId: number,
    descs: Float64Array,
    notify: Uint8Array | null,
    timeoutMs: number,
    alone: boolean,
  ): number {
    try {
      return this.#agent.post(id, op, peerId, descs, notify, timeoutMs, alone);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  cancel(id: number, code: string): void {
    this.#agent.cancel(id, code);
  }

  notify(peerId: number, message: Uint8Array, token: number): void {
    try {
      this.#agent.notify(peerId, message, token);
    } catch (e) {
      throw fromNativeError(e);
    }
  }

  ref(): void {
    this.#agent.ref();
  }

  unref(): void {
    this.#agent.unref();
  }

  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closing = new Promise<void>((resolve) => {
      this.#resolveClosing = resolve;
    });
    // Returns at once: the engine thread shuts down and reports `Closed` (the event loop runs
    // meanwhile, delivering the transfers it fails). Where no event will follow, resolve now.
    if (!this.#agent.close()) this.#resolveClosing?.();
    return this.#closing;
  }
}
