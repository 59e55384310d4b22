/**
 * Backpressure on the decode side: at most `maxConcurrentRequests` pulls with transfers in
 * flight and at most `maxInFlightBytes` bytes among them; the rest wait in a FIFO queue (strict
 * order: a large request at the head is not overtaken by small ones, so it cannot starve). A
 * request larger than `maxInFlightBytes` on its own is admitted when nothing else is in flight.
 * Beyond `maxQueued` waiting requests, new ones are refused with `ERR_KVWIRE_CAPACITY`.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';

/** The limits of an {@link Admission}. */
export interface AdmissionLimits {
  /** Bytes in flight across admitted requests. */
  readonly maxInFlightBytes: number;
  /** Requests admitted at once. */
  readonly maxConcurrentRequests: number;
  /** Requests waiting at once. */
  readonly maxQueued: number;
}

/** An admitted request: `slot` is unique among admitted requests, in `[0, maxConcurrentRequests)`. */
export interface Admitted {
  /** Index unique among admitted requests (the fence scratch slot). */
  readonly slot: number;
  /** Bytes this request counts for. */
  readonly bytes: number;
  /** Leaves: frees the slot and the bytes, admits waiters. Idempotent. */
  release(): void;
}

interface Waiter {
  bytes: number;
  admit: (a: Admitted) => void;
  fail: (e: unknown) => void;
}

/** A FIFO admission gate with byte and request limits. */
export class Admission {
  readonly limits: AdmissionLimits;
  readonly #queue: Waiter[] = [];
  readonly #freeSlots: number[] = [];
  readonly #onChange: (queueDepth: number, active: number) => void;
  #bytes = 0;
  #active = 0;

  /** @param onChange - told the queue depth and the admitted count after every change. */
  constructor(limits: AdmissionLimits, onChange: (queueDepth: number, active: number) => void = () => {}) {
    for (const [k, v] of Object.entries(limits)) {
      if (
        typeof v !== 'number' ||
        !(v >= 1) ||
        (!Number.isSafeInteger(v) && v !== Infinity) ||
        (k === 'maxConcurrentRequests' && !Number.isSafeInteger(v))
      ) {
        throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `${k} must be a positive integer, got ${describeValue(v)}`, {
          field: k,
        });
      }
    }
    this.limits = Object.freeze({ ...limits });
    for (let s = limits.maxConcurrentRequests - 1; s >= 0; s--) this.#freeSlots.push(s);
    this.#onChange = onChange;
  }

  /** Requests waiting. */
  get queueDepth(): number {
    return this.#queue.length;
  }

  /** Requests admitted. */
  get active(): number {
    return this.#active;
  }

  /** Bytes counted by admitted requests. */
  get inFlightBytes(): number {
    return this.#bytes;
  }

  /**
   * Waits for room for a request of `bytes`, in arrival order.
   *
   * @throws KvwireError `ERR_KVWIRE_CAPACITY` when `maxQueued` requests wait already; the abort
   *   reason of `signal` (or `ERR_KVWIRE_CANCELLED`) when aborted while waiting.
   */
  acquire(bytes: number, signal?: AbortSignal): Promise<Admitted> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.#queue.length === 0 && this.#fits(bytes)) return Promise.resolve(this.#admit(bytes));
    if (this.#queue.length >= this.limits.maxQueued) {
      return Promise.reject(
        new KvwireError(
          ErrorCode.CAPACITY,
          `${this.#queue.length} requests already wait for transfer capacity (maxQueuedRequests); shed load or raise maxInFlightBytes / maxConcurrentRequests`,
        ),
      );
    }
    return new Promise<Admitted>((resolve, reject) => {
      const onAbort = () => {
        const i = this.#queue.indexOf(w);
        if (i < 0) return;
        this.#queue.splice(i, 1);
        this.#changed();
        reject(abortReason(signal!));
        this.#pump(); // the head may have been the one blocking the rest
      };
      const w: Waiter = {
        bytes,
        admit: (a) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(a);
        },
        fail: reject,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#queue.push(w);
      this.#changed();
    });
  }

  /** Rejects every waiter with `error` (the coordinator is closing). */
  rejectAll(error: KvwireError): void {
    for (const w of this.#queue.splice(0)) w.fail(error);
    this.#changed();
  }

  #fits(bytes: number): boolean {
    if (this.#active >= this.limits.maxConcurrentRequests) return false;
    return this.#active === 0 || this.#bytes + bytes <= this.limits.maxInFlightBytes;
  }

  #admit(bytes: number): Admitted {
    const slot = this.#freeSlots.pop()!;
    this.#active++;
    this.#bytes += bytes;
    this.#changed();
    let released = false;
    return {
      slot,
      bytes,
      release: () => {
        if (released) return;
        released = true;
        this.#active--;
        this.#bytes -= bytes;
        this.#freeSlots.push(slot);
        this.#pump();
        this.#changed();
      },
    };
  }

  #pump(): void {
    while (this.#queue.length > 0 && this.#fits(this.#queue[0]!.bytes)) {
      const w = this.#queue.shift()!;
      w.admit(this.#admit(w.bytes));
    }
  }

  #changed(): void {
    this.#onChange(this.#queue.length, this.#active);
  }
}

function abortReason(signal: AbortSignal): unknown {
  const r: unknown = signal.reason;
  return r instanceof KvwireError
    ? r
    : new KvwireError(ErrorCode.CANCELLED, 'the request was cancelled while waiting for transfer capacity');
}
