/**
 * One row of the sweep, measured: `batch` descriptors of `size` bytes, READ or WRITE, posted by
 * index from a prepared list (the fast path), `inflight` transfers kept in flight.
 *
 * Descriptor i of slot s covers bytes `[s·size·batch + i·size, +size)` on both sides, and is
 * posted with `coalesce: false`: adjacent descriptors stay separate, so the row measures `batch`
 * descriptors per transfer, as nixlbench's batches do, rather than one merged range.
 *
 * Per transfer it records the engine's telemetry: prep (JS validation and marshalling), post
 * (handing operations to the engine), completion (last post until done) and total latency; GB/s
 * is the row's bytes over its wall time.
 *
 * With `check`, every transfer (warmups included) is verified: the destination ranges are
 * poisoned before it, then compared with the pattern the source holds, then restored. The pauses
 * for that are not counted in the row's wall time.
 *
 * @packageDocumentation
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { KvwireError } from '../../lib/errors.js';
import type { Agent } from '../../lib/transport/agent.js';
import type { Peer } from '../../lib/transport/peer.js';
import type { Region, RemoteRegion } from '../../lib/transport/region.js';
import type { PreparedTransfer, Transfer } from '../../lib/transport/transfer.js';
import type { TargetLink } from './link.js';
import { poisonIn, verifyIn } from './memory.js';
import { BytePattern, ENTRY_STRIDE, entryBytes } from './pattern.js';
import type { Mismatch, VerifyEntries } from './pattern.js';
import type { PlannedRow } from './plan.js';
import { slotsFor, transferBytes } from './plan.js';
import type { MismatchJson, SweepRowJson } from './schema.js';
import { EMPTY_DISTRIBUTION, Samples } from '../stats.js';

/**
 * Collects the garbage before a row's warmup. A freshly started bench process has the garbage of
 * its start (loading modules, connecting, registering, filling the pattern) to collect; left alone,
 * V8 collects it whenever the old generation asks, and a major collection (2-6 ms with its
 * concurrent marking) landing inside a 1,000-transfer row of 4 KiB (3-4 ms) doubled that row in
 * some runs and not in others. Before the warmup, not between warmup and timed iterations (tried,
 * 427ef00): the concurrent sweeping that follows a collection then runs during the warmup. A pause
 * after it (30 ms, tried) left tcp 4 KiB rows slower: 0.18 against 0.22 GB/s (medians of seven).
 */
function collectGarbage(): void {
  gc ??= exposeGc();
  gc();
}
let gc: (() => void) | undefined;
function exposeGc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** What a row runs against: a connected pair and their regions. */
export interface RowEnv {
  readonly agent: Agent;
  readonly peer: Peer;
  readonly local: Region;
  readonly remote: RemoteRegion;
  readonly target: TargetLink;
  readonly pattern: BytePattern;
  /** Pattern salt of the initiator's region and of the target's. */
  readonly localSalt: number;
  readonly remoteSalt: number;
  readonly inflight: number;
  readonly check: boolean;
  /** Seconds per row instead of an iteration count. */
  readonly durationS: number | undefined;
  /** Stop after this many seconds once 2 transfers were measured (0: never). */
  readonly rowCapS: number;
  /** Every descriptor addresses block 0 on both sides (ucx_perftest's one-buffer access pattern). */
  readonly sameBlock?: boolean;
  /** Called after every completed transfer (for the progress bar). */
  readonly onTransfer?: (done: number) => void;
}

/**
 * Telemetry kept in the timed loop before it is summarized (a long row summarizes as it goes).
 * Few enough that the kept objects rarely outlive a young-generation collection: with 65,536, a
 * 200,000-transfer row of 4 KiB spent its time copying them (1.2 -> 0.85 µs per transfer with
 * allocated memory); a matrix row of 1,000 still summarizes after its loop.
 */
const KEEP_STATS = 1 << 10;
/** The progress bar is told of every this-many transfers (and of the last). */
const PROGRESS_EVERY = 64;

/** Deadline of one transfer: generous (20 MB/s plus 10 s), since a row must fail, never hang. */
export function transferTimeoutMs(bytes: number): number {
  return Math.ceil(10_000 + bytes / 20_000);
}

interface Slot {
  readonly prepared: PreparedTransfer;
  /** Destination ranges and the pattern they must then hold. */
  readonly entries: VerifyEntries;
}

function buildSlots(env: RowEnv, row: PlannedRow, slots: number): Slot[] {
  const { size, batch } = row;
  const out: Slot[] = [];
  for (let s = 0; s < slots; s++) {
    const region = new Uint32Array(batch);
    const offset = new Float64Array(batch);
    const length = new Float64Array(batch).fill(size);
    const entries = new Float64Array(batch * ENTRY_STRIDE);
    for (let i = 0; i < batch; i++) {
      const off = env.sameBlock === true ? 0 : s * size * batch + i * size;
      offset[i] = off;
      // READ lands in the initiator's region with the target's bytes; WRITE the other way round.
      entries.set([0, off, size, row.op === 'read' ? env.remoteSalt : env.localSalt, off], i * ENTRY_STRIDE);
    }
    const prepared = env.agent.prepare(
      env.peer,
      { regions: [env.local], region, offset, length },
      { regions: [env.remote], region, offset, length },
    );
    out.push({ prepared, entries });
  }
  return out;
}

/** A row result with no transfers (failed before the first, or skipped). */
export function emptyRow(
  row: PlannedRow,
  inflight: number,
  status: 'failed' | 'skipped',
  error: string,
  code: string | null,
): SweepRowJson {
  return {
    op: row.op,
    transport: row.transport,
    blockSize: row.size,
    batch: row.batch,
    inflight,
    status,
    error,
    errorCode: code,
    iterations: 0,
    warmup: 0,
    bytes: 0,
    elapsedS: 0,
    gbps: 0,
    latencyUs: EMPTY_DISTRIBUTION,
    prepUs: EMPTY_DISTRIBUTION,
    postUs: EMPTY_DISTRIBUTION,
    completionUs: EMPTY_DISTRIBUTION,
    descriptors: 0,
    checked: false,
    verifiedBytes: 0,
    mismatch: null,
    baseline: null,
    ratios: null,
  };
}

function nowS(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Runs one planned row; never throws (a failure is a row with status 'failed'). */
export async function runRow(env: RowEnv, row: PlannedRow): Promise<SweepRowJson> {
  const bytes = transferBytes(row.size, row.batch);
  let slots: Slot[];
  try {
    slots = buildSlots(env, row, slotsFor(row.size, row.batch, env.inflight, env.local.length));
  } catch (e) {
    return emptyRow(
      row,
      env.inflight,
      'failed',
      `could not prepare the descriptors: ${(e as Error).message}`,
      codeOf(e),
    );
  }
  const indices = new Uint32Array(row.batch).map((_, i) => i);
  const opts = { coalesce: false, timeoutMs: transferTimeoutMs(bytes) };
  const lat = new Samples(row.iterations ?? 1024);
  const prep = new Samples(row.iterations ?? 1024);
  const post = new Samples(row.iterations ?? 1024);
  const completion = new Samples(row.iterations ?? 1024);
  let posted = 0;
  let descriptors = 0;
  let failure: { message: string; code: string | null } | undefined;
  let mismatch: MismatchJson | undefined;
  let verified = 0;
  let transfers = 0;

  // The timed loop keeps each transfer's telemetry as it is and moves on, as nixlbench records
  // nothing per transfer: the four latency columns are filled from it after the loop (or every
  // KEEP_STATS transfers, in long rows), and the progress bar hears of every PROGRESS_EVERY-th.
  const kept: Transfer[] = [];
  const drain = (): void => {
    for (let k = 0; k < kept.length; k++) {
      const s = kept[k]!.stats!;
      lat.add(s.durationMs * 1000);
      prep.add(s.prepMs * 1000);
      post.add(s.postMs * 1000);
      completion.add(s.completionMs * 1000);
    }
    if (kept.length > 0) descriptors = kept[kept.length - 1]!.postedDescriptors;
    kept.length = 0;
  };
  // Done transfers are kept whole, their telemetry read after the loop (Transfer makes it on
  // demand), so the timed loop makes no object per transfer beyond the Transfer itself.
  const note = (s: Transfer, record: boolean): void => {
    const done = ++transfers;
    if (record) {
      kept.push(s);
      if (kept.length === KEEP_STATS) drain();
    } else {
      descriptors = s.postedDescriptors;
    }
    if (done % PROGRESS_EVERY === 0) env.onTransfer?.(done);
  };
  // A transfer completed inside post() (small, same host: copied by this thread) is done at once,
  // and the next is posted without a trip through the microtask queue, as nixlbench checks a
  // request's state right after posting it; any other is awaited.
  const one = async (slot: Slot, record: boolean): Promise<void> => {
    const t = slot.prepared.post(row.op, indices, opts);
    if (t.status !== 'done') await t.done;
    note(t, record);
  };

  const verifyWave = async (wave: readonly Slot[], first: number): Promise<void> => {
    for (let k = 0; k < wave.length && mismatch === undefined; k++) {
      const entries = wave[k]!.entries;
      let m: Mismatch | null | undefined;
      if (row.op === 'read') m = verifyIn(env.pattern, [env.local], entries, [env.localSalt]);
      else m = await env.target.verify(entries, true);
      verified += entryBytes(entries);
      if (m) mismatch = { side: row.op === 'read' ? 'initiator' : 'target', ...m, transfer: first + k };
    }
  };

  const poisonWave = async (wave: readonly Slot[]): Promise<void> => {
    for (const slot of wave) {
      if (row.op === 'read') poisonIn(env.pattern, [env.local], slot.entries);
      else await env.target.poison(slot.entries);
    }
  };

  let elapsed = 0;
  collectGarbage();
  try {
    if (env.check) {
      // Waves of `slots.length` transfers: poison, post all, await all, verify (not timed).
      const run = async (count: number | undefined, record: boolean): Promise<void> => {
        const start = nowS();
        while (mismatch === undefined) {
          const t = nowS();
          if (count !== undefined ? posted >= count : t - start >= env.durationS!) break;
          if (record && env.rowCapS > 0 && t - start > env.rowCapS && posted >= 2) break;
          const n = count !== undefined ? Math.min(slots.length, count - posted) : slots.length;
          const wave = slots.slice(0, n);
          await poisonWave(wave);
          const first = transfers;
          const t0 = nowS();
          posted += n;
          const results = await Promise.allSettled(wave.map((s) => one(s, record)));
          const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
          if (bad !== undefined) throw bad.reason;
          if (record) elapsed += nowS() - t0;
          await verifyWave(wave, first);
        }
      };
      await run(row.warmup, false);
      posted = 0;
      await run(row.iterations, true);
    } else {
      // Keep `inflight` transfers in flight: each worker posts its next as its last completes.
      const run = async (count: number | undefined, record: boolean): Promise<number> => {
        const start = nowS();
        let issued = 0;
        const more = () => {
          if (count !== undefined) {
            if (issued >= count) return false;
          } else if (nowS() - start >= env.durationS!) {
            return false;
          }
          if (record && env.rowCapS > 0 && issued >= 2 && nowS() - start > env.rowCapS) return false;
          issued++;
          return true;
        };
        const worker = async (slot: Slot) => {
          while (more()) {
            const t = slot.prepared.post(row.op, indices, opts);
            if (t.status !== 'done') await t.done;
            note(t, record);
          }
        };
        // Where the region holds fewer disjoint slots than transfers in flight, workers share them.
        const results = await Promise.allSettled(
          Array.from({ length: env.inflight }, (_, w) => worker(slots[w % slots.length]!)),
        );
        const bad = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (bad !== undefined) throw bad.reason;
        return nowS() - start;
      };
      await run(row.warmup, false);
      elapsed = await run(row.iterations, true);
    }
  } catch (e) {
    failure = { message: (e as Error).message, code: codeOf(e) };
  }
  drain();
  env.onTransfer?.(transfers);
  const n = lat.length;
  const moved = n * bytes;
  if (mismatch !== undefined) {
    failure = { message: `corrupted: ${describe(mismatch)}`, code: 'ERR_KVWIRE_CORRUPTED' };
  }
  return {
    op: row.op,
    transport: row.transport,
    blockSize: row.size,
    batch: row.batch,
    inflight: env.inflight,
    status: failure === undefined ? 'ok' : 'failed',
    error: failure?.message ?? null,
    errorCode: failure?.code ?? null,
    iterations: n,
    warmup: row.warmup,
    bytes: moved,
    elapsedS: elapsed,
    gbps: elapsed > 0 ? moved / elapsed / 1e9 : 0,
    latencyUs: lat.summary(),
    prepUs: prep.summary(),
    postUs: post.summary(),
    completionUs: completion.summary(),
    descriptors,
    checked: env.check,
    verifiedBytes: verified,
    mismatch: mismatch ?? null,
    baseline: null,
    ratios: null,
  };
}

function codeOf(e: unknown): string | null {
  return e instanceof KvwireError
    ? e.code
    : typeof (e as { code?: unknown })?.code === 'string'
      ? (e as { code: string }).code
      : null;
}

/** A mismatch as a sentence. */
export function describe(m: MismatchJson): string {
  const hex = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;
  return `transfer ${m.transfer}, descriptor ${m.descriptor}, byte ${m.byteInDescriptor} (offset ${m.offset.toLocaleString('en-US')} of the ${m.side}'s region ${m.region}): expected ${hex(m.expected)}, found ${hex(m.actual)}`;
}
