/**
 * CUDA device memory: what `agent.register({ kind: 'cuda', ... })` takes, and helpers to allocate,
 * fill and read it for tests, the bench and the demo.
 *
 * The CUDA driver is loaded at run time (never linked). Where it is missing, every function here
 * throws `ERR_KVWIRE_UNSUPPORTED` with the driver's reason, and {@link cuda.available} is false.
 * The copy helpers are synchronous (they block the calling thread for the copy): they are for
 * setting up and checking memory, not for moving KV blocks, which is the agent's job.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { loadNative, nativeLoadError } from '../native.js';
import type { NativeCuda } from '../native.js';
import { fromNativeError } from './native-errors.js';
import { formatCount } from '../util/format.js';

/**
 * Device memory to register: `length` bytes at device address `pointer` on CUDA device `device`
 * (e.g. a PyTorch tensor's `data_ptr()` as a bigint). The memory belongs to the caller; kvwire
 * validates it with the driver's pointer attributes and never frees it.
 */
export interface CudaMemory {
  readonly kind: 'cuda';
  /** Device ordinal, as this process numbers its visible devices. */
  readonly device: number;
  /** Device address of the first byte. */
  readonly pointer: bigint;
  /** Size in bytes. */
  readonly length: number;
}

/** A CUDA device this process sees. */
export interface CudaDevice {
  /** Device ordinal (as `CUDA_VISIBLE_DEVICES` numbers it for this process). */
  readonly ordinal: number;
  readonly name: string;
  readonly pciBusId: string;
  readonly totalBytes: number;
}

/** Copy bandwidth a baseline measured. */
export interface CudaBaseline {
  readonly seconds: number;
  /** GB/s (10^9 bytes per second). */
  readonly gbps: number;
}

function native(): NativeCuda {
  const n = loadNative();
  if (n === undefined)
    throw new KvwireError(
      ErrorCode.UNSUPPORTED,
      `CUDA is unavailable: ${nativeLoadError() ?? 'the native addon did not load'}`,
    );
  return n.cuda;
}

function call<T>(fn: (c: NativeCuda) => T): T {
  try {
    return fn(native());
  } catch (e) {
    throw fromNativeError(e);
  }
}

// Allocations nobody freed are freed when collected (a registered region keeps its allocation
// reachable, and the agent keeps a deregistered region until no operation can touch it).
const collected = new FinalizationRegistry<bigint>((pointer) => {
  try {
    loadNative()?.cuda.free(pointer);
  } catch {
    // freed already, or the process is exiting
  }
});

/** Device memory allocated by {@link cuda.alloc}. Free it with `free()` (or let it be collected). */
export class CudaAllocation implements CudaMemory {
  readonly kind = 'cuda' as const;
  readonly device: number;
  readonly pointer: bigint;
  readonly length: number;
  #freed = false;
  #users = 0;

  /** @internal Created by {@link cuda.alloc}. */
  constructor(device: number, pointer: bigint, length: number) {
    this.device = device;
    this.pointer = pointer;
    this.length = length;
    collected.register(this, pointer, this);
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#freed;
  }

  /**
   * Frees the memory. Throws `ERR_KVWIRE_REGION_BUSY` while a region registered on it is not yet
   * released (deregister it and await `region.released` first). Idempotent.
   */
  free(): void {
    if (this.#freed) return;
    if (this.#users > 0) {
      throw new KvwireError(
        ErrorCode.REGION_BUSY,
        `this CUDA allocation backs ${this.#users} registered region(s); deregister them and await region.released before freeing it`,
      );
    }
    collected.unregister(this);
    this.#freed = true;
    call((c) => c.free(this.pointer));
  }

  /** @internal A region registered on it: freeing waits until it is released. */
  retain(): void {
    if (this.#freed) throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'this CUDA allocation was freed');
    this.#users++;
  }

  /** @internal */
  release(): void {
    this.#users--;
  }

  /** A short description for messages. */
  toString(): string {
    return `CUDA allocation of ${formatCount(this.length)} bytes on device ${this.device}`;
  }
}

/** True when `m` has the shape of {@link CudaMemory} (kind 'cuda'); its fields are checked on use. */
export function isCudaMemory(m: unknown): m is CudaMemory {
  return m !== null && typeof m === 'object' && (m as { kind?: unknown }).kind === 'cuda';
}

/** Checks the fields of device memory given by a caller; throws INVALID_ARGUMENT naming the bad one. */
export function checkCudaMemory(m: CudaMemory): void {
  if (!Number.isSafeInteger(m.device) || m.device < 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `device must be a non-negative integer (the CUDA device ordinal), not ${describeValue(m.device)}`,
    );
  }
  if (typeof m.pointer !== 'bigint' || m.pointer <= 0n || m.pointer >= 1n << 64n) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `pointer must be a device address as a positive bigint (e.g. BigInt(tensor.data_ptr())), not ${describeValue(m.pointer)}`,
    );
  }
  if (!Number.isSafeInteger(m.length) || m.length <= 0) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `length must be a positive integer number of bytes, not ${describeValue(m.length)}`,
    );
  }
  if (m instanceof CudaAllocation && m.freed)
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, 'this CUDA allocation was freed');
}

function range(m: CudaMemory, offset: number, length: number, what: string): bigint {
  checkCudaMemory(m);
  if (
    !Number.isSafeInteger(offset) ||
    offset < 0 ||
    !Number.isSafeInteger(length) ||
    length < 0 ||
    offset + length > m.length
  ) {
    throw new KvwireError(
      ErrorCode.OUT_OF_BOUNDS,
      `${what} of ${formatCount(length)} bytes at offset ${formatCount(offset)} reaches past the ${formatCount(m.length)} bytes of the device memory`,
    );
  }
  return m.pointer + BigInt(offset);
}

type DriverState = ReturnType<NonNullable<ReturnType<typeof loadNative>>['capabilities']>['cuda'];
let driverMemo: DriverState | undefined;

/**
 * What the native addon says of the CUDA driver, asked once: the addon loads the driver once per
 * process and never again, so the answer cannot change (asking is slow: the addon's capabilities
 * also list UCX's transports, ~270 µs, which every registration of device memory paid before).
 */
function driverState(): DriverState | undefined {
  if (driverMemo === undefined) driverMemo = loadNative()?.capabilities().cuda;
  return driverMemo;
}

/** CUDA helpers: devices, allocation, synchronous copies and bandwidth baselines. */
export const cuda = {
  /** True when the CUDA driver loaded and sees at least one device. */
  available(): boolean {
    try {
      const c = driverState();
      return c?.driver === true && c.devices > 0;
    } catch {
      return false;
    }
  },

  /** Why CUDA is unavailable, or undefined when it is available. */
  unavailableReason(): string | undefined {
    const c = driverState();
    if (c === undefined) return nativeLoadError() ?? 'the native addon did not load';
    if (!c.driver) return c.reason ?? 'unknown';
    if (c.devices === 0) return 'the CUDA driver sees no device (check nvidia-smi and CUDA_VISIBLE_DEVICES)';
    return undefined;
  },

  /** The devices this process sees. */
  devices(): CudaDevice[] {
    return call((c) => c.devices());
  },

  /** Allocates `bytes` of device memory on `device` (cuMemAlloc). */
  alloc(device: number, bytes: number): CudaAllocation {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `bytes must be a positive integer, not ${describeValue(bytes)}`,
      );
    }
    if (!Number.isSafeInteger(device) || device < 0) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `device must be a non-negative integer, not ${describeValue(device)}`,
      );
    }
    return new CudaAllocation(
      device,
      call((c) => c.alloc(device, bytes)),
      bytes,
    );
  },

  /** Frees an allocation made by {@link cuda.alloc} (same as `allocation.free()`). */
  free(allocation: CudaAllocation): void {
    if (!(allocation instanceof CudaAllocation)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        "cuda.free takes an allocation returned by cuda.alloc; memory kvwire did not allocate is the caller's to free",
      );
    }
    allocation.free();
  },

  /** Copies `src` into device memory at `offset` (synchronous). */
  copyToDevice(dst: CudaMemory, src: Uint8Array, offset = 0): void {
    const p = range(dst, offset, src.byteLength, 'copyToDevice');
    if (src.byteLength > 0) call((c) => c.copy(0, dst.device, p, src));
  },

  /** Copies device memory from `offset` into `dst` (synchronous). */
  copyFromDevice(src: CudaMemory, dst: Uint8Array, offset = 0): void {
    const p = range(src, offset, dst.byteLength, 'copyFromDevice');
    if (dst.byteLength > 0) call((c) => c.copy(1, src.device, p, dst));
  },

  /** Sets `length` bytes from `offset` to `value` (synchronous). */
  memset(dst: CudaMemory, value: number, offset = 0, length = dst.length - offset): void {
    if (!Number.isInteger(value) || value < 0 || value > 255) {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `value must be a byte (0..255), not ${describeValue(value)}`);
    }
    const p = range(dst, offset, length, 'memset');
    if (length > 0) call((c) => c.memset(dst.device, p, value, length));
  },

  /**
   * Copy bandwidth on `device`, timed with CUDA events: 'dtod' device to device (cuMemcpyDtoD),
   * 'htod' pinned host to device, 'dtoh' device to pinned host; `iterations` copies of `bytes`,
   * back to back on one stream. The device side rotates over distinct buffers of at least 256 MiB
   * in all, so the copies come from the GPU's memory, not its L2 cache, as a transfer's do.
   */
  async baseline(
    kind: 'dtod' | 'htod' | 'dtoh',
    device: number,
    bytes: number,
    iterations: number,
  ): Promise<CudaBaseline> {
    try {
      return await native().baseline(kind, device, bytes, iterations);
    } catch (e) {
      throw fromNativeError(e);
    }
  },
};
