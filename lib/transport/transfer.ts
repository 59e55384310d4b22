/**
 * Transfers: one posted READ or WRITE ({@link Transfer}), and prepared descriptor lists that post
 * subsets by index many times ({@link PreparedTransfer}).
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import { STRIDE } from './descriptors.js';
import type { FlatDescriptors } from './descriptors.js';
import type { EngineTiming } from './engine.js';
import type { TransferOp, TransferOptions, TransferStats, TransferStatus, TransportCategory } from './types.js';

/** The quiesced promise of every transfer that was quiet before anyone asked. */
const QUIET: Promise<void> = Promise.resolve();

/** What a Transfer needs from its agent. @internal */
export interface TransferHost {
  /** @internal */
  cancelTransfer(t: Transfer, code: string, message: string): void;
}

/**
 * What only some transfers need, made on first use: the pending `done` promise and its settlers,
 * the `quiesced` promise and its resolver. A transfer the engine completes inside `read()`/`write()`
 * whose caller reads `stats` never has one.
 */
interface Waiters {
  done: Promise<TransferStats> | undefined;
  resolve: ((s: TransferStats) => void) | undefined;
  reject: ((e: KvwireError) => void) | undefined;
  quiesced: Promise<void> | undefined;
  resolveQuiesced: (() => void) | undefined;
}

/**
 * One READ or WRITE in flight. `done` resolves with its telemetry when every byte is in place
 * (and its notification sent), or rejects with a {@link KvwireError}; a rejection nobody awaits
 * never crashes the process (check `status`/`error`).
 */
export class Transfer {
  /** Agent-local id. */
  readonly id: number;
  /** READ (pull) or WRITE (push). */
  readonly op: TransferOp;
  /** Total bytes. */
  readonly bytes: number;
  /** Descriptors as given. */
  readonly descriptors: number;
  /** Descriptors posted after coalescing. */
  readonly postedDescriptors: number;
  /** @internal cleanup run once when the transfer settles (timers, abort listeners). */
  onSettle: (() => void) | undefined;
  // Few fields on purpose: a small transfer's whole post is a few µs, and every field is a store
  // in the constructor, which runs unoptimized in a process's first thousands of transfers.
  #status: TransferStatus = 'pending';
  #isQuiesced = false;
  /** The telemetry once done (made when first asked for), the error once failed. */
  #result: TransferStats | KvwireError | undefined;
  /** When it was posted and done (engine clock, ns): the telemetry is made from them on demand. */
  #postedNs = 0;
  #doneNs = 0;
  #waiters: Waiters | undefined;
  readonly #host: TransferHost;
  readonly #startNs: number;
  #prepNs = 0;
  readonly #transport: TransportCategory;

  /** @internal Created by the agent. */
  constructor(
    host: TransferHost,
    id: number,
    op: TransferOp,
    bytes: number,
    descriptors: number,
    posted: number,
    startNs: number,
    transport: TransportCategory,
  ) {
    this.#host = host;
    this.id = id;
    this.op = op;
    this.bytes = bytes;
    this.descriptors = descriptors;
    this.postedDescriptors = posted;
    this.#startNs = startNs;
    this.#transport = transport;
  }

  #ensureWaiters(): Waiters {
    return (this.#waiters ??= {
      done: undefined,
      resolve: undefined,
      reject: undefined,
      quiesced: undefined,
      resolveQuiesced: undefined,
    });
  }

  /**
   * Settles when the transfer completes or fails. A rejection nobody awaits never crashes the
   * process. (Made on first use: a transfer the engine completed inside `read()`/`write()` costs
   * one resolved promise, not three pending ones and their callbacks, on a path of a few µs.)
   */
  get done(): Promise<TransferStats> {
    const w = this.#ensureWaiters();
    if (w.done === undefined) {
      const r = this.#result;
      if (this.#status === 'done') {
        w.done = Promise.resolve(this.#stats());
      } else if (r !== undefined) {
        w.done = Promise.reject(r as KvwireError);
        w.done.catch(() => {}); // observed through status/error when nobody awaits
      } else {
        w.done = new Promise<TransferStats>((resolve, reject) => {
          w.resolve = resolve;
          w.reject = reject;
        });
        w.done.catch(() => {}); // observed through status/error when nobody awaits
      }
    }
    return w.done;
  }

  /**
   * Resolves once no operation of this transfer can touch its memory any more. For a completed
   * transfer that is when `done` resolves; after cancel(), a timeout or a failure, operations
   * already handed to the transport may still be running, and this says when they are not: only
   * then may the destination memory be reused for something else.
   */
  get quiesced(): Promise<void> {
    const w = this.#ensureWaiters();
    if (w.quiesced === undefined) {
      w.quiesced = this.#isQuiesced
        ? QUIET
        : new Promise<void>((resolve) => {
            w.resolveQuiesced = resolve;
          });
    }
    return w.quiesced;
  }

  /**
   * The telemetry of a completed transfer (what `done` resolves with), without waiting: undefined
   * while pending and after a failure. A transfer that `read()`/`write()` completed inline (small,
   * same host) has it as soon as the call returns.
   */
  get stats(): TransferStats | undefined {
    return this.#status === 'done' ? this.#stats() : undefined;
  }

  /**
   * The telemetry of a done transfer, made once, when first asked for: a caller that never reads it
   * (most of a hot path's transfers) never pays for an object of thirteen fields.
   */
  #stats(): TransferStats {
    return (this.#result ??= this.#statsOf(this.#postedNs, this.#doneNs)) as TransferStats;
  }

  /** @internal */
  markQuiesced(): void {
    if (this.#isQuiesced) return;
    this.#isQuiesced = true;
    this.#waiters?.resolveQuiesced?.();
  }

  /** 'pending', 'done', 'failed' or 'cancelled'. */
  get status(): TransferStatus {
    return this.#status;
  }

  /** Why it failed, once it did. */
  get error(): KvwireError | undefined {
    return this.#status === 'failed' || this.#status === 'cancelled' ? (this.#result as KvwireError) : undefined;
  }

  /** True while pending. */
  get pending(): boolean {
    return this.#status === 'pending';
  }

  /**
   * Cancels the transfer: `done` rejects with `ERR_KVWIRE_CANCELLED` at once. Operations already
   * handed to the transport may still complete, so the destination bytes are undefined; the
   * regions it uses stay busy until those operations are gone. No-op once settled.
   */
  cancel(reason = 'the transfer was cancelled'): void {
    if (this.#status !== 'pending') return;
    this.#host.cancelTransfer(this, ErrorCode.CANCELLED, reason);
  }

  /** @internal Marks the end of JS-side preparation. */
  markPrepared(nowNs: number): void {
    this.#prepNs = nowNs - this.#startNs;
  }

  /**
   * @internal The engine moved every byte inside its post call, which began at `postNs` and
   * returned at `doneNs`: done and quiet at once (nobody can be waiting on a promise yet). The call
   * is its post time; it waited for no completion.
   */
  completeInline(postNs: number, doneNs: number): void {
    this.#prepNs = postNs - this.#startNs;
    this.#status = 'done';
    this.#isQuiesced = true;
    this.#postedNs = doneNs;
    this.#doneNs = doneNs;
  }

  /** @internal Settles the transfer once; later calls are ignored. */
  settle(error: KvwireError | undefined, timing?: EngineTiming): boolean {
    if (this.#status !== 'pending') return false;
    const cleanup = this.onSettle;
    this.onSettle = undefined;
    cleanup?.();
    if (error !== undefined) {
      this.#status = error.code === ErrorCode.CANCELLED ? 'cancelled' : 'failed';
      this.#result = error;
      this.#waiters?.reject?.(error);
      return true;
    }
    const prepEnd = this.#startNs + this.#prepNs;
    this.#postedNs = timing === undefined ? prepEnd : Math.max(timing.postedNs, prepEnd);
    this.#doneNs = timing === undefined ? this.#postedNs : Math.max(timing.doneNs, this.#postedNs);
    this.#status = 'done';
    const resolve = this.#waiters?.resolve;
    if (resolve !== undefined) resolve(this.#stats());
    return true;
  }

  #statsOf(postedAt: number, doneNs: number): TransferStats {
    const startNs = this.#startNs;
    const durationMs = (doneNs - startNs) / 1e6;
    return {
      op: this.op,
      bytes: this.bytes,
      descriptors: this.descriptors,
      postedDescriptors: this.postedDescriptors,
      startedAt: startNs / 1e6,
      postedAt: postedAt / 1e6,
      completedAt: doneNs / 1e6,
      prepMs: this.#prepNs / 1e6,
      postMs: (postedAt - startNs - this.#prepNs) / 1e6,
      completionMs: (doneNs - postedAt) / 1e6,
      durationMs,
      gbps: durationMs > 0 ? this.bytes / (durationMs * 1e6) : 0,
      transport: this.#transport,
    };
  }
}

/** What a PreparedTransfer needs from its agent. @internal */
export interface PreparedHost {
  /** @internal */
  postPrepared(
    p: PreparedTransfer,
    op: TransferOp,
    indices: ArrayLike<number> | undefined,
    opts: TransferOptions | undefined,
  ): Transfer;
}

/**
 * A descriptor list validated once against a peer (NIXL's prepXferDlist + makeXferReq): post all
 * of it, or any subset by index, as READ or WRITE, many times, without validating the regions
 * again. Created by {@link Agent.prepare}.
 */
export class PreparedTransfer {
  /** Number of descriptors (indices run from 0 to length - 1). */
  readonly length: number;
  /** Total bytes of all descriptors. */
  readonly bytes: number;
  /** The peer it was prepared for. */
  readonly peer: object;
  /** @internal validated rows ({@link STRIDE} numbers each), as given (not coalesced: indices refer to them). */
  readonly flat: Float64Array;
  /** @internal the whole list, coalesced, computed at the first post of all of it. */
  allCoalesced: FlatDescriptors | undefined;
  /** @internal the distinct regions it names, re-checked (cheaply) at each post. */
  readonly localRegions: readonly { registered: boolean; toString(): string }[];
  /** @internal */
  readonly remoteRegions: readonly { revoked: boolean; toString(): string }[];
  readonly #host: PreparedHost;

  /** @internal */
  constructor(
    host: PreparedHost,
    peer: object,
    flat: Float64Array,
    bytes: number,
    localRegions: readonly { registered: boolean; toString(): string }[],
    remoteRegions: readonly { revoked: boolean; toString(): string }[],
  ) {
    this.#host = host;
    this.peer = peer;
    this.flat = flat;
    this.length = flat.length / STRIDE;
    this.bytes = bytes;
    this.localRegions = localRegions;
    this.remoteRegions = remoteRegions;
  }

  /** READs the descriptors at `indices` (all when omitted). */
  read(indices?: ArrayLike<number>, opts?: TransferOptions): Transfer {
    return this.#host.postPrepared(this, 'read', indices, opts);
  }

  /** WRITEs the descriptors at `indices` (all when omitted). */
  write(indices?: ArrayLike<number>, opts?: TransferOptions): Transfer {
    return this.#host.postPrepared(this, 'write', indices, opts);
  }

  /** Posts `op` on the descriptors at `indices` (all when omitted). */
  post(op: TransferOp, indices?: ArrayLike<number>, opts?: TransferOptions): Transfer {
    if (op !== 'read' && op !== 'write') {
      throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `op must be 'read' or 'write', not ${describeValue(op)}`);
    }
    return this.#host.postPrepared(this, op, indices, opts);
  }
}
