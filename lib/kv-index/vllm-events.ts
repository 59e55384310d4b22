/**
 * vLLM's KV cache events (`vllm/distributed/kv_events.py`), translated into index events.
 *
 * vLLM names blocks by its own hashes (`block_hashes`), which the index cannot recompute, so
 * `BlockStored` is translated through its token ids: the index's key of each new block is chained
 * from the key of `parent_block_hash` (or from the root, with `lora_name`/`lora_id` as the LoRA extra
 * key, when it has no parent), and the translator remembers engine hash -> index key for each
 * worker, so that later children and `BlockRemoved` can be resolved. Consequences:
 * - a worker's vLLM events must reach one translator in order (a bridge posts batches one at a
 *   time, as vLLM's ZMQ publisher emits them); a block whose parent is unknown is counted as
 *   `unresolved` and skipped, as is a removal of an unknown block;
 * - blocks with per-block `extra_keys` (multimodal inputs, cache salt) are skipped (`ignored`):
 *   their keys depend on inputs the events do not carry, and a wrong key would route wrongly;
 * - events of a KV cache group other than 0 (hybrid models) are `ignored`;
 * - `block_size` must equal the index's block size.
 *
 * Accepted shapes: msgspec's JSON form (`{"type": "BlockStored", "block_hashes": [...], ...}`) and
 * the older array form (`["BlockStored", block_hashes, parent_block_hash, token_ids, block_size,
 * lora_id, medium]`). Block hashes are strings or safe integers (an integer and its decimal string
 * are the same hash): a 64-bit integer hash must be sent as a string, as JSON numbers beyond 2^53
 * lose precision.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../errors.js';
import { describeValue } from '../util/describe-value.js';
import type { BlockHasher } from './hash.js';
import type { KvEvent } from './kv-index.js';
import { TIER_BIT, type Tier } from './types.js';

/** The vLLM event type names. */
export const VLLM_EVENT_TYPES: readonly string[] = ['BlockStored', 'BlockRemoved', 'AllBlocksCleared'];

/** A translated batch. */
export interface TranslatedBatch {
  /** The index events. */
  readonly events: KvEvent[];
  /** Blocks skipped because their parent (or, for a removal, the block) was unknown. */
  readonly unresolved: number;
  /** Blocks skipped on purpose (extra keys, another KV cache group). */
  readonly ignored: number;
}

function bad(where: string, msg: string): KvwireError {
  return new KvwireError(ErrorCode.INVALID_ARGUMENT, `${where} ${msg}`, { field: where });
}

/**
 * An engine block hash as a map key. Integers and their decimal strings are the same hash (a bridge
 * may send big ones as strings); base64 bytes hashes never look like decimal integers.
 */
function hashId(v: unknown, where: string): string {
  if (typeof v === 'string' && v.length > 0 && v.length <= 256) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v)) return String(v);
  if (typeof v === 'number' && Number.isInteger(v)) {
    throw bad(
      where,
      `is ${v}, beyond 2^53: JSON numbers lose precision there, so distinct block hashes could look equal; send 64-bit block hashes as strings`,
    );
  }
  throw bad(where, `is ${describeValue(v)}: a block hash is a string or a safe integer`);
}

function hashList(v: unknown, where: string): string[] {
  if (!Array.isArray(v)) throw bad(where, `is ${describeValue(v)}: expected an array of block hashes`);
  return v.map((h, i) => hashId(h, `${where}[${i}]`));
}

function medium(v: unknown, where: string): Tier | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') {
    const m = v.toLowerCase();
    if (m === 'gpu' || m === 'cpu') return m;
  }
  throw bad(where, `is ${describeValue(v)}: the index knows the media "GPU" and "CPU"`);
}

/** Converts the array form to the object form. */
function asObject(ev: unknown, where: string): Record<string, unknown> {
  if (Array.isArray(ev)) {
    const [type, ...rest] = ev as unknown[];
    if (type === 'BlockStored') {
      const [block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium] = rest;
      return { type, block_hashes, parent_block_hash, token_ids, block_size, lora_id, medium };
    }
    if (type === 'BlockRemoved') return { type, block_hashes: rest[0], medium: rest[1] };
    if (type === 'AllBlocksCleared') return { type };
    throw bad(`${where}[0]`, `is ${describeValue(type)}: expected one of ${VLLM_EVENT_TYPES.join(', ')}`);
  }
  if (ev === null || typeof ev !== 'object')
    throw bad(where, `is ${describeValue(ev)}: an event is an object or a vLLM array-form event`);
  return ev as Record<string, unknown>;
}

interface Mapped {
  readonly key: string;
  mask: number;
}

/**
 * Per-worker memory of engine block hash -> index key; see the module documentation. One bound
 * covers all workers: beyond it, the oldest hashes of the least recently active worker go first, so
 * workers that went away (and never send AllBlocksCleared) are forgotten before live ones.
 */
export class VllmEventTranslator {
  /** worker -> (engine hash -> key); Map order is worker activity, least recent first. */
  private readonly maps = new Map<string, Map<string, Mapped>>();
  private total = 0;

  /**
   * @param hasher - the index's hasher (`KvIndex.hasher`).
   * @param maxBlocks - most engine hashes remembered over all workers.
   */
  constructor(
    private readonly hasher: BlockHasher,
    private readonly maxBlocks = 1_048_576,
  ) {}

  /** True when `ev` looks like a vLLM event (so a batch may mix both shapes). */
  static isVllmEvent(ev: unknown): boolean {
    const type = Array.isArray(ev)
      ? ev[0]
      : ev !== null && typeof ev === 'object'
        ? (ev as { type?: unknown }).type
        : undefined;
    return typeof type === 'string' && VLLM_EVENT_TYPES.includes(type);
  }

  /** Engine hashes remembered for `worker` (all workers when omitted). */
  remembered(worker?: string): number {
    return worker === undefined ? this.total : (this.maps.get(worker)?.size ?? 0);
  }

  /**
   * Translates one vLLM event of `worker`.
   *
   * @param where - how error messages name the event, e.g. `events[2]`.
   * @throws KvwireError `ERR_KVWIRE_INVALID_ARGUMENT` on a malformed event.
   */
  translate(worker: string, raw: unknown, where: string): TranslatedBatch {
    const ev = asObject(raw, where);
    if (ev.type === 'AllBlocksCleared') {
      this.total -= this.maps.get(worker)?.size ?? 0;
      this.maps.delete(worker);
      return { events: [{ type: 'cleared' }], unresolved: 0, ignored: 0 };
    }
    const group = ev.group_idx;
    if (group !== undefined && group !== null && group !== 0) {
      if (typeof group !== 'number' || !Number.isInteger(group) || group < 0)
        throw bad(`${where}.group_idx`, `is ${describeValue(group)}: expected a non-negative integer`);
      return { events: [], unresolved: 0, ignored: Array.isArray(ev.block_hashes) ? ev.block_hashes.length : 0 };
    }
    if (ev.type === 'BlockRemoved') return this.removed(worker, ev, where);
    if (ev.type === 'BlockStored') return this.stored(worker, ev, where);
    throw bad(`${where}.type`, `is ${describeValue(ev.type)}: expected one of ${VLLM_EVENT_TYPES.join(', ')}`);
  }

  /** `worker`'s map, marked as the most recently active. */
  private mapFor(worker: string): Map<string, Mapped> {
    const m = this.maps.get(worker) ?? new Map<string, Mapped>();
    this.maps.delete(worker);
    this.maps.set(worker, m);
    return m;
  }

  private forgetOldest(): void {
    while (this.total > this.maxBlocks) {
      const [worker, m] = this.maps.entries().next().value!;
      m.delete(m.keys().next().value!);
      this.total--;
      if (m.size === 0) this.maps.delete(worker);
    }
  }

  private stored(worker: string, ev: Record<string, unknown>, where: string): TranslatedBatch {
    const hashes = hashList(ev.block_hashes, `${where}.block_hashes`);
    const bs = ev.block_size;
    if (bs !== this.hasher.blockSize) {
      throw bad(
        `${where}.block_size`,
        `is ${describeValue(bs)} but the index's block size is ${this.hasher.blockSize}: create the index with blockSize: ${describeValue(bs)} (the engine's --block-size)`,
      );
    }
    const tokens = ev.token_ids;
    if (!Array.isArray(tokens) || tokens.length !== hashes.length * this.hasher.blockSize) {
      throw bad(
        `${where}.token_ids`,
        `has ${Array.isArray(tokens) ? tokens.length : describeValue(tokens)} tokens: expected block_hashes.length × block_size = ${hashes.length * this.hasher.blockSize}`,
      );
    }
    const tier = medium(ev.medium, `${where}.medium`) ?? 'gpu';
    const extras = ev.extra_keys;
    if (extras !== undefined && extras !== null && !Array.isArray(extras))
      throw bad(`${where}.extra_keys`, `is ${describeValue(extras)}: expected an array or null`);
    // Blocks from the first one with extra keys onwards cannot be keyed (their chain differs).
    let usable = hashes.length;
    if (Array.isArray(extras)) {
      const i = extras.findIndex((x) => x !== null && x !== undefined && !(Array.isArray(x) && x.length === 0));
      if (i >= 0) usable = Math.min(usable, i);
    }
    const map = this.mapFor(worker);
    let parent: string;
    if (ev.parent_block_hash === null || ev.parent_block_hash === undefined) {
      const lora = ev.lora_name ?? ev.lora_id;
      if (
        lora !== undefined &&
        lora !== null &&
        typeof lora !== 'string' &&
        !(typeof lora === 'number' && Number.isSafeInteger(lora) && lora >= 0)
      ) {
        throw bad(
          `${where}.lora_name`,
          `is ${describeValue(lora)}: expected a string (or lora_id, a non-negative integer)`,
        );
      }
      parent = this.hasher.rootFor({ lora: lora as string | number | null | undefined });
    } else {
      const p = map.get(hashId(ev.parent_block_hash, `${where}.parent_block_hash`));
      if (p === undefined) return { events: [], unresolved: hashes.length, ignored: 0 };
      parent = p.key;
    }
    if (usable === 0) return { events: [], unresolved: 0, ignored: hashes.length };
    const keys = this.hasher.chain(
      parent,
      usable === hashes.length ? tokens : tokens.slice(0, usable * this.hasher.blockSize),
    );
    for (let i = 0; i < usable; i++) {
      const id = hashes[i]!;
      const old = map.get(id);
      if (old === undefined) this.total++;
      else map.delete(id);
      map.set(id, { key: keys[i]!, mask: (old !== undefined && old.key === keys[i] ? old.mask : 0) | TIER_BIT[tier] });
    }
    this.forgetOldest();
    return { events: [{ type: 'stored', keys, tier }], unresolved: 0, ignored: hashes.length - usable };
  }

  private removed(worker: string, ev: Record<string, unknown>, where: string): TranslatedBatch {
    const hashes = hashList(ev.block_hashes, `${where}.block_hashes`);
    const tier = medium(ev.medium, `${where}.medium`);
    const map = this.mapFor(worker);
    const keys: string[] = [];
    let unresolved = 0;
    for (const id of hashes) {
      const m = map.get(id);
      if (m === undefined) {
        unresolved++;
        continue;
      }
      keys.push(m.key);
      m.mask &= tier === undefined ? 0 : ~TIER_BIT[tier];
      if (m.mask === 0) {
        map.delete(id);
        this.total--;
      }
    }
    const events: KvEvent[] =
      keys.length === 0 ? [] : [tier === undefined ? { type: 'removed', keys } : { type: 'removed', keys, tier }];
    return { events, unresolved, ignored: 0 };
  }
}
