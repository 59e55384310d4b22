/**
 * The transfers of one pull: the block READs of every decode rank, then the lease fence — a
 * 16-byte READ of the request's lease slot that carries the done notification — and the check
 * of what the fence read.
 *
 * Why the fence: the prefill may free a lease (expiry, cancellation) while a decode worker still
 * reads its blocks, and the engine may reuse them at once. Block READs cannot tell. The fence is
 * posted only after every block READ completed; the prefill writes the slot's state before it
 * gives the blocks back to its engine; so if the fence still reads `[token, HELD]`, no reuse had
 * begun while the blocks were read, and the bytes are good. Otherwise the pull fails with
 * `ERR_KVWIRE_LEASE_EXPIRED` saying why the lease ended.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import type { Region, Transfer } from '../transport/index.js';
import type { KvCacheRank } from './cache.js';
import type { KvTransferParams } from './params.js';
import { LEASE_SLOT_BYTES, LeaseSlotState, encodeLeaseMessage } from './protocol.js';
import type { RemoteEngine } from './remote-engine.js';

/** The block READs of one pull, posted. */
export interface PostedReads {
  /** One per (decode rank, prefill rank source). */
  readonly transfers: Transfer[];
  /** Bytes they move. */
  readonly bytes: number;
  /** Descriptors without coalescing (blocks × tensors × slices). */
  readonly uncoalesced: number;
  /** Descriptors posted. */
  readonly posted: number;
}

/** Transfer options shared by the reads of a pull. */
export interface ReadOptions {
  /** Deadline of each transfer. */
  readonly timeoutMs: number;
  /** Cancels them. */
  readonly signal: AbortSignal;
}

/**
 * Posts, for every decode rank, the READs that copy its slice of prefill blocks `remoteIds[i]`
 * into local blocks `localIds[i]`. Throws (before posting anything more) on the first refusal;
 * the caller cancels those already posted.
 */
export function postBlockReads(
  engine: RemoteEngine,
  ranks: readonly KvCacheRank[],
  localIds: readonly number[],
  remoteIds: readonly number[],
  opts: ReadOptions,
  posted: Transfer[],
): PostedReads {
  let bytes = 0;
  let uncoalesced = 0;
  let count = 0;
  for (let j = 0; j < ranks.length; j++) {
    const rank = ranks[j]!;
    const link = engine.links[j]!;
    const reads = link.plan.reads(localIds, remoteIds, {
      localAddressing: rank.addressing,
      remoteAddressing: engine.addressing,
    });
    for (const read of reads) {
      const remote = link.peers.get(read.prefillRank)!;
      uncoalesced += read.before;
      count += read.after;
      for (let i = 0; i < read.count; i++) bytes += read.local.length[i]!;
      // lib/kv coalesced both sides already: the transport need not look again.
      posted.push(
        rank.agent.read(
          remote.peer,
          {
            regions: rank.regions,
            region: read.local.region,
            offset: read.local.offset,
            length: read.local.length,
            count: read.count,
          },
          {
            regions: remote.regions,
            region: read.remote.region,
            offset: read.remote.offset,
            length: read.remote.length,
            count: read.count,
          },
          { timeoutMs: opts.timeoutMs, signal: opts.signal, coalesce: false },
        ),
      );
    }
  }
  return { transfers: posted, bytes, uncoalesced, posted: count };
}

/**
 * Posts the lease fence: reads the request's lease slot into `scratch` slot `scratchSlot` and
 * carries the done notification (delivered after the read, so after every block READ before it).
 */
export function postFence(
  engine: RemoteEngine,
  ranks: readonly KvCacheRank[],
  scratch: Region,
  scratchSlot: number,
  params: KvTransferParams,
  opts: ReadOptions,
): Transfer {
  const agent = ranks[0]!.agent;
  return agent.read(
    engine.fence.peer,
    [{ region: scratch, offset: scratchSlot * LEASE_SLOT_BYTES, length: LEASE_SLOT_BYTES }],
    [
      {
        region: engine.fence.leaseTable,
        offset: params.remote_lease_slot * LEASE_SLOT_BYTES,
        length: LEASE_SLOT_BYTES,
      },
    ],
    {
      timeoutMs: opts.timeoutMs,
      signal: opts.signal,
      notify: encodeLeaseMessage({
        kind: 'done',
        requestId: params.remote_request_id,
        token: params.remote_lease_token,
      }),
    },
  );
}

/**
 * Checks what the fence read.
 *
 * @throws KvwireError `ERR_KVWIRE_LEASE_EXPIRED` when the lease was no longer held, saying why.
 */
export function checkFence(scratch: Float64Array, scratchSlot: number, params: KvTransferParams): void {
  const token = scratch[2 * scratchSlot]!;
  const state = scratch[2 * scratchSlot + 1]!;
  if (token === params.remote_lease_token && state === LeaseSlotState.HELD) return;
  const req = `request '${params.remote_request_id}' on prefill '${params.remote_engine_id}'`;
  let why: string;
  if (token !== params.remote_lease_token) why = 'its lease ended and the lease slot was reused';
  else if (state === LeaseSlotState.EXPIRED) why = 'its lease expired (raise leaseMs on the prefill, or pull sooner)';
  else if (state === LeaseSlotState.CANCELLED)
    why = 'it was cancelled (on the prefill side, or by an earlier abort of this request)';
  else if (state === LeaseSlotState.NOTIFIED)
    why = 'its blocks were already released by a done notification (were these kv_transfer_params pulled twice?)';
  else if (state === LeaseSlotState.CLOSED) why = 'the prefill coordinator closed';
  else why = `its lease slot is in state ${state}`;
  throw new KvwireError(
    ErrorCode.LEASE_EXPIRED,
    `the KV blocks of ${req} were freed before the read finished: ${why}; the bytes read are not trustworthy, recompute the prefill`,
    { state, field: 'remote_lease_token' },
  );
}

/** Cancels every transfer still pending; true when any had been posted. */
export function cancelPending(transfers: readonly Transfer[], reason: string): boolean {
  for (const t of transfers) t.cancel(reason);
  return transfers.length > 0;
}
