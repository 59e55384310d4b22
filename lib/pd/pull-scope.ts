/**
 * The lifetime of one pull: its deadline and its cancellation as a single AbortSignal whose
 * reason is the typed error to report (`ERR_KVWIRE_TIMEOUT`, `ERR_KVWIRE_CANCELLED` or
 * `ERR_KVWIRE_CLOSED`). Everything the pull waits on (the shared handshake, the queue, the
 * allocator, the transfers) is bounded by it.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';

/** Deadline plus cancellation of one pull. */
export class PullScope {
  readonly #controller = new AbortController();
  readonly #deadline: number;
  readonly #timer: NodeJS.Timeout;
  readonly #caller: AbortSignal | undefined;
  readonly #onCallerAbort: () => void;

  /**
   * @param caller - the caller's signal (aborting it cancels the pull).
   * @param timeoutMs - the pull's deadline.
   * @param what - how messages name the pull, e.g. `request 'r1'`.
   */
  constructor(caller: AbortSignal | undefined, timeoutMs: number, what: string) {
    this.#deadline = performance.now() + timeoutMs;
    this.#caller = caller;
    this.#onCallerAbort = () => this.abort(new KvwireError(ErrorCode.CANCELLED, `${what} was cancelled`));
    this.#timer = setTimeout(
      () =>
        this.abort(
          new KvwireError(
            ErrorCode.TIMEOUT,
            `${what} did not get its KV within ${timeoutMs} ms (handshake, queue and transfer together); raise timeoutMs or check the prefill worker`,
          ),
        ),
      timeoutMs,
    );
    if (caller?.aborted) this.#onCallerAbort();
    else caller?.addEventListener('abort', this.#onCallerAbort, { once: true });
  }

  /** Aborted when the pull is cancelled or past its deadline; `reason` is the KvwireError. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** The error that ended the pull early, if it did. */
  get reason(): KvwireError | undefined {
    return this.#controller.signal.aborted ? (this.#controller.signal.reason as KvwireError) : undefined;
  }

  /** Milliseconds left before the deadline (at least 1). */
  remainingMs(): number {
    return Math.max(1, Math.ceil(this.#deadline - performance.now()));
  }

  /** Ends the pull early with `error` (first call wins). */
  abort(error: KvwireError): void {
    if (!this.#controller.signal.aborted) this.#controller.abort(error);
  }

  /** Throws the abort reason if the pull ended early. */
  check(): void {
    const r = this.reason;
    if (r !== undefined) throw r;
  }

  /** `p`, or the abort reason if the pull ends first (p keeps running; its outcome is ignored). */
  race<T>(p: Promise<T>): Promise<T> {
    const signal = this.#controller.signal;
    if (signal.aborted) {
      p.catch(() => {});
      return Promise.reject(signal.reason);
    }
    return new Promise<T>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          signal.removeEventListener('abort', onAbort);
          resolve(v);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }

  /** Clears the timer and the listener on the caller's signal. */
  dispose(): void {
    clearTimeout(this.#timer);
    this.#caller?.removeEventListener('abort', this.#onCallerAbort);
  }
}
