/**
 * Block leases on the prefill side: the blocks of a request, held for a decode worker until it
 * says it read them, or until the lease expires, or until someone cancels.
 *
 * Every lease occupies a slot of a lease table: registered memory (exported read-only to decode
 * workers) of two float64s per slot, the lease's random token and its state. A slot holds
 * `[token, HELD]` while the lease is held and `[token, <why it ended>]` after; slots are reused
 * least recently freed first. The decode side reads the slot after its block reads completed: if
 * it still holds `[token, HELD]`, the blocks were not freed (and so not reused) before the reads
 * finished, and the bytes are good. This is the "lease fence" of docs/pd.md.
 *
 * Ending a lease is idempotent: the first reason wins; a timer, a notification and a cancellation
 * racing each other free the blocks exactly once.
 *
 * A lease can be extended (the decode side's heartbeats, see `heartbeat.ts`): its deadline moves
 * to at least `now + extension`, never earlier. The expiry timer is not re-armed per extension
 * (heartbeats arrive every few seconds for every pending lease); when it fires before the current
 * deadline it re-arms for what is left.
 *
 * @packageDocumentation
 */
import { randomInt } from 'node:crypto';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { MAX_LEASE_TOKEN } from './params.js';
import { FREE_REASON_STATE, LeaseSlotState, type FreeReason } from './protocol.js';

/** A held lease. */
export interface BlockLease {
  /** The prefill-side request id. */
  readonly requestId: string;
  /** The blocks it holds, in token order. */
  readonly blockIds: readonly number[];
  /** Its lease table slot. */
  readonly slot: number;
  /** Its random token. */
  readonly token: number;
  /** When it was taken (ms since the epoch). */
  readonly heldAt: number;
  /** When it expires (ms since the epoch); heartbeats move it later (see {@link LeaseBook.extend}). */
  readonly expiresAt: number;
}

/** The lease table memory: `[token, state]` per slot, and a FIFO of free slots. */
export class LeaseTable {
  /** The slots, as registered memory: slot i is `words[2i]` (token), `words[2i+1]` (state). */
  readonly words: Float64Array;
  /** Number of slots. */
  readonly slots: number;
  readonly #free: Uint32Array;
  #head = 0;
  #count: number;

  /** @param slots - most leases held at once. */
  constructor(slots: number) {
    if (!Number.isSafeInteger(slots) || slots < 1 || slots > 2 ** 24) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `maxLeases must be an integer in 1..${2 ** 24}, got ${describeValue(slots)}`,
        { field: 'maxLeases' },
      );
    }
    this.slots = slots;
    this.words = new Float64Array(2 * slots);
    this.#free = new Uint32Array(slots);
    for (let i = 0; i < slots; i++) this.#free[i] = i;
    this.#count = slots;
  }

  /** Free slots. */
  get available(): number {
    return this.#count;
  }

  /** Takes the least recently freed slot and marks it held with a fresh token; undefined when full. */
  acquire(): { slot: number; token: number } | undefined {
    if (this.#count === 0) return undefined;
    const slot = this.#free[this.#head]!;
    this.#head = (this.#head + 1) % this.slots;
    this.#count--;
    const token = randomInt(1, MAX_LEASE_TOKEN);
    this.words[2 * slot] = token;
    this.words[2 * slot + 1] = LeaseSlotState.HELD;
    return { slot, token };
  }

  /** Records why the lease in `slot` ended and returns the slot to the free list. */
  release(slot: number, state: number): void {
    // The state is written before the engine gets the blocks back (the caller frees after this):
    // a decode side that reads HELD after its block reads knows no reuse had begun.
    this.words[2 * slot + 1] = state;
    this.#free[(this.#head + this.#count) % this.slots] = slot;
    this.#count++;
  }
}

interface LeaseEntry {
  lease: BlockLease;
  /** The deadline on the monotonic clock (`performance.now()`): wall-clock steps move no lease. */
  deadline: number;
  /** The deadline the timer was armed for: when it fires with the deadline unchanged, the lease expires. */
  armed: number;
  timer: NodeJS.Timeout;
  detach: (() => void) | undefined;
}

/** The leases of one prefill coordinator. */
export class LeaseBook {
  readonly #table: LeaseTable;
  readonly #byRequest = new Map<string, LeaseEntry>();
  readonly #onEnd: (lease: BlockLease, reason: FreeReason) => void;

  /** @param onEnd - called once per lease, after its slot was released, to free the blocks. */
  constructor(table: LeaseTable, onEnd: (lease: BlockLease, reason: FreeReason) => void) {
    this.#table = table;
    this.#onEnd = onEnd;
  }

  /** Leases held. */
  get size(): number {
    return this.#byRequest.size;
  }

  /** The lease held for `requestId`. */
  get(requestId: string): BlockLease | undefined {
    return this.#byRequest.get(requestId)?.lease;
  }

  /** Every lease held. */
  all(): BlockLease[] {
    return [...this.#byRequest.values()].map((e) => e.lease);
  }

  /**
   * Holds `blockIds` for `requestId` for `leaseMs`. When `signal` aborts, the lease ends as cancelled.
   *
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when a lease for `requestId` is held already;
   *   `ERR_KVWIRE_CAPACITY` when every lease table slot is taken.
   */
  hold(requestId: string, blockIds: readonly number[], leaseMs: number, signal?: AbortSignal): BlockLease {
    if (this.#byRequest.has(requestId)) {
      throw new KvwireError(
        ErrorCode.INVALID_ARGUMENT,
        `request '${requestId}' already holds blocks; request ids must be unique among held requests`,
        { field: 'requestId' },
      );
    }
    if (signal?.aborted)
      throw new KvwireError(ErrorCode.CANCELLED, `request '${requestId}' was cancelled before its blocks were held`);
    const taken = this.#table.acquire();
    if (taken === undefined) {
      throw new KvwireError(
        ErrorCode.CAPACITY,
        `all ${this.#table.slots} lease slots are held; decode workers are not releasing blocks fast enough: raise maxLeases or lower leaseMs`,
      );
    }
    const now = Date.now();
    const lease: BlockLease = Object.freeze({
      requestId,
      blockIds: Object.freeze([...blockIds]),
      slot: taken.slot,
      token: taken.token,
      heldAt: now,
      expiresAt: now + leaseMs,
    });
    let detach: (() => void) | undefined;
    if (signal !== undefined) {
      const onAbort = () => this.end(requestId, 'cancelled', lease.token);
      signal.addEventListener('abort', onAbort, { once: true });
      detach = () => signal.removeEventListener('abort', onAbort);
    }
    const deadline = performance.now() + leaseMs;
    const entry: LeaseEntry = {
      lease,
      deadline,
      armed: deadline,
      timer: this.#expiry(requestId, lease.token, leaseMs),
      detach,
    };
    this.#byRequest.set(requestId, entry);
    return lease;
  }

  #expiry(requestId: string, token: number, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const e = this.#byRequest.get(requestId);
      if (e === undefined || e.lease.token !== token) return;
      // Extended since the timer was armed: wait for what is left of the new deadline.
      const left = e.deadline === e.armed ? 0 : e.deadline - performance.now();
      if (left >= 1) {
        e.armed = e.deadline;
        e.timer = this.#expiry(requestId, token, left);
      } else this.end(requestId, 'expired', token);
    }, ms);
    timer.unref(); // a held lease must not keep a process alive that is otherwise done
    return timer;
  }

  /**
   * Extends the lease of `requestId` if its token is `token`: it then expires no earlier than
   * `extensionMs` from now (an extension never shortens a lease). Returns the lease with its new
   * `expiresAt`, or undefined when no lease with that token is held (ended, or another token: a
   * stale or forged heartbeat extends nothing).
   */
  extend(requestId: string, token: number, extensionMs: number): BlockLease | undefined {
    const e = this.#byRequest.get(requestId);
    if (e === undefined || e.lease.token !== token) return undefined;
    const now = performance.now();
    if (now + extensionMs > e.deadline) {
      const expiresAt = e.lease.expiresAt + Math.ceil(now + extensionMs - e.deadline);
      e.deadline = now + extensionMs;
      e.lease = Object.freeze({ ...e.lease, expiresAt });
    }
    return e.lease;
  }

  /** Milliseconds left before the lease of `requestId` expires, or undefined when none is held. */
  remainingMs(requestId: string): number | undefined {
    const e = this.#byRequest.get(requestId);
    return e === undefined ? undefined : Math.max(0, e.deadline - performance.now());
  }

  /**
   * Ends the lease of `requestId` (only if its token is `token`, when given) for `reason`:
   * records the reason in its slot, then calls `onEnd`. Returns the lease when it ended now,
   * undefined when there was none (already ended, or another token).
   */
  end(requestId: string, reason: FreeReason, token?: number): BlockLease | undefined {
    const e = this.#byRequest.get(requestId);
    if (e === undefined || (token !== undefined && e.lease.token !== token)) return undefined;
    this.#byRequest.delete(requestId);
    clearTimeout(e.timer);
    e.detach?.();
    this.#table.release(e.lease.slot, FREE_REASON_STATE[reason]);
    this.#onEnd(e.lease, reason);
    return e.lease;
  }

  /** Ends every lease for `reason`. */
  endAll(reason: FreeReason): void {
    for (const id of [...this.#byRequest.keys()]) this.end(id, reason);
  }
}
