/**
 * Notification delivery: async iterators, one-shot waits, and a short history so a wait that
 * starts just after its notification arrived still sees it.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { checkTimeout } from './agent-options.js';
import { integerOption, optionsObject, signalOption } from './arguments.js';
import { armDeadline } from './deadline.js';
import { describeValue } from '../util/describe-value.js';
import type { Notification } from './types.js';

/** Options of {@link NotificationHub.iterate}. */
export interface NotificationIteratorOptions {
  /** Ends the iteration when aborted. */
  signal?: AbortSignal;
  /** Notifications buffered for a slow consumer before it fails with `ERR_KVWIRE_CAPACITY`. Default 65 536. */
  maxBuffered?: number;
}

/** Options of {@link NotificationHub.wait}. */
export interface WaitOptions {
  /** Deadline in milliseconds (default: none). */
  timeoutMs?: number;
  /** Cancels the wait. */
  signal?: AbortSignal;
}

interface Consumer {
  queue: Notification[];
  max: number;
  wake: (() => void) | undefined;
  overflow: boolean;
}

interface Wait {
  match: (n: Notification) => boolean;
  settle: (n: Notification | undefined, error: KvwireError | undefined) => void;
}

/**
 * The test of `waitForNotification(match)`: a string equal to the message text, a RegExp tested on
 * it, a predicate, or anything (no match given).
 */
export function notificationMatcher(
  match: string | RegExp | ((n: Notification) => boolean) | undefined,
): (n: Notification) => boolean {
  if (match === undefined) return () => true;
  if (typeof match === 'string') return (n) => n.message.toString('utf8') === match;
  if (match instanceof RegExp) return (n) => match.test(n.message.toString('utf8'));
  if (typeof match === 'function') return match;
  throw new KvwireError(
    ErrorCode.INVALID_ARGUMENT,
    `match must be a string, a RegExp or a predicate function, not ${describeValue(match)}`,
  );
}

/** Fans notifications out to iterators and waits. @internal */
export class NotificationHub {
  readonly #consumers = new Set<Consumer>();
  readonly #waits = new Set<Wait>();
  readonly #history: Notification[] = [];
  readonly #historySize: number;
  #closed = false;
  readonly #onWaiting: (delta: number) => void;

  /** `onWaiting(+1/-1)` tracks consumers blocked on a notification (they keep the process alive). */
  constructor(onWaiting: (delta: number) => void, historySize = 4096) {
    this.#onWaiting = onWaiting;
    this.#historySize = historySize;
  }

  /** Delivers one notification to every consumer and matching wait. */
  push(n: Notification): void {
    if (this.#closed) return;
    // The first matching wait consumes it; otherwise it is kept a while for waits to come.
    let consumed = false;
    for (const w of this.#waits) {
      if (w.match(n)) {
        w.settle(n, undefined);
        consumed = true;
        break;
      }
    }
    if (!consumed) {
      this.#history.push(n);
      if (this.#history.length > this.#historySize) this.#history.shift();
    }
    for (const c of this.#consumers) {
      if (c.queue.length >= c.max) c.overflow = true;
      else c.queue.push(n);
      const wake = c.wake;
      c.wake = undefined;
      wake?.();
    }
  }

  /** Ends every iterator and rejects every wait with `ERR_KVWIRE_CLOSED`. */
  close(): void {
    this.#closed = true;
    for (const c of this.#consumers) {
      const wake = c.wake;
      c.wake = undefined;
      wake?.();
    }
    this.#consumers.clear();
  }

  /** An async iterator over notifications arriving from now on. */
  iterate(options: NotificationIteratorOptions = {}): AsyncIterableIterator<Notification> {
    const opts = optionsObject(options, 'notifications options');
    const max = integerOption(opts.maxBuffered, 'maxBuffered', 1, 2 ** 31 - 1) ?? 65536;
    const signal = signalOption(opts.signal);
    const c: Consumer = { queue: [], max, wake: undefined, overflow: false };
    if (!this.#closed) this.#consumers.add(c);
    let done = this.#closed;
    const finish = () => {
      done = true;
      this.#consumers.delete(c);
      const wake = c.wake;
      c.wake = undefined;
      wake?.();
    };
    signal?.addEventListener('abort', finish, { once: true });
    const it: AsyncIterableIterator<Notification> = {
      [Symbol.asyncIterator]() {
        return it;
      },
      next: async (): Promise<IteratorResult<Notification>> => {
        for (;;) {
          if (c.overflow) {
            finish();
            throw new KvwireError(
              ErrorCode.CAPACITY,
              `more than ${c.max} notifications were left unread; consume them faster or raise maxBuffered`,
            );
          }
          const n = c.queue.shift();
          if (n !== undefined) return { value: n, done: false };
          if (done || this.#closed) {
            finish();
            return { value: undefined, done: true };
          }
          this.#onWaiting(1);
          try {
            await new Promise<void>((resolve) => {
              c.wake = resolve;
            });
          } finally {
            this.#onWaiting(-1);
          }
        }
      },
      return: (): Promise<IteratorResult<Notification>> => {
        finish();
        signal?.removeEventListener('abort', finish);
        return Promise.resolve({ value: undefined, done: true });
      },
    };
    return it;
  }

  /**
   * The first notification matching `match`, looking first at the recent history (so one that
   * arrived just before the wait began is not missed), then waiting.
   */
  wait(test: (n: Notification) => boolean, options: WaitOptions = {}): Promise<Notification> {
    let opts: { timeoutMs: number | undefined; signal: AbortSignal | undefined };
    try {
      const o = optionsObject(options, 'wait options');
      opts = {
        timeoutMs: o.timeoutMs === undefined ? undefined : checkTimeout(o.timeoutMs, 'timeoutMs'),
        signal: signalOption(o.signal),
      };
    } catch (e) {
      return Promise.reject(e);
    }
    // A predicate that throws fails its own wait (on a later microtask), never the delivery of
    // notifications to other consumers; the notification it threw on is not consumed.
    let failure: KvwireError | undefined;
    let entry: Wait | undefined;
    const match = (n: Notification): boolean => {
      try {
        return test(n) === true;
      } catch (e) {
        if (failure === undefined) {
          failure = new KvwireError(
            ErrorCode.INVALID_ARGUMENT,
            `the notification predicate threw: ${(e as Error)?.message ?? describeValue(e)}`,
            {},
            { cause: e },
          );
          queueMicrotask(() => entry?.settle(undefined, failure));
        }
        return false;
      }
    };
    for (let i = this.#history.length - 1; i >= 0; i--) {
      const n = this.#history[i]!;
      if (failure !== undefined) return Promise.reject(failure);
      if (match(n)) {
        this.#history.splice(i, 1); // consumed: a second wait for the same thing waits anew
        return Promise.resolve(n);
      }
    }
    if (this.#closed) return Promise.reject(new KvwireError(ErrorCode.CLOSED, 'the agent is closed'));
    if (opts.signal?.aborted) {
      return Promise.reject(new KvwireError(ErrorCode.CANCELLED, 'the wait for a notification was aborted'));
    }
    return new Promise<Notification>((resolve, reject) => {
      // The wait's own deadline (no engine enforces this one); its timer holds the process open.
      const disarm = armDeadline({
        afterMs: opts.timeoutMs,
        onTimeout: () =>
          settle(
            undefined,
            new KvwireError(ErrorCode.TIMEOUT, `no matching notification arrived within ${opts.timeoutMs} ms`),
          ),
        signal: opts.signal,
        onAbort: () =>
          settle(undefined, new KvwireError(ErrorCode.CANCELLED, 'the wait for a notification was aborted')),
        holdsProcess: true,
      });
      const settle = (n: Notification | undefined, error: KvwireError | undefined) => {
        if (!this.#waits.delete(entry!)) return; // settled already
        disarm();
        this.#onWaiting(-1);
        if (error !== undefined) reject(error);
        else resolve(n!);
      };
      entry = { match, settle };
      this.#waits.add(entry);
      this.#onWaiting(1);
    });
  }

  /** Rejects every pending wait (the agent is closing). */
  rejectWaits(error: KvwireError): void {
    for (const w of [...this.#waits]) w.settle(undefined, error);
  }
}
