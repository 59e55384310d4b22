/**
 * vLLM's KV events on the wire (`vllm/distributed/kv_events.py`, `ZmqEventPublisher`):
 *
 * - a PUB message is three frames: topic (UTF-8, `kv@<pod>@<model>` for per-pod topics, or empty),
 *   an 8-byte big-endian sequence number (from 0, +1 per batch, per publisher), and a msgpack payload;
 * - the payload is a `KVEventBatch`: the array `[ts, events, data_parallel_rank]` (msgspec
 *   `array_like`, older vLLM and llm-d's adapter) or the map `{ts, events, data_parallel_rank}`;
 * - each event is the tagged array `["BlockStored", ...]` or the map `{"type": "BlockStored", ...}`;
 * - block hashes are integers (up to 64 bits) or bytes; integers beyond 2^53 are decoded as exact
 *   decimal strings and bytes as `0x` + hex, the opaque ids {@link VllmEventTranslator} expects.
 *
 * @packageDocumentation
 */
import { decode } from '@msgpack/msgpack';
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';

/** A decoded batch. */
export interface VllmBatch {
  /** The publisher's timestamp (seconds). */
  readonly ts: number;
  /** The events, hashes normalized (see the module documentation). */
  readonly events: readonly unknown[];
  /** The data parallel rank, when sent. */
  readonly dpRank: number | undefined;
}

/** The parts of a topic `kv@<pod>@<model>`; undefined for any other topic (vLLM's default is empty). */
export function parseTopic(topic: string): { pod: string; model: string } | undefined {
  const parts = topic.split('@');
  if (parts.length !== 3 || parts[0] !== 'kv' || parts[1] === '') return undefined;
  return { pod: parts[1]!, model: parts[2]! };
}

/** An 8-byte big-endian sequence number as a number; -1 for the replay end marker. */
export function readSeq(frame: Uint8Array): number {
  if (frame.length !== 8) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the sequence frame has ${frame.length} bytes: vLLM sends 8 (big-endian)`,
      { field: 'seq' },
    );
  }
  const v = Buffer.from(frame.buffer, frame.byteOffset, 8).readBigInt64BE();
  if (v === -1n) return -1;
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `sequence number ${v} is out of range`, { field: 'seq' });
  }
  return Number(v);
}

/** The 8-byte big-endian encoding of a sequence number (what a replay request carries). */
export function seqFrame(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(seq));
  return b;
}

function hashValue(v: unknown): unknown {
  if (typeof v === 'bigint')
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
  if (v instanceof Uint8Array) return `0x${Buffer.from(v.buffer, v.byteOffset, v.length).toString('hex')}`;
  return v;
}

const hashList = (v: unknown): unknown => (Array.isArray(v) ? v.map(hashValue) : v);

/**
 * Normalizes the hash fields of one event (only those: token lists are large and already numbers,
 * and copying them would cost more than the rest of the ingestion).
 */
function normalizeEvent(ev: unknown): unknown {
  if (Array.isArray(ev)) {
    if (ev[0] === 'BlockStored') return [ev[0], hashList(ev[1]), hashValue(ev[2]), ...ev.slice(3)];
    if (ev[0] === 'BlockRemoved') return [ev[0], hashList(ev[1]), ...ev.slice(2)];
    return ev;
  }
  if (ev !== null && typeof ev === 'object' && !(ev instanceof Uint8Array)) {
    const o = ev as Record<string, unknown>;
    return { ...o, block_hashes: hashList(o.block_hashes), parent_block_hash: hashValue(o.parent_block_hash) };
  }
  return ev;
}

/**
 * Decodes a msgpack `KVEventBatch`.
 *
 * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` when the payload is not msgpack or not a batch.
 */
export function decodeVllmBatch(payload: Uint8Array): VllmBatch {
  let doc: unknown;
  try {
    doc = decode(payload, {
      useBigInt64: true,
      maxStrLength: 1 << 20,
      maxArrayLength: 1 << 22,
      maxMapLength: 1 << 16,
      maxBinLength: 1 << 20,
    });
  } catch (e) {
    throw new KvwireError(ErrorCode.INVALID_ARGUMENT, `the KV events payload is not msgpack: ${(e as Error).message}`, {
      field: 'payload',
    });
  }
  let ts: unknown, events: unknown, dp: unknown;
  if (Array.isArray(doc)) [ts, events, dp] = doc as unknown[];
  else if (doc !== null && typeof doc === 'object' && !(doc instanceof Uint8Array)) {
    const o = doc as Record<string, unknown>;
    [ts, events, dp] = [o.ts, o.events, o.data_parallel_rank];
  } else {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the KV events payload is ${describeValue(doc)}: expected a KVEventBatch [ts, events, dp_rank]`,
      { field: 'payload' },
    );
  }
  const t = typeof ts === 'bigint' ? Number(ts) : ts;
  if (typeof t !== 'number' || !Number.isFinite(t)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the batch's ts is ${describeValue(ts)}: expected a number of seconds`,
      { field: 'ts' },
    );
  }
  if (!Array.isArray(events)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `the batch's events is ${describeValue(events)}: expected a list of events`,
      { field: 'events' },
    );
  }
  const rank = typeof dp === 'bigint' ? Number(dp) : dp;
  return { ts: t, events: events.map(normalizeEvent), dpRank: typeof rank === 'number' ? rank : undefined };
}
