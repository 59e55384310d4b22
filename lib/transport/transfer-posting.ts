/**
 * The transfer-posting path: descriptor lists validated and flattened (or rows of a prepared list
 * picked), handed to the engine, and tracked until they settle and, later, quiesce.
 *
 * The engine copies a posted list before `post()` returns, so one scratch array serves every
 * columns-form call: no 650 KB allocation (and its garbage) per 16k-descriptor READ.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { nowNs } from '../util/clock.js';
import { invalid } from './arguments.js';
import { TRANSFER_BACKSTOP_GRACE_MS, armDeadline } from './deadline.js';
import { RowScratch, STRIDE, flattenDescriptors, selectRows } from './descriptors.js';
import type { FlatDescriptors } from './descriptors.js';
import type { Engine, EngineTiming } from './engine.js';
import type { KeepAlive } from './keep-alive.js';
import type { Peer } from './peer.js';
import type { Region, RemoteRegion } from './region.js';
import { PreparedTransfer, Transfer } from './transfer.js';
import type { PreparedHost, TransferHost } from './transfer.js';
import type { CheckedTransferOptions } from './transfer-options.js';
import type { DescriptorInput, TransferOp } from './types.js';

/**
 * The rows of the prepared transfer being posted: one array for every agent of this thread, as
 * the engines copy a posted list before `post()` returns and nothing posts in between.
 */
const ROWS = new RowScratch();

/** Posts an agent's transfers and tracks them until they settle and quiesce. @internal */
export class TransferPoster implements TransferHost {
  readonly #engine: Pick<Engine, 'post' | 'cancel'>;
  readonly #keepAlive: KeepAlive;
  readonly #defaultTimeoutMs: number;
  /** True once the agent closed: the engine is gone and must not be called. */
  readonly #closed: () => boolean;
  /** Posted and not settled. */
  readonly #pending = new Map<number, Transfer>();
  /** Posted and not yet reported quiet by the engine (settled or not). */
  readonly #unquiesced = new Map<number, Transfer>();
  #nextId = 1;
  #scratch = new Float64Array(0);

  constructor(
    engine: Pick<Engine, 'post' | 'cancel'>,
    keepAlive: KeepAlive,
    defaultTimeoutMs: number,
    closed: () => boolean,
  ) {
    this.#engine = engine;
    this.#keepAlive = keepAlive;
    this.#defaultTimeoutMs = defaultTimeoutMs;
    this.#closed = closed;
  }

  /** Transfers posted and not settled. */
  get pending(): number {
    return this.#pending.size;
  }

  /** Validates and flattens one READ's or WRITE's lists (into the scratch array for columns). */
  flatten(
    op: TransferOp,
    owner: object,
    peer: Peer,
    local: DescriptorInput<Region>,
    remote: DescriptorInput<RemoteRegion>,
    coalesce: boolean,
  ): FlatDescriptors {
    const n = columnsCount(local);
    if (n * STRIDE > this.#scratch.length && n <= 1 << 24)
      this.#scratch = new Float64Array(Math.max(64 * STRIDE, 2 ** Math.ceil(Math.log2(n * STRIDE))));
    return flattenDescriptors(op, owner, peer, peer.name, local, remote, coalesce, this.#scratch);
  }

  /**
   * Posts a validated list; the deadline is `opts.timeoutMs`, else the agent's default. Throws
   * `ERR_KVWIRE_CANCELLED` when `opts.signal` is aborted already (nothing is posted then).
   */
  post(op: TransferOp, peer: Peer, flat: FlatDescriptors, opts: CheckedTransferOptions, startNs: number): Transfer {
    const timeoutMs = opts.timeoutMs ?? this.#defaultTimeoutMs;
    if (opts.signal?.aborted)
      throw new KvwireError(ErrorCode.CANCELLED, 'the transfer was aborted before it was posted');
    const id = this.#nextId++;
    const t = new Transfer(this, id, op, flat.bytes, flat.given, flat.count, startNs, peer.transport);
    const postedNs = nowNs();
    const alone = this.#pending.size === 0;
    const doneNs = this.#engine.post(id, op === 'write' ? 1 : 0, peer.id, flat.flat, opts.notify, timeoutMs, alone);
    if (doneNs !== 0) {
      t.completeInline(postedNs, doneNs); // moved on this thread: complete (and quiet) now
      return t;
    }
    t.markPrepared(postedNs);
    this.#pending.set(id, t);
    this.#unquiesced.set(id, t);
    this.#keepAlive.adjust(1);
    const disarm = armDeadline({
      afterMs: timeoutMs + TRANSFER_BACKSTOP_GRACE_MS,
      onTimeout: () =>
        this.cancelTransfer(t, ErrorCode.TIMEOUT, `transfer ${id} did not complete within ${timeoutMs} ms`),
      signal: opts.signal,
      onAbort: () => this.cancelTransfer(t, ErrorCode.CANCELLED, 'the transfer was aborted'),
      holdsProcess: false,
    });
    t.onSettle = () => {
      disarm();
      this.#pending.delete(id);
      this.#keepAlive.adjust(-1);
    };
    return t;
  }

  /** @internal Fails `t` with `code` now; the engine withdraws what it can of it. */
  cancelTransfer(t: Transfer, code: string, message: string): void {
    if (!t.pending) return;
    if (!this.#closed()) this.#engine.cancel(t.id, code);
    t.settle(KvwireError.fromCode(code, message));
  }

  /** The engine finished transfer `id`; `inFlight` operations of it still run (quiesced follows). */
  done(id: number, error: KvwireError | undefined, timing: EngineTiming, inFlight: number): void {
    this.#pending.get(id)?.settle(error, timing);
    if (inFlight === 0) this.quiesced(id);
  }

  /** No operation of transfer `id` can touch its memory any more. */
  quiesced(id: number): void {
    const t = this.#unquiesced.get(id);
    if (t === undefined) return;
    this.#unquiesced.delete(id);
    t.markQuiesced();
  }

  /** The engine is closed (it delivered what it failed): the rest fail with `ERR_KVWIRE_CLOSED`. */
  closeAll(): void {
    for (const t of [...this.#pending.values()])
      t.settle(new KvwireError(ErrorCode.CLOSED, 'the agent was closed while this transfer was in flight'));
    for (const t of this.#unquiesced.values()) t.markQuiesced(); // the engine is gone: nothing runs
    this.#unquiesced.clear();
  }
}

/**
 * A list validated once against `peer` for both directions' bounds (access is checked per post,
 * cheaply: per region), ready to post all or any rows of, many times.
 */
export function prepareList(
  host: PreparedHost,
  owner: object,
  peer: Peer,
  local: DescriptorInput<Region>,
  remote: DescriptorInput<RemoteRegion>,
  localRegion: (id: number) => Region | undefined,
): PreparedTransfer {
  const flat = flattenDescriptors(undefined, owner, peer, peer.name, local, remote, false);
  const localRegions = new Set<Region>();
  const remoteRegions = new Set<RemoteRegion>();
  for (let i = 0; i < flat.flat.length; i += STRIDE) {
    localRegions.add(localRegion(flat.flat[i]!)!);
    remoteRegions.add(peer.regionById(flat.flat[i + 2]!)!);
  }
  return new PreparedTransfer(host, peer, flat.flat, flat.bytes, [...localRegions], [...remoteRegions]);
}

/**
 * The rows of prepared list `p` to post as `op` (all when `indices` is undefined), after checking
 * that every region it names is still registered, not revoked, and open to `op`.
 */
export function preparedRows(
  p: PreparedTransfer,
  op: TransferOp,
  peerName: string,
  indices: ArrayLike<number> | undefined,
  coalesce: boolean,
): FlatDescriptors {
  // Indexed loops: a for-of's iterator is an allocation per loop until the code is optimized.
  const locals = p.localRegions;
  for (let i = 0; i < locals.length; i++) {
    const r = locals[i]!;
    if (!r.registered)
      throw new KvwireError(
        ErrorCode.DEREGISTERED,
        `${r} was deregistered since the list was prepared; prepare it again`,
      );
  }
  const remotes = p.remoteRegions as readonly RemoteRegion[];
  const need = op === 'read' ? 'read' : 'write';
  for (let i = 0; i < remotes.length; i++) {
    const r = remotes[i]!;
    if (r.revoked)
      throw new KvwireError(ErrorCode.DEREGISTERED, `peer '${peerName}' deregistered ${r} since the list was prepared`);
    if (r.access !== 'readwrite' && r.access !== need) {
      throw new KvwireError(
        ErrorCode.ACCESS_DENIED,
        `${r} of peer '${peerName}' allows ${r.access} access, so it cannot be ${op === 'read' ? 'read' : 'written'}`,
      );
    }
  }
  if (indices === undefined) {
    // The whole list: coalesced once, reused by every post (engines never modify it).
    return coalesce
      ? (p.allCoalesced ??= selectRows(p.flat, allIndices(p.length), true))
      : { flat: p.flat, count: p.length, bytes: p.bytes, given: p.length };
  }
  if (!Array.isArray(indices) && !ArrayBuffer.isView(indices)) {
    invalid('indices', 'an array (or typed array) of descriptor indices', indices);
  }
  return selectRows(p.flat, indices, coalesce, ROWS);
}

function allIndices(n: number): Uint32Array {
  const all = new Uint32Array(n);
  for (let i = 0; i < n; i++) all[i] = i;
  return all;
}

/** The descriptor count of columns input (0 for an array: no scratch array is needed for it). */
function columnsCount(input: unknown): number {
  if (Array.isArray(input) || input === null || typeof input !== 'object') return 0;
  const c = input as { count?: unknown; region?: unknown };
  if (typeof c.count === 'number' && Number.isSafeInteger(c.count) && c.count >= 0) return c.count;
  return c.region instanceof Uint32Array ? c.region.length : 0;
}
