/**
 * Deadlines and abort signals of the agent's operations, armed in one place.
 *
 * Who enforces a deadline: the engine. The native engine fails a transfer or a connect when its
 * `timeoutMs` passes (on its own thread, where it can also withdraw the operations it posted), and
 * the loopback engine does the same with a timer. The agent arms a backstop a grace period later:
 * it settles the operation only if the engine could not (an engine thread that is stuck or starved),
 * so that no promise the agent handed out can stay pending for ever. A wait for a notification has
 * no engine behind it: its own timer is its deadline (lib/transport/notifications.ts).
 *
 * @packageDocumentation
 */

/** How long after a transfer's deadline the agent's backstop cancels it (the engine's error comes first). */
export const TRANSFER_BACKSTOP_GRACE_MS = 1000;

/** How long after a connect's deadline the agent's backstop fails it (the engine's error comes first). */
export const CONNECT_BACKSTOP_GRACE_MS = 2000;

/** Deadline of a connect that gives none. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** What {@link armDeadline} arms. */
export interface DeadlineOptions {
  /** When `onTimeout` runs, in ms from now (undefined: no timer). */
  readonly afterMs: number | undefined;
  readonly onTimeout: () => void;
  /** When it aborts, `onAbort` runs. */
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
  /**
   * True: the timer alone keeps the process alive (a wait nothing else holds open). False (a
   * backstop): the engine's own ref holds the process while the operation is pending.
   */
  readonly holdsProcess: boolean;
}

/** Arms a timer and an abort listener for one operation; returns the function that disarms both. */
export function armDeadline(o: DeadlineOptions): () => void {
  const timer = o.afterMs === undefined ? undefined : setTimeout(o.onTimeout, o.afterMs);
  if (timer !== undefined && !o.holdsProcess) timer.unref();
  o.signal?.addEventListener('abort', o.onAbort, { once: true });
  return () => {
    if (timer !== undefined) clearTimeout(timer);
    o.signal?.removeEventListener('abort', o.onAbort);
  };
}
