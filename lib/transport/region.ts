/**
 * Regions: registered memory, local ({@link Region}) and remote ({@link RemoteRegion}).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { CudaMemory } from './cuda.js';
import type { Access, MemoryKind } from './types.js';
import { formatCount } from '../util/format.js';

/** Internal hooks a Region needs from its agent. */
export interface RegionOwner {
  /** @internal */
  deregisterRegion(region: Region): void;
}

/**
 * Memory registered with an agent. Transfers name it in their descriptors; peers reach it (by
 * label, in the access mode it was registered with) once they have the agent's metadata.
 *
 * The Region holds a reference to the memory, so it stays alive while registered.
 */
export class Region {
  /** Engine id, unique within the agent and never reused. */
  readonly id: number;
  /** Name peers use to find it. */
  readonly label: string;
  /** What remote peers may do. */
  readonly access: Access;
  /** Size in bytes. */
  readonly length: number;
  /** Host memory, or CUDA device memory. */
  readonly kind: MemoryKind;
  /** The CUDA device ordinal of device memory; undefined for host memory. */
  readonly device: number | undefined;
  /** The device address of device memory; undefined for host memory. */
  readonly pointer: bigint | undefined;
  /** Resolves once no operation can touch the memory any more (after deregistration). */
  readonly released: Promise<void>;
  #registered = true;
  #resolveReleased!: () => void;
  readonly #owner: RegionOwner;
  /** The memory object as the caller gave it; held so it cannot be collected while registered. */
  readonly #memory: unknown;
  readonly #bytes: Uint8Array | undefined;

  /** @internal Created by {@link Agent.register}: `bytes` for host memory, `device` for device memory. */
  constructor(
    owner: RegionOwner,
    id: number,
    label: string,
    access: Access,
    bytes: Uint8Array | undefined,
    memory: unknown,
    device?: CudaMemory,
  ) {
    this.#owner = owner;
    this.id = id;
    this.label = label;
    this.access = access;
    this.length = device !== undefined ? device.length : bytes!.byteLength;
    this.kind = device !== undefined ? 'cuda' : 'host';
    this.device = device?.device;
    this.pointer = device?.pointer;
    this.#bytes = bytes;
    this.#memory = memory;
    this.released = new Promise((resolve) => {
      this.#resolveReleased = resolve;
    });
  }

  /**
   * The registered bytes, as a view (no copy). Device memory has no host view: reading `bytes` of a
   * region of kind 'cuda' throws `ERR_KVWIRE_UNSUPPORTED` (use `cuda.copyFromDevice`).
   */
  get bytes(): Uint8Array {
    if (this.#bytes === undefined) {
      throw new KvwireError(
        ErrorCode.UNSUPPORTED,
        `${this} is CUDA device memory, which has no host view; read it with cuda.copyFromDevice()`,
      );
    }
    return this.#bytes;
  }

  /**
   * True when host memory was detached under the registration (by a path kvwire cannot prevent,
   * e.g. another addon calling napi_detach_arraybuffer): it must not be used any more. @internal
   */
  get detached(): boolean {
    return this.#bytes !== undefined && this.#bytes.byteLength !== this.length;
  }

  /** The agent that registered it. @internal */
  get owner(): RegionOwner {
    return this.#owner;
  }

  /** False once deregistered. */
  get registered(): boolean {
    return this.#registered;
  }

  /**
   * Deregisters the region: peers can no longer reach it and it can no longer be used in new
   * transfers. Throws `ERR_KVWIRE_REGION_BUSY` while transfers this agent posted still use it
   * (await or cancel them first). Idempotent.
   */
  deregister(): void {
    if (this.#registered) this.#owner.deregisterRegion(this);
  }

  /** @internal */
  markDeregistered(): void {
    this.#registered = false;
  }

  /** @internal */
  markReleased(): void {
    this.#registered = false;
    this.#resolveReleased();
  }

  /** @internal Keeps the memory reachable from the region (see constructor). */
  get memory(): unknown {
    return this.#memory;
  }

  /** A short description for messages: `region 'kv' (1,048,576 bytes)`. */
  toString(): string {
    return `region '${this.label}' (${formatCount(this.length)} bytes${this.kind === 'cuda' ? ` on CUDA device ${this.device}` : ''})`;
  }
}

/** A region of a connected peer, as its metadata described it. */
export class RemoteRegion {
  /** The peer's id for it. */
  readonly id: number;
  /** Its label at the peer. */
  readonly label: string;
  /** What this agent may do with it. */
  readonly access: Access;
  /** Size in bytes. */
  readonly length: number;
  /** The peer that owns it (a {@link Peer}). */
  readonly peer: object;
  /** Host memory, or CUDA device memory of the peer. */
  readonly kind: MemoryKind;
  #revoked = false;

  /** @internal Created by {@link Agent.connect}. */
  constructor(peer: object, id: number, label: string, access: Access, length: number, kind: MemoryKind = 'host') {
    this.peer = peer;
    this.id = id;
    this.label = label;
    this.access = access;
    this.length = length;
    this.kind = kind;
  }

  /** True once the peer deregistered it: transfers naming it fail with `ERR_KVWIRE_DEREGISTERED`. */
  get revoked(): boolean {
    return this.#revoked;
  }

  /** @internal */
  markRevoked(): void {
    this.#revoked = true;
  }

  /** A short description for messages. */
  toString(): string {
    return `remote region '${this.label}' (${formatCount(this.length)} bytes)`;
  }
}
