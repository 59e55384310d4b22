// The index's semantics written as plainly as possible (arrays and Maps, no performance concerns):
// the reference both backends are compared with, op by op, in the property tests.

export type Tier = 'gpu' | 'cpu';
const BIT: Record<Tier, number> = { gpu: 1, cpu: 2 };

interface H {
  w: string;
  ep: number;
  mask: number;
}

export class IndexModel {
  /** key -> holders, oldest first; Map order is the LRU order (oldest first). */
  readonly keys = new Map<string, H[]>();
  private readonly epochs = new Map<string, number>();
  readonly known = new Set<string>();
  private readonly lastSeq = new Map<string, number>();
  readonly pins = new Map<string, Map<string, number>>();

  constructor(
    readonly maxKeys: number,
    readonly maxW: number,
  ) {}

  private ep(w: string): number {
    return this.epochs.get(w) ?? 0;
  }
  private live(h: H): boolean {
    return h.ep === this.ep(h.w);
  }
  private pinned(k: string, w?: string): boolean {
    const m = this.pins.get(k);
    return m !== undefined && (w === undefined || m.has(w));
  }
  private touch(k: string): void {
    const hs = this.keys.get(k)!;
    this.keys.delete(k);
    this.keys.set(k, hs);
  }

  apply(
    w: string,
    seq: number | undefined,
    ops: (
      | { type: 'stored'; keys: string[]; tier: Tier }
      | { type: 'removed'; keys: string[]; tier?: Tier }
      | { type: 'cleared' }
    )[],
  ): 'applied' | 'duplicate' | 'gap' {
    const last = this.lastSeq.get(w);
    if (seq !== undefined && last !== undefined) {
      if (seq <= last) return 'duplicate';
      if (seq > last + 1) return 'gap';
    }
    if (seq !== undefined) this.lastSeq.set(w, seq);
    for (const op of ops) {
      if (op.type === 'stored') this.stored(w, op.keys, op.tier);
      else if (op.type === 'removed') this.removed(w, op.keys, op.tier);
      else {
        this.epochs.set(w, this.ep(w) + 1);
        this.known.add(w);
      }
    }
    return 'applied';
  }

  private stored(w: string, keys: string[], tier: Tier): void {
    this.known.add(w);
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i]!;
      const hs = this.keys.get(k);
      if (hs === undefined) {
        this.keys.set(k, [{ w, ep: this.ep(w), mask: BIT[tier] }]);
        let scanned = 0;
        while (this.keys.size > this.maxKeys && scanned < this.keys.size) {
          const oldest = this.keys.keys().next().value!;
          if (this.pinned(oldest)) {
            this.touch(oldest);
            scanned++;
          } else this.keys.delete(oldest);
        }
      } else {
        this.touch(k);
        const own = hs.find((h) => h.w === w && this.live(h));
        const list = hs.filter((h) => h.w !== w && this.live(h));
        list.push({ w, ep: this.ep(w), mask: BIT[tier] | (own?.mask ?? 0) });
        if (list.length > this.maxW) {
          const j = list.findIndex((h) => !this.pinned(k, h.w));
          if (j >= 0) list.splice(j, 1);
        }
        this.keys.set(k, list);
      }
    }
  }

  private removed(w: string, keys: string[], tier?: Tier): void {
    const bits = tier === undefined ? 3 : BIT[tier];
    for (const k of keys) {
      const hs = this.keys.get(k);
      if (hs === undefined) continue;
      const out: H[] = [];
      for (const h of hs) {
        if (!this.live(h)) continue;
        if (h.w === w) {
          const m = h.mask & ~bits;
          if (m !== 0) out.push({ ...h, mask: m });
        } else out.push(h);
      }
      if (out.length === 0) this.keys.delete(k);
      else this.keys.set(k, out);
    }
  }

  removeWorker(w: string): void {
    this.epochs.set(w, this.ep(w) + 1);
    this.known.delete(w);
    this.lastSeq.delete(w);
    for (const [k, m] of this.pins) if (m.delete(w) && m.size === 0) this.pins.delete(k);
  }

  acquire(w: string, keys: string[]): void {
    for (const k of keys) {
      let m = this.pins.get(k);
      if (m === undefined) this.pins.set(k, (m = new Map()));
      m.set(w, (m.get(w) ?? 0) + 1);
    }
  }

  release(w: string, keys: string[]): void {
    for (const k of keys) {
      const m = this.pins.get(k);
      const n = m?.get(w);
      if (m === undefined || n === undefined) continue;
      if (n > 1) m.set(w, n - 1);
      else if (m.delete(w) && m.size === 0) this.pins.delete(k);
    }
  }

  /** Tier-weighted leading-run scores, touching the matched keys like the backends do. */
  score(keys: string[], filter: string[] | undefined, weights: Record<Tier, number>): Map<string, number> {
    const out = new Map<string, number>();
    if (filter !== undefined) for (const w of filter) out.set(w, 0);
    const runs = new Map<string, { gpu: number; cpu: number }>();
    const first = this.keys.get(keys[0] ?? '');
    let matched = 0;
    if (first !== undefined) {
      for (const h of first) {
        if (this.live(h) && (filter === undefined || filter.includes(h.w))) runs.set(h.w, { gpu: 0, cpu: 0 });
      }
      let active = [...runs.keys()];
      for (let i = 0; i < keys.length && active.length > 0; i++) {
        const hs = this.keys.get(keys[i]!) ?? [];
        active = active.filter((w) => {
          const h = hs.find((x) => x.w === w && this.live(x));
          if (h === undefined) return false;
          const r = runs.get(w)!;
          if ((h.mask & 1) !== 0) r.gpu++;
          else r.cpu++;
          return true;
        });
        if (active.length > 0) matched = i + 1;
      }
    }
    for (const [w, r] of runs) out.set(w, r.gpu * weights.gpu + r.cpu * weights.cpu);
    for (let i = matched - 1; i >= 0; i--) this.touch(keys[i]!);
    return out;
  }

  holders(k: string): { worker: string; tiers: Tier[] }[] {
    return (this.keys.get(k) ?? [])
      .filter((h) => this.live(h))
      .map((h) => ({
        worker: h.w,
        tiers: (['gpu', 'cpu'] as Tier[]).filter((t) => (h.mask & BIT[t]) !== 0),
      }));
  }

  compact(): number {
    let n = 0;
    for (const [k, hs] of [...this.keys]) {
      const live = hs.filter((h) => this.live(h));
      if (live.length === 0) {
        this.keys.delete(k);
        n++;
      } else this.keys.set(k, live);
    }
    return n;
  }

  stats(): { keys: number; workers: number; pinnedKeys: number } {
    return { keys: this.keys.size, workers: this.known.size, pinnedKeys: this.pins.size };
  }
}
