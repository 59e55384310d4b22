/**
 * The loopback engine: the transport contract in pure TypeScript, in process, with fault
 * injection. It is the CI mock for everything above the transport (the P/D coordinators' unit
 * tests), not a data path: bytes are copied with `Uint8Array.set`.
 *
 * It behaves like the native engine at the contract: the agent validates the same way, and the
 * "target side" here re-checks what a peer asks of it (deregistered region, access, bounds) and
 * fails the transfer asynchronously, as a real target's refusal would arrive.
 *
 * Loopback agents reach only loopback agents of the same process (and the same worker thread).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import type { ErrorCodeString } from '../errors.js';
import { nowNs } from '../util/clock.js';
import type { Engine, EngineListener } from './engine.js';
import { STRIDE } from './descriptors.js';
import { encodeGrant } from './grant.js';
import { accessBits } from './metadata.js';
import type { AgentDescription } from './metadata.js';
import type { Access, HostMemory } from './types.js';
import { formatCount } from '../util/format.js';

/** Faults the loopback engine injects into the transfers and notifications of its agent. */
export interface LoopbackFaultSpec {
  /** Delay every transfer this agent initiates (ms). */
  delayMs?: number;
  /** Fail transfers with `code` (default ERR_KVWIRE_INJECTED): the next `count`, or all when omitted. */
  fail?: { code?: ErrorCodeString; count?: number };
  /** Drop the next N notifications this agent sends (attached to transfers or alone). */
  dropNotifications?: number;
  /** Flip one byte of the destination in the next N transfers (the bytes land corrupted). */
  corrupt?: number;
  /** Transfers never complete (they reach their deadline). */
  stall?: boolean;
}

/** Controls fault injection of a loopback agent (`agent.faults`). */
export interface LoopbackFaults {
  /** Replaces the injected faults. */
  set(spec: LoopbackFaultSpec): void;
  /** Removes every injected fault. */
  clear(): void;
  /** The current faults (a copy). */
  readonly current: LoopbackFaultSpec;
  /**
   * Simulates the death of this agent's process: every agent connected to it sees it lost
   * (`ERR_KVWIRE_PEER_LOST`, on the peer and on transfers in flight or posted later), its own
   * transfers in flight fail, and it answers nothing more.
   */
  kill(): void;
}

const registry = new Map<string, LoopbackEngine>(); // per module instance: per environment

interface LocalRegionEntry {
  bytes: Uint8Array;
  access: Access;
  label: string;
  users: number;
}

interface PendingTransfer {
  id: number;
  peerId: number;
  timers: NodeJS.Timeout[];
  regions: number[];
}

function viewOf(memory: HostMemory): Uint8Array {
  if (memory instanceof ArrayBuffer) return new Uint8Array(memory);
  if (ArrayBuffer.isView(memory)) return new Uint8Array(memory.buffer, memory.byteOffset, memory.byteLength);
  throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'memory must be an ArrayBuffer or an ArrayBufferView');
}

/** The in-process engine. */
export class LoopbackEngine implements Engine {
  readonly kind = 'loopback' as const;
  readonly transports = 'loopback';
  readonly address: Uint8Array;
  readonly name: string;
  readonly #key: string;
  readonly #listener: EngineListener;
  readonly #regions = new Map<number, LocalRegionEntry>();
  readonly #peers = new Map<number, LoopbackEngine>(); // outbound: peer id -> target
  readonly #inbound = new Map<LoopbackEngine, Set<number>>(); // initiators -> their peer ids for us
  readonly #pending = new Map<number, PendingTransfer>();
  #faults: LoopbackFaultSpec = {};
  #highestRegion = 0;
  #dead = false;
  #closed = false;

  constructor(name: string, listener: EngineListener) {
    this.name = name;
    this.#listener = listener;
    this.address = new Uint8Array(randomBytes(16));
    this.#key = Buffer.from(this.address).toString('hex');
    registry.set(this.#key, this);
  }

  /** The fault-injection controller for this engine. */
  readonly faults: LoopbackFaults = (() => {
    const engine = this; // eslint-disable-line @typescript-eslint/no-this-alias
    return {
      set(spec: LoopbackFaultSpec): void {
        engine.#faults = { ...spec, ...(spec.fail ? { fail: { ...spec.fail } } : {}) };
      },
      clear(): void {
        engine.#faults = {};
      },
      get current(): LoopbackFaultSpec {
        return { ...engine.#faults };
      },
      kill(): void {
        engine.#kill();
      },
    };
  })();

  register(id: number, label: string, memory: HostMemory, access: Access): void {
    this.#assertUsable();
    const bytes = viewOf(memory);
    this.#regions.set(id, { bytes, access, label, users: 0 });
    this.#highestRegion = Math.max(this.#highestRegion, id);
  }

  registerDevice(): { ipcError?: string } {
    throw new KvwireError(
      ErrorCode.UNSUPPORTED,
      "the loopback engine moves host memory only; register CUDA device memory with an agent of the UCX engine (engine: 'ucx')",
    );
  }

  allocate(id: number, label: string, length: number, access: Access): { memory: ArrayBuffer } {
    const memory = new ArrayBuffer(length);
    this.register(id, label, memory, access);
    return { memory };
  }

  deregister(id: number): number {
    const r = this.#regions.get(id);
    if (r === undefined) return -1;
    if (r.users > 0) return r.users;
    this.#regions.delete(id);
    if (r.access !== 'none') {
      for (const [initiator, peerIds] of this.#inbound) {
        for (const pid of peerIds) setImmediate(() => initiator.#listener.regionRevoked(pid, id));
      }
    }
    setImmediate(() => this.#listener.regionReleased(id));
    return 0;
  }

  // No deadline to enforce: a loopback connect completes or fails on the next turn of the event loop.
  connect(peerId: number, d: AgentDescription, _timeoutMs: number): void {
    const target = registry.get(Buffer.from(d.address).toString('hex'));
    setImmediate(() => {
      if (this.#closed) return;
      if (target === undefined || target.#dead || target.#closed) {
        this.#listener.connected(
          peerId,
          new KvwireError(
            ErrorCode.PEER_UNREACHABLE,
            `no live loopback agent '${d.name}' in this process; loopback agents reach only agents of the same process and thread (use the UCX engine across processes)`,
          ),
        );
        return;
      }
      this.#peers.set(peerId, target);
      let ids = target.#inbound.get(this);
      if (ids === undefined) target.#inbound.set(this, (ids = new Set()));
      ids.add(peerId);
      // As a native target does: its own region table, not the metadata's (no keys: in process).
      const granted = [...target.#regions].map(([rid, r]) => ({
        id: rid,
        label: r.access === 'none' ? '' : r.label,
        access: accessBits(r.access),
        memory: 'host' as const,
        mappable: false,
        length: r.access === 'none' ? 0 : r.bytes.byteLength,
        base: 0n,
        key: new Uint8Array(0),
      }));
      this.#listener.handshaked(peerId, encodeGrant(target.name, false, target.#highestRegion, granted), false);
    });
  }

  attach(peerId: number): void {
    setImmediate(() => {
      if (this.#closed || !this.#peers.has(peerId)) return;
      this.#listener.connected(peerId, undefined, { transport: 'loopback', lanes: 'in-process', protocol: 'loopback' });
    });
  }

  disconnect(peerId: number): void {
    const target = this.#peers.get(peerId);
    this.#peers.delete(peerId);
    if (target !== undefined) target.#inbound.get(this)?.delete(peerId);
    for (const t of [...this.#pending.values()]) {
      if (t.peerId === peerId)
        this.#finish(
          t,
          new KvwireError(ErrorCode.CLOSED, 'the peer was disconnected while this transfer was in flight'),
        );
    }
  }

  post(
    id: number,
    op: 0 | 1,
    peerId: number,
    flat: Float64Array,
    notify: Uint8Array | null,
    timeoutMs: number,
    _alone: boolean,
  ): number {
    this.#assertUsable();
    const descs = flat.slice(); // the caller reuses its array once post() returns
    const target = this.#peers.get(peerId);
    if (target === undefined) throw new KvwireError(ErrorCode.CLOSED, 'the peer is disconnected');
    if (target.#dead || target.#closed) throw new KvwireError(ErrorCode.PEER_LOST, `peer '${target.name}' was lost`);
    const startNs = nowNs();
    // Local side, checked again as the native engine does.
    const regionIds = new Set<number>();
    for (let i = 0; i < descs.length; i += STRIDE) {
      const r = this.#regions.get(descs[i]!);
      if (r === undefined)
        throw new KvwireError(ErrorCode.DEREGISTERED, `descriptor ${i / STRIDE}: local region was deregistered`);
      if (descs[i + 1]! + descs[i + 4]! > r.bytes.byteLength)
        throw new KvwireError(ErrorCode.OUT_OF_BOUNDS, `descriptor ${i / STRIDE} is out of bounds`);
      regionIds.add(descs[i]!);
    }
    const t: PendingTransfer = { id, peerId, timers: [], regions: [...regionIds] };
    for (const rid of t.regions) this.#regions.get(rid)!.users++;
    this.#pending.set(id, t);
    const f = this.#faults;
    t.timers.push(
      setTimeout(() => {
        this.#finish(
          t,
          new KvwireError(
            ErrorCode.TIMEOUT,
            `transfer ${id} (${descs.length / STRIDE} descriptors) did not complete within ${timeoutMs} ms; the peer may be overloaded or gone: raise timeoutMs or check the peer`,
          ),
        );
      }, timeoutMs),
    );
    if (f.stall) return 0;
    const failNow = f.fail !== undefined && (f.fail.count === undefined || f.fail.count > 0);
    if (failNow && f.fail!.count !== undefined) f.fail!.count--;
    const corrupt = (f.corrupt ?? 0) > 0;
    if (corrupt) f.corrupt!--;
    const drop = notify !== null && (f.dropNotifications ?? 0) > 0;
    if (drop) f.dropNotifications!--;
    const run = () => {
      if (!this.#pending.has(id)) return;
      if (failNow) {
        this.#finish(
          t,
          new KvwireError(f.fail!.code ?? ErrorCode.INJECTED, `transfer ${id} failed by fault injection`),
        );
        return;
      }
      if (target.#dead || target.#closed) {
        this.#finish(t, new KvwireError(ErrorCode.PEER_LOST, `peer '${target.name}' was lost`));
        return;
      }
      const refusal = target.#serve(op, descs, this.#regions, corrupt);
      if (refusal !== undefined) {
        this.#finish(t, refusal);
        return;
      }
      const postedNs = nowNs();
      if (notify !== null && !drop) {
        const message = Buffer.from(notify);
        target.#listener.notification(this.name, message);
      }
      this.#finish(t, undefined, { startNs, postedNs, doneNs: nowNs() });
    };
    if (f.delayMs !== undefined && f.delayMs > 0) t.timers.push(setTimeout(run, f.delayMs));
    else setImmediate(run);
    return 0;
  }

  /** Target side: checks and moves the bytes of one transfer; returns why it refused, if it did. */
  #serve(
    op: 0 | 1,
    descs: Float64Array,
    initiatorRegions: Map<number, LocalRegionEntry>,
    corrupt: boolean,
  ): KvwireError | undefined {
    const need: Access = op === 1 ? 'write' : 'read';
    for (let i = 0; i < descs.length; i += STRIDE) {
      const r = this.#regions.get(descs[i + 2]!);
      const index = i / STRIDE;
      if (r === undefined) {
        return new KvwireError(
          ErrorCode.DEREGISTERED,
          `the target refused descriptor ${index}: region ${descs[i + 2]} was deregistered; fetch fresh metadata`,
          { index },
        );
      }
      if (r.access !== 'readwrite' && r.access !== need) {
        return new KvwireError(
          ErrorCode.ACCESS_DENIED,
          `the target refused descriptor ${index}: region '${r.label}' allows ${r.access} access, not ${need}`,
          { index },
        );
      }
      if (descs[i + 3]! + descs[i + 4]! > r.bytes.byteLength) {
        return new KvwireError(
          ErrorCode.OUT_OF_BOUNDS,
          `the target refused descriptor ${index}: it reaches byte ${formatCount(descs[i + 3]! + descs[i + 4]!)} of region '${r.label}' which has ${formatCount(r.bytes.byteLength)} bytes`,
          { index },
        );
      }
    }
    for (let i = 0; i < descs.length; i += STRIDE) {
      const local = initiatorRegions.get(descs[i]!)!.bytes;
      const remote = this.#regions.get(descs[i + 2]!)!.bytes;
      const lo = descs[i + 1]!;
      const ro = descs[i + 3]!;
      const len = descs[i + 4]!;
      if (op === 1) remote.set(local.subarray(lo, lo + len), ro);
      else local.set(remote.subarray(ro, ro + len), lo);
    }
    if (corrupt) {
      const dst = op === 1 ? this.#regions.get(descs[2]!)!.bytes : initiatorRegions.get(descs[0]!)!.bytes;
      const at = op === 1 ? descs[3]! : descs[1]!;
      dst[at] = dst[at]! ^ 0xff;
    }
    return undefined;
  }

  #finish(
    t: PendingTransfer,
    error: KvwireError | undefined,
    timing?: { startNs: number; postedNs: number; doneNs: number },
  ): void {
    if (!this.#pending.delete(t.id)) return;
    for (const timer of t.timers) clearTimeout(timer);
    for (const rid of t.regions) {
      const r = this.#regions.get(rid);
      if (r !== undefined) r.users--;
    }
    const now = nowNs();
    // A loopback transfer copies in one step: once it is done, nothing of it is in flight.
    this.#listener.transferDone(t.id, error, timing ?? { startNs: now, postedNs: now, doneNs: now }, 0);
  }

  cancel(id: number, code: string): void {
    const t = this.#pending.get(id);
    if (t !== undefined) this.#finish(t, KvwireError.fromCode(code, 'the transfer was cancelled'));
  }

  notify(peerId: number, message: Uint8Array, token: number): void {
    this.#assertUsable();
    const target = this.#peers.get(peerId);
    const f = this.#faults;
    const drop = (f.dropNotifications ?? 0) > 0;
    if (drop) f.dropNotifications!--;
    const copy = Buffer.from(message);
    setImmediate(() => {
      if (target === undefined || target.#dead || target.#closed) {
        this.#listener.notifyDone(token, new KvwireError(ErrorCode.PEER_LOST, 'the peer is gone'));
        return;
      }
      if (!drop) target.#listener.notification(this.name, copy);
      this.#listener.notifyDone(token, undefined);
    });
  }

  ref(): void {}

  unref(): void {}

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    for (const t of [...this.#pending.values()]) {
      this.#finish(t, new KvwireError(ErrorCode.CLOSED, 'the agent was closed while this transfer was in flight'));
    }
    this.#loseConnections(`'${this.name}' closed its agent`);
    registry.delete(this.#key);
    return Promise.resolve();
  }

  #kill(): void {
    if (this.#dead || this.#closed) return;
    this.#dead = true;
    registry.delete(this.#key);
    for (const t of [...this.#pending.values()]) {
      this.#finish(t, new KvwireError(ErrorCode.PEER_LOST, 'this agent was killed by fault injection'));
    }
    this.#loseConnections(`its process died (fault injection killed '${this.name}')`);
  }

  /** Tells every initiator connected to this engine, and fails their transfers to it. */
  #loseConnections(reason: string): void {
    for (const [initiator, peerIds] of this.#inbound) {
      for (const pid of peerIds) {
        for (const t of [...initiator.#pending.values()]) {
          if (t.peerId === pid)
            initiator.#finish(t, new KvwireError(ErrorCode.PEER_LOST, `peer '${this.name}' was lost: ${reason}`));
        }
        const err = new KvwireError(ErrorCode.PEER_LOST, `peer '${this.name}' was lost: ${reason}`);
        setImmediate(() => initiator.#listener.peerLost(pid, err));
      }
    }
    this.#inbound.clear();
  }

  #assertUsable(): void {
    if (this.#closed)
      throw new KvwireError(ErrorCode.CLOSED, 'the agent is closed; create a new one with Agent.create()');
    if (this.#dead) throw new KvwireError(ErrorCode.CLOSED, 'the agent was killed by fault injection');
  }
}
