/**
 * Per-worker event ordering: batches that carry a sequence number apply in that order, exactly once.
 *
 * The backend checks each numbered batch against the worker's last applied number atomically (in
 * memory, or inside the Redis script, so that several router replicas share one ordering):
 * - `seq <= last`: a duplicate (a retry, a replay), ignored;
 * - `seq == last + 1` (or the worker's first number): applied;
 * - `seq > last + 1`: a gap. The batch waits here, and is applied as soon as the missing ones
 *   arrive. If they have not arrived after `gapTimeoutMs`, or more than `maxPending` batches wait,
 *   the lowest waiting batch is applied anyway (the gap is skipped and counted), then the rest in
 *   order. A lost event can only make the index miss blocks, which engines' later events repair;
 *   waiting forever would stop the worker's updates.
 *
 * Batches without a number (direct calls from our own coordinators) apply in call order.
 *
 * @packageDocumentation
 */
import type { ApplyOutcome, IndexOp } from './types.js';
import type { BatchStatus } from './metrics.js';

/** How the sequencer applies a batch (the backend's `apply`). */
export type ApplyFn = (
  worker: string,
  seq: number | undefined,
  force: boolean,
  ops: readonly IndexOp[],
) => Promise<ApplyOutcome>;

/** Options of {@link EventSequencer}. */
export interface SequencerOptions {
  /** How long a batch waits for a missing predecessor, in ms. */
  readonly gapTimeoutMs: number;
  /** Most batches waiting per worker. */
  readonly maxPending: number;
  /** Called with every outcome that applied something, and with every batch status. */
  readonly onApplied: (outcome: ApplyOutcome, ops: readonly IndexOp[]) => void;
  /** Called with the status of every batch. */
  readonly onBatch: (status: BatchStatus) => void;
}

/** What happened to a submitted batch. */
export interface SubmitResult {
  /** `applied`, `duplicate` (already applied: ignored) or `buffered` (waiting for a missing batch). */
  readonly status: 'applied' | 'duplicate' | 'buffered';
  /** The backend's outcome, when the batch was applied now. */
  readonly outcome?: ApplyOutcome;
}

interface Waiting {
  readonly batches: Map<number, readonly IndexOp[]>;
  timer: NodeJS.Timeout | undefined;
  draining: boolean;
  again: boolean;
}

/** See the module documentation. */
export class EventSequencer {
  private readonly waiting = new Map<string, Waiting>();
  private closed = false;

  /**
   * @param apply - applies a batch (the backend's `apply`).
   * @param options - timeouts, bounds and callbacks.
   */
  constructor(
    private readonly apply: ApplyFn,
    private readonly options: SequencerOptions,
  ) {}

  /** Batches waiting for a missing predecessor, over all workers. */
  get pending(): number {
    let n = 0;
    for (const w of this.waiting.values()) n += w.batches.size;
    return n;
  }

  /**
   * Applies `ops` for `worker` now, or buffers them until their turn (see the module docs).
   * The backend call is issued before this returns its promise, so calls keep their order.
   * With `force`, a batch beyond a gap applies at once (its sender knows the gap cannot be filled).
   */
  async submit(worker: string, seq: number | undefined, ops: readonly IndexOp[], force = false): Promise<SubmitResult> {
    const outcome = await this.apply(worker, seq, force, ops);
    if (outcome.status === 'duplicate') {
      this.options.onBatch('duplicate');
      return { status: 'duplicate' };
    }
    if (outcome.status === 'applied') {
      this.options.onBatch('applied');
      this.options.onApplied(outcome, ops);
      await this.drain(worker);
      return { status: 'applied', outcome };
    }
    const w = this.waitingFor(worker);
    if (w.batches.has(seq!)) {
      this.options.onBatch('duplicate');
      return { status: 'duplicate' };
    }
    w.batches.set(seq!, ops);
    this.options.onBatch('buffered');
    if (w.batches.size > this.options.maxPending) await this.skipGap(worker);
    else this.arm(worker, w);
    return { status: 'buffered' };
  }

  /** Drops everything waiting for `worker` (it was removed). */
  forget(worker: string): void {
    const w = this.waiting.get(worker);
    if (w === undefined) return;
    clearTimeout(w.timer);
    for (let i = 0; i < w.batches.size; i++) this.options.onBatch('dropped');
    // A drain in flight holds `w`: emptied, it stops instead of applying a removed worker's batches.
    w.batches.clear();
    this.waiting.delete(worker);
  }

  /** Stops the timers and drops every waiting batch. */
  close(): void {
    this.closed = true;
    for (const worker of [...this.waiting.keys()]) this.forget(worker);
  }

  private waitingFor(worker: string): Waiting {
    let w = this.waiting.get(worker);
    if (w === undefined)
      this.waiting.set(worker, (w = { batches: new Map(), timer: undefined, draining: false, again: false }));
    return w;
  }

  private arm(worker: string, w: Waiting): void {
    if (w.timer !== undefined || this.closed) return;
    w.timer = setTimeout(() => {
      w.timer = undefined;
      // A failure here (Redis down) leaves the batches waiting; the timer tries again.
      this.skipGap(worker).catch(() => this.arm(worker, w));
    }, this.options.gapTimeoutMs);
    w.timer.unref();
  }

  private lowest(w: Waiting): number {
    let min = Infinity;
    for (const s of w.batches.keys()) if (s < min) min = s;
    return min;
  }

  /** Applies the lowest waiting batch even though its predecessor is missing, then the rest. */
  private async skipGap(worker: string): Promise<void> {
    const w = this.waiting.get(worker);
    if (w === undefined || w.batches.size === 0 || this.closed) return;
    const seq = this.lowest(w);
    const ops = w.batches.get(seq)!;
    const outcome = await this.apply(worker, seq, true, ops);
    w.batches.delete(seq);
    if (outcome.status === 'applied') {
      this.options.onBatch('gap_skipped');
      this.options.onApplied(outcome, ops);
    } else {
      this.options.onBatch('duplicate');
    }
    await this.drain(worker);
  }

  /** Applies waiting batches while each is the next one. */
  private async drain(worker: string): Promise<void> {
    const w = this.waiting.get(worker);
    if (w === undefined) return;
    if (w.draining) {
      // The running drain may be holding a stale "gap" answer for a batch that this caller's
      // batch has just made next: have it look again rather than wait for the timeout.
      w.again = true;
      return;
    }
    w.draining = true;
    try {
      do {
        w.again = false;
        while (w.batches.size > 0 && !this.closed) {
          const seq = this.lowest(w);
          const ops = w.batches.get(seq)!;
          const outcome = await this.apply(worker, seq, false, ops);
          if (outcome.status === 'gap') break;
          w.batches.delete(seq);
          this.options.onBatch(outcome.status === 'applied' ? 'applied' : 'duplicate');
          if (outcome.status === 'applied') this.options.onApplied(outcome, ops);
        }
      } while (w.again && w.batches.size > 0 && !this.closed);
    } finally {
      w.draining = false;
    }
    if (w.batches.size === 0) {
      clearTimeout(w.timer);
      if (this.waiting.get(worker) === w) this.waiting.delete(worker);
    } else {
      this.arm(worker, w);
    }
  }
}
