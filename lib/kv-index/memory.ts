/**
 * The in-memory backend (the default): one process's index, in a {@link KeyTable}.
 *
 * Workers are interned as small integer slots; a holder is stored as `slot * 4 + tierMask`. When a
 * worker clears its cache or is removed, its slot is retired (and a cleared worker gets a fresh
 * one), which removes it from every key at once: holders with a retired slot are invisible, and
 * are deleted when their key is next written or by {@link MemoryBackend.compact}.
 *
 * @packageDocumentation
 */
import { keyToHex, type BlockKeyList } from './hash.js';
import { KeyTable } from './key-table.js';
import {
  TIER_BIT,
  tiersOf,
  type ApplyOutcome,
  type BackendLimits,
  type BackendStats,
  type Holder,
  type IndexBackend,
  type IndexOp,
  type PrefixRun,
} from './types.js';

/** See the module documentation. */
export class MemoryBackend implements IndexBackend {
  /** Always `'memory'`. */
  readonly kind = 'memory' as const;
  private readonly table = new KeyTable();
  private readonly slots = new Map<string, number>();
  /** Worker name of each slot; `undefined` once retired. */
  private readonly slotWorker: (string | undefined)[] = [];
  private readonly lastSeq = new Map<string, number>();
  /** key (hex) -> worker -> references. */
  private readonly pins = new Map<string, Map<string, number>>();
  private readonly buf: number[] = [];
  private readonly kept: number[] = [];
  /** Entries met by the last prefix walk, to touch them without looking them up again. */
  private readonly found: number[] = [];
  private evictedKeys = 0;
  private evictedHolders = 0;

  /** @param limits - the key and per-key worker bounds. */
  constructor(private readonly limits: BackendLimits) {}

  /** Bytes held by the key table's typed arrays (for the bench; excludes small side maps). */
  get tableBytes(): number {
    return this.table.bytes;
  }

  apply(worker: string, seq: number | undefined, force: boolean, ops: readonly IndexOp[]): ApplyOutcome {
    const last = this.lastSeq.get(worker);
    if (seq !== undefined && last !== undefined) {
      if (seq <= last) return this.outcome('duplicate', last);
      if (seq > last + 1 && !force) return this.outcome('gap', last);
    }
    if (seq !== undefined) this.lastSeq.set(worker, seq);
    this.evictedKeys = 0;
    this.evictedHolders = 0;
    for (const op of ops) {
      if (op.type === 'stored') this.store(worker, op.keys, TIER_BIT[op.tier]);
      else if (op.type === 'removed') this.remove(worker, op.keys, op.tier === undefined ? 3 : TIER_BIT[op.tier]);
      else this.clear(worker);
    }
    return this.outcome('applied', seq ?? last);
  }

  private outcome(status: ApplyOutcome['status'], lastSeq: number | undefined): ApplyOutcome {
    const applied = status === 'applied';
    return {
      status,
      lastSeq,
      evictedKeys: applied ? this.evictedKeys : 0,
      evictedHolders: applied ? this.evictedHolders : 0,
      keys: this.table.size,
    };
  }

  private slotFor(worker: string): number {
    let s = this.slots.get(worker);
    if (s === undefined) {
      s = this.slotWorker.length;
      this.slotWorker.push(worker);
      this.slots.set(worker, s);
    }
    return s;
  }

  private isPinned(e: number, worker?: string): boolean {
    if (this.pins.size === 0) return false;
    const m = this.pins.get(keyToHex(this.table.keyHi(e), this.table.keyLo(e)));
    return m !== undefined && (worker === undefined || m.has(worker));
  }

  private store(worker: string, keys: BlockKeyList, bit: number): void {
    const t = this.table,
      slot = this.slotFor(worker);
    // Newest last: walking the chain backwards leaves its first block the most recently used, so a
    // prefix loses its tail before its head under eviction.
    for (let i = keys.length - 1; i >= 0; i--) {
      const hi = keys.hi[i]!,
        lo = keys.lo[i]!;
      let e = t.find(hi, lo);
      if (e < 0) {
        e = t.insert(hi, lo);
        this.kept[0] = slot * 4 + bit;
        t.setHolders(e, this.kept, 1);
        this.evictKeys();
      } else {
        t.touch(e);
        this.addHolder(e, slot, bit);
      }
    }
  }

  private addHolder(e: number, slot: number, bit: number): void {
    const t = this.table,
      buf = this.buf,
      kept = this.kept;
    const n = t.holders(e, buf);
    let k = 0,
      mask = bit;
    for (let i = 0; i < n; i++) {
      const code = buf[i]!,
        s = code >>> 2;
      if (s === slot) mask |= code & 3;
      else if (this.slotWorker[s] !== undefined) kept[k++] = code;
    }
    kept[k++] = slot * 4 + mask;
    if (k > this.limits.maxWorkersPerKey) {
      // Evict the least recently stored holder that no reference pins (possibly the new one).
      for (let i = 0; i < k; i++) {
        if (!this.isPinned(e, this.slotWorker[kept[i]! >>> 2])) {
          kept.copyWithin(i, i + 1, k);
          k--;
          this.evictedHolders++;
          break;
        }
      }
    }
    t.setHolders(e, kept, k);
  }

  private evictKeys(): void {
    const t = this.table;
    let scanned = 0;
    while (t.size > this.limits.maxKeys && scanned < t.size) {
      const e = t.oldest();
      if (this.isPinned(e)) {
        t.touch(e);
        scanned++;
      } else {
        t.remove(e);
        this.evictedKeys++;
      }
    }
  }

  private remove(worker: string, keys: BlockKeyList, bits: number): void {
    const t = this.table,
      buf = this.buf,
      kept = this.kept;
    const slot = this.slots.get(worker) ?? -1;
    for (let i = 0; i < keys.length; i++) {
      const e = t.find(keys.hi[i]!, keys.lo[i]!);
      if (e < 0) continue;
      const n = t.holders(e, buf);
      let k = 0;
      for (let j = 0; j < n; j++) {
        const code = buf[j]!,
          s = code >>> 2;
        if (this.slotWorker[s] === undefined) continue;
        if (s === slot) {
          const left = code & 3 & ~bits;
          if (left !== 0) kept[k++] = s * 4 + left;
        } else {
          kept[k++] = code;
        }
      }
      if (k === 0) t.remove(e);
      else t.setHolders(e, kept, k);
    }
  }

  private retire(worker: string): void {
    const s = this.slots.get(worker);
    if (s !== undefined) this.slotWorker[s] = undefined;
    this.slots.delete(worker);
  }

  private clear(worker: string): void {
    this.retire(worker);
    this.slotFor(worker);
  }

  removeWorker(worker: string): void {
    this.retire(worker);
    this.lastSeq.delete(worker);
    for (const [key, m] of this.pins) {
      if (m.delete(worker) && m.size === 0) this.pins.delete(key);
    }
  }

  acquire(worker: string, keys: BlockKeyList): void {
    for (const key of keys.hex) {
      let m = this.pins.get(key);
      if (m === undefined) this.pins.set(key, (m = new Map()));
      m.set(worker, (m.get(worker) ?? 0) + 1);
    }
  }

  release(worker: string, keys: BlockKeyList): void {
    for (const key of keys.hex) {
      const m = this.pins.get(key);
      const n = m?.get(worker);
      if (m === undefined || n === undefined) continue;
      if (n > 1) m.set(worker, n - 1);
      else if (m.delete(worker) && m.size === 0) this.pins.delete(key);
    }
  }

  prefixRuns(keys: BlockKeyList, workers: ReadonlySet<string> | undefined): PrefixRun[] {
    const t = this.table,
      buf = this.buf;
    const n = keys.length;
    const e0 = n > 0 ? t.find(keys.hi[0]!, keys.lo[0]!) : -1;
    if (e0 < 0) return [];
    // Active runs: slot, GPU blocks, CPU-only blocks. Few (at most maxWorkersPerKey).
    const slots: number[] = [],
      gpu: number[] = [],
      cpu: number[] = [];
    const h0 = t.holders(e0, buf);
    for (let j = 0; j < h0; j++) {
      const code = buf[j]!,
        w = this.slotWorker[code >>> 2];
      if (w === undefined || (workers !== undefined && !workers.has(w))) continue;
      slots.push(code >>> 2);
      gpu.push(code & 1);
      cpu.push((code & 1) === 0 ? 1 : 0);
    }
    const done: PrefixRun[] = [];
    const found = this.found;
    found[0] = e0;
    let active = slots.length;
    let matched = active > 0 ? 1 : 0;
    for (let i = 1; i < n && active > 0; i++) {
      const e = t.find(keys.hi[i]!, keys.lo[i]!);
      found[i] = e;
      const h = e < 0 ? 0 : t.holders(e, buf);
      let still = 0;
      for (let a = 0; a < active; a++) {
        let code = -1;
        for (let j = 0; j < h; j++)
          if (buf[j]! >>> 2 === slots[a]) {
            code = buf[j]!;
            break;
          }
        if (code < 0) {
          done.push({ worker: this.slotWorker[slots[a]!]!, gpu: gpu[a]!, cpu: cpu[a]! });
          continue;
        }
        slots[still] = slots[a]!;
        gpu[still] = gpu[a]! + (code & 1);
        cpu[still] = cpu[a]! + ((code & 1) === 0 ? 1 : 0);
        still++;
      }
      active = still;
      if (active > 0) matched = i + 1;
    }
    for (let a = 0; a < active; a++) done.push({ worker: this.slotWorker[slots[a]!]!, gpu: gpu[a]!, cpu: cpu[a]! });
    for (let i = matched - 1; i >= 0; i--) t.touch(found[i]!);
    return done;
  }

  holders(key: string): Holder[] {
    const t = this.table;
    const e = t.find(parseInt(key.slice(0, 8), 16), parseInt(key.slice(8), 16));
    if (e < 0) return [];
    const out: Holder[] = [];
    const n = t.holders(e, this.buf);
    for (let j = 0; j < n; j++) {
      const w = this.slotWorker[this.buf[j]! >>> 2];
      if (w !== undefined) out.push({ worker: w, tiers: tiersOf(this.buf[j]! & 3) });
    }
    return out;
  }

  stats(): BackendStats {
    return { keys: this.table.size, workers: this.slots.size, pinnedKeys: this.pins.size };
  }

  compact(): number {
    const t = this.table,
      buf = this.buf,
      kept = this.kept;
    let deleted = 0;
    for (let e = t.oldest(); e >= 0;) {
      const next = t.newer(e);
      const n = t.holders(e, buf);
      let k = 0;
      for (let j = 0; j < n; j++) if (this.slotWorker[buf[j]! >>> 2] !== undefined) kept[k++] = buf[j]!;
      if (k === 0) {
        t.remove(e);
        deleted++;
      } else if (k < n) t.setHolders(e, kept, k);
      e = next;
    }
    return deleted;
  }

  close(): void {
    // Nothing to release: the table is garbage once the index is dropped.
  }
}
