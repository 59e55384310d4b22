/**
 * An agent's region bookkeeping: the registered regions by id and by label, the ids handed out,
 * and the deregistered regions still waiting for the engine to release their memory.
 *
 * @packageDocumentation
 */
import { totalmem } from 'node:os';
import { markAsUntransferable } from 'node:worker_threads';
import { ErrorCode, KvwireError } from '../errors.js';
import { invalid } from './arguments.js';
import { isCudaMemory } from './cuda.js';
import type { CudaMemory } from './cuda.js';
import type { RegionDescription } from './metadata.js';
import type { Region } from './region.js';
import type { Access, HostMemory } from './types.js';
import { formatCount } from '../util/format.js';

const ACCESS = new Set<Access>(['read', 'write', 'readwrite', 'none']);

/** Checks the `access` option of register/allocate (default 'none'). */
export function checkAccess(access: Access | undefined): Access {
  const a = access ?? 'none';
  if (!ACCESS.has(a)) invalid('access', "'read', 'write', 'readwrite' or 'none'", a);
  return a;
}

/**
 * The bytes of host memory given to `register` (a view, no copy), or undefined for CUDA device
 * memory; throws for anything else, and for an empty or detached buffer.
 */
export function hostBytes(memory: HostMemory | CudaMemory): Uint8Array | undefined {
  let bytes: Uint8Array;
  if (memory instanceof ArrayBuffer) bytes = new Uint8Array(memory);
  else if (ArrayBuffer.isView(memory)) bytes = new Uint8Array(memory.buffer, memory.byteOffset, memory.byteLength);
  else if (isCudaMemory(memory)) return undefined;
  else {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      'memory must be an ArrayBuffer, a typed array, a DataView or a Buffer',
    );
  }
  if (bytes.byteLength === 0)
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'cannot register an empty (or detached) buffer');
  return bytes;
}

/** Checks the length given to `allocate`. */
export function checkAllocationLength(length: number): void {
  if (!Number.isSafeInteger(length) || length <= 0) invalid('length', 'a positive integer', length);
  // Far beyond the machine's memory, UCX falls back from shared memory to mapping it anyway and
  // the process dies when the pages are touched: refuse up front instead.
  if (length > totalmem()) {
    throw new KvwireError(
      ErrorCode.CAPACITY,
      `cannot allocate ${formatCount(length)} bytes: this machine has ${formatCount(totalmem())} bytes of memory`,
    );
  }
}

/**
 * Makes the memory under `m` impossible to detach for good. Hazard guarded: registered memory
 * used after it was freed. The Region keeps the ArrayBuffer object alive, but transferring it
 * (`structuredClone(ab, { transfer: [ab] })`, `port.postMessage(ab, [ab])`) would move its
 * backing store to a new object that is collected, and freed, on its own; a peer's READ then read
 * freed memory (a crash, or someone else's bytes). Marked untransferable, a transfer copies the
 * bytes instead and the registered ones stay where they are, owned by the object the Region holds.
 */
export function pinMemory(m: ArrayBuffer | ArrayBufferView): void {
  markAsUntransferable(ArrayBuffer.isView(m) ? m.buffer : m);
}

/** The regions of one agent. @internal */
export class RegionTable {
  readonly #byId = new Map<number, Region>();
  readonly #byLabel = new Map<string, Region>();
  /** Deregistered, until the engine reports no operation can touch them. */
  readonly #releasing = new Map<number, Region>();
  #nextId = 1;

  /** Registered regions. */
  get all(): Region[] {
    return [...this.#byId.values()];
  }

  /** The registered region with engine id `id`. */
  get(id: number): Region | undefined {
    return this.#byId.get(id);
  }

  /** True while `region` is registered here. */
  holds(region: Region): boolean {
    return this.#byId.get(region.id) === region;
  }

  /** What the metadata says of the regions peers may reach (access other than 'none'). */
  exported(): RegionDescription[] {
    return this.all
      .filter((r) => r.access !== 'none')
      .map((r) => ({ id: r.id, label: r.label, access: r.access, length: r.length, memory: r.kind }));
  }

  /**
   * The id and label of the next region (`requested`, or `region-<id>`); the id is used up only when
   * the label is valid and unique.
   */
  reserve(requested: string | undefined): { id: number; label: string } {
    const id = this.#nextId;
    const label = requested ?? `region-${id}`;
    if (typeof label !== 'string' || label.length === 0 || Buffer.byteLength(label) > 1024) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'label must be a non-empty string of at most 1024 bytes');
    }
    if (this.#byLabel.has(label)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `label '${label}' is already registered with this agent; labels must be unique`,
      );
    }
    this.#nextId++;
    return { id, label };
  }

  /** Adds a region the engine registered under a reserved id. */
  add(region: Region): Region {
    this.#byId.set(region.id, region);
    this.#byLabel.set(region.label, region);
    return region;
  }

  /**
   * Removes a deregistered region. `released`: the engine let go of its memory already; otherwise
   * it waits here for {@link RegionTable.released}.
   */
  remove(region: Region, released: boolean): void {
    this.#byId.delete(region.id);
    this.#byLabel.delete(region.label);
    region.markDeregistered();
    if (released) region.markReleased();
    else this.#releasing.set(region.id, region);
  }

  /** The engine released region `id`; false when it was not waiting here. */
  released(id: number): boolean {
    const r = this.#releasing.get(id);
    if (r === undefined) return false;
    this.#releasing.delete(id);
    r.markReleased();
    return true;
  }

  /** The engine is gone: every region, registered or waiting, is released. */
  releaseAll(): void {
    for (const r of [...this.#byId.values(), ...this.#releasing.values()]) r.markReleased();
    this.#byId.clear();
    this.#byLabel.clear();
    this.#releasing.clear();
  }
}
