/**
 * The in-memory index's storage: a hash table of 64-bit block keys with an LRU order and, per key, a
 * short list of holder codes. Typed arrays only, so a million keys cost ~35 bytes each and no
 * garbage collection work, where a `Map<string, …>` costs several times that.
 *
 * - Entries live in a pool of parallel typed arrays (key halves, LRU links, up to two holder codes
 *   inline); an entry's index never changes while it lives. Keys with more than two holders keep
 *   the full list in a side `Map`.
 * - The table is open addressing with linear probing over entry indexes, at most half full, and
 *   deletes by backward shifting (no tombstones, so lookups never slow down with churn).
 * - The LRU order is a doubly linked list through the pool: `oldest()` is the next eviction victim.
 * - Slots are chosen by a seeded mix of both key halves. Keys arrive from the network (engine
 *   events); the per-process random seed keeps a sender from aiming many keys at one probe run.
 *
 * Holder codes are opaque non-negative int32 values to this class (the backend packs a worker slot
 * and a tier mask in them).
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto';

const MIN_CAPACITY = 1024;

/** See the module documentation. */
export class KeyTable {
  /** Number of keys held. */
  size = 0;
  private cap = 0;
  private hi = new Uint32Array(0);
  private lo = new Uint32Array(0);
  private prev = new Int32Array(0);
  private next = new Int32Array(0);
  private h0 = new Int32Array(0);
  private h1 = new Int32Array(0);
  private hc = new Uint8Array(0);
  private readonly more = new Map<number, number[]>();
  private table = new Int32Array(0);
  private mask = 0;
  private used = 0;
  private free = -1;
  private head = -1;
  private tail = -1;
  private readonly seed = randomBytes(4).readUInt32LE(0);

  constructor() {
    this.grow(MIN_CAPACITY);
  }

  /** Bytes held by the typed arrays (the side map of long holder lists not included). */
  get bytes(): number {
    return this.cap * (4 * 6 + 1) + this.table.byteLength;
  }

  private slotOf(hi: number, lo: number): number {
    let h = (lo ^ Math.imul(hi, 0x9e3779b1) ^ this.seed) | 0;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h & this.mask;
  }

  /** The entry holding key `hi:lo`, or -1. */
  find(hi: number, lo: number): number {
    const table = this.table,
      mask = this.mask,
      his = this.hi,
      los = this.lo;
    for (let i = this.slotOf(hi, lo); ; i = (i + 1) & mask) {
      const e = table[i]!;
      if (e < 0) return -1;
      if (los[e] === lo && his[e] === hi) return e;
    }
  }

  /** Adds key `hi:lo` (which must be absent) as the newest entry, with no holders; returns it. */
  insert(hi: number, lo: number): number {
    if (this.free < 0 && this.used === this.cap) this.grow(this.cap * 2);
    let e: number;
    if (this.free >= 0) {
      e = this.free;
      this.free = this.next[e]!;
    } else {
      e = this.used++;
    }
    this.hi[e] = hi;
    this.lo[e] = lo;
    this.hc[e] = 0;
    this.linkNewest(e);
    let i = this.slotOf(hi, lo);
    while (this.table[i]! >= 0) i = (i + 1) & this.mask;
    this.table[i] = e;
    this.size++;
    return e;
  }

  /** Deletes entry `e`. */
  remove(e: number): void {
    const table = this.table,
      mask = this.mask;
    let i = this.slotOf(this.hi[e]!, this.lo[e]!);
    while (table[i] !== e) i = (i + 1) & mask;
    // Backward-shift deletion: pull later members of the probe run into the hole, unless their home
    // slot lies cyclically in (hole, j], where they must stay to remain findable.
    for (let j = (i + 1) & mask; table[j]! >= 0; j = (j + 1) & mask) {
      const k = this.slotOf(this.hi[table[j]!]!, this.lo[table[j]!]!);
      const stays = i <= j ? i < k && k <= j : i < k || k <= j;
      if (!stays) {
        table[i] = table[j]!;
        i = j;
      }
    }
    table[i] = -1;
    this.unlink(e);
    if (this.hc[e]! > 2) this.more.delete(e);
    this.hc[e] = 0;
    this.next[e] = this.free;
    this.free = e;
    this.size--;
  }

  /** Makes `e` the newest entry. */
  touch(e: number): void {
    if (e === this.tail) return;
    this.unlink(e);
    this.linkNewest(e);
  }

  /** The least recently used entry, or -1 when empty. */
  oldest(): number {
    return this.head;
  }

  /** The entry used right after `e` (towards the newest), or -1. */
  newer(e: number): number {
    return this.next[e]!;
  }

  /** High 32 bits of `e`'s key. */
  keyHi(e: number): number {
    return this.hi[e]!;
  }

  /** Low 32 bits of `e`'s key. */
  keyLo(e: number): number {
    return this.lo[e]!;
  }

  /** Number of holder codes of `e`. */
  holderCount(e: number): number {
    return this.hc[e]!;
  }

  /** Copies `e`'s holder codes (oldest first) into `out`; returns how many. */
  holders(e: number, out: number[]): number {
    const n = this.hc[e]!;
    if (n > 2) {
      const list = this.more.get(e)!;
      for (let i = 0; i < n; i++) out[i] = list[i]!;
    } else {
      if (n > 0) out[0] = this.h0[e]!;
      if (n > 1) out[1] = this.h1[e]!;
    }
    return n;
  }

  /** Replaces `e`'s holder codes with `codes[0..n)` (n ≤ 255). */
  setHolders(e: number, codes: readonly number[], n: number): void {
    const before = this.hc[e]!;
    if (n > 2) {
      this.more.set(e, codes.slice(0, n));
    } else {
      if (before > 2) this.more.delete(e);
      if (n > 0) this.h0[e] = codes[0]!;
      if (n > 1) this.h1[e] = codes[1]!;
    }
    this.hc[e] = n;
  }

  private linkNewest(e: number): void {
    this.prev[e] = this.tail;
    this.next[e] = -1;
    if (this.tail >= 0) this.next[this.tail] = e;
    else this.head = e;
    this.tail = e;
  }

  private unlink(e: number): void {
    const p = this.prev[e]!,
      n = this.next[e]!;
    if (p >= 0) this.next[p] = n;
    else this.head = n;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
  }

  private grow(cap: number): void {
    const copy = <T extends Uint32Array | Int32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.hi = copy(this.hi, (n) => new Uint32Array(n));
    this.lo = copy(this.lo, (n) => new Uint32Array(n));
    this.prev = copy(this.prev, (n) => new Int32Array(n));
    this.next = copy(this.next, (n) => new Int32Array(n));
    this.h0 = copy(this.h0, (n) => new Int32Array(n));
    this.h1 = copy(this.h1, (n) => new Int32Array(n));
    this.hc = copy(this.hc, (n) => new Uint8Array(n));
    this.cap = cap;
    // Rebuild the table at twice the pool's capacity: load factor at most 1/2.
    this.table = new Int32Array(cap * 2).fill(-1);
    this.mask = cap * 2 - 1;
    for (let e = this.head; e >= 0; e = this.next[e]!) {
      let i = this.slotOf(this.hi[e]!, this.lo[e]!);
      while (this.table[i]! >= 0) i = (i + 1) & this.mask;
      this.table[i] = e;
    }
  }
}
