import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../lib/errors.js';
import { KvLayout } from '../../lib/kv/index.js';
import { BlockCache, type StoredBlock } from '../../lib/engine/kv/block-cache.js';
import { blockHashes, eventHash } from '../../lib/engine/kv/block-hashes.js';
import type { KvCacheRank } from '../../lib/pd/index.js';

function cache(numBlocks: number, stored: StoredBlock[][] = [], removed: number[][] = []): BlockCache {
  const layout = new KvLayout({
    model: { layers: 1, kvHeads: 1, headDim: 8, dtype: 'fp16' },
    numBlocks,
    kv: 'split',
    order: 'NHD',
  });
  const regions = layout.regions('tensor').map((r) => ({ bytes: new Uint8Array(r.bytes) }));
  const rank = { layout, regions, addressing: 'tensor' } as unknown as KvCacheRank;
  return new BlockCache(rank, { onStored: (b) => stored.push([...b]), onRemoved: (h) => removed.push([...h]) });
}

const tokens = (n: number, base = 0) => Array.from({ length: n }, (_, i) => base + i);

describe('the engine block cache', () => {
  it('publishes full blocks (BlockStored, chained), reuses them as a prefix, evicts least recently used (BlockRemoved)', () => {
    const stored: StoredBlock[][] = [];
    const removed: number[][] = [];
    const c = cache(4, stored, removed);
    const t = tokens(40);
    const h = blockHashes(t, 16);
    const ids = c.allocate(3);
    c.publish(h, ids, t, 0);
    expect(stored[0]!.map((b) => b.hash)).toEqual([eventHash(h[0]!.key), eventHash(h[1]!.key)]);
    expect(stored[0]![1]!.parent).toBe(stored[0]![0]!.hash);
    expect(stored[0]![0]!.tokens).toEqual(tokens(16));
    c.release(ids);
    expect(c.used).toBe(2); // the partial block went back
    expect(c.pinned).toBe(0);
    expect(c.acquirePrefix(h)).toEqual(ids.slice(0, 2));
    expect(c.acquirePrefix(h, 1)).toEqual(ids.slice(0, 1));
    c.release([ids[0]!, ids[1]!, ids[0]!]);
    const more = c.allocate(4); // needs both cached blocks: evicts them
    expect(removed.flat().sort()).toEqual(stored[0]!.map((b) => b.hash).sort());
    expect(c.evictions).toBe(2);
    expect(() => c.allocate(1)).toThrow(expect.objectContaining({ code: ErrorCode.CAPACITY }));
    c.release(more);
    expect(c.used).toBe(0);
  });

  it('never evicts an owned block, and refuses double releases', () => {
    const c = cache(2);
    const t = tokens(32);
    const ids = c.allocate(2);
    c.publish(blockHashes(t, 16), ids, t, 0);
    c.retain(ids); // a lease
    c.release(ids); // the request
    expect(() => c.allocate(1)).toThrow(expect.objectContaining({ code: ErrorCode.CAPACITY }));
    c.release(ids); // the lease
    expect(() => c.release(ids)).toThrow(/released more often than owned/);
    expect(c.allocate(2)).toHaveLength(2);
  });

  it('a block whose hash is already cached stays private and goes back to the pool', () => {
    const c = cache(4);
    const t = tokens(16);
    const h = blockHashes(t, 16);
    const a = c.allocate(1);
    const b = c.allocate(1);
    c.publish(h, a, t, 0);
    c.publish(h, b, t, 0);
    c.release([...a, ...b]);
    expect(c.cached).toBe(1);
    expect(c.used).toBe(1);
  });
});
