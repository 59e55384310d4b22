/**
 * Admission to the runtime's compute slots: at most `slots` requests run at once (the batch the
 * runtime evaluates together, `MAX_BATCH_SIZE`), at most `maxQueue` wait in a strict FIFO, and
 * beyond that a request is refused at once (HTTP 429 with Retry-After) — never an unbounded queue.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../errors.js';

interface Waiter {
  resolve(): void;
  reject(e: Error): void;
}

/** Slots and a bounded wait queue. */
export class Slots {
  readonly #slots: number;
  readonly #maxQueue: number;
  readonly #queue: Waiter[] = [];
  #running = 0;

  constructor(slots: number, maxQueue: number) {
    this.#slots = slots;
    this.#maxQueue = maxQueue;
  }

  /** Requests holding a slot. */
  get running(): number {
    return this.#running;
  }

  /** Requests waiting for one. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Slots in all. */
  get size(): number {
    return this.#slots;
  }

  /**
   * Waits for a slot.
   *
   * @throws KvwireError `ERR_KVWIRE_CAPACITY` when the queue is full; `ERR_KVWIRE_CANCELLED` when `signal` aborts first.
   */
  async acquire(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw new KvwireError(ErrorCode.CANCELLED, 'the request was cancelled before it got a slot');
    if (this.#running < this.#slots && this.#queue.length === 0) {
      this.#running++;
      return;
    }
    if (this.#queue.length >= this.#maxQueue) {
      throw new KvwireError(
        ErrorCode.CAPACITY,
        `the engine is busy: ${this.#running} requests running and ${this.#queue.length} waiting (--max-queue ${this.#maxQueue}); retry later`,
      );
    }
    await new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      this.#queue.push(w);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.#queue.indexOf(w);
          if (i >= 0) {
            this.#queue.splice(i, 1);
            reject(new KvwireError(ErrorCode.CANCELLED, 'the request was cancelled while waiting for a slot'));
          }
        },
        { once: true },
      );
    });
  }

  /** Gives a slot back (to the first waiter, if any). */
  release(): void {
    const next = this.#queue.shift();
    if (next !== undefined) next.resolve();
    else this.#running--;
  }

  /** Refuses every waiter (shutdown). */
  rejectWaiting(e: Error): void {
    for (const w of this.#queue.splice(0)) w.reject(e);
  }
}
