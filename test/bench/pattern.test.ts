import { describe, expect, it } from 'vitest';
import { BytePattern, ENTRY_STRIDE, regionSalt, TILE_BYTES } from '../../bench/transfer/pattern.js';

describe('bench byte pattern', () => {
  const p = new BytePattern();

  it('is a function of (salt, offset) that both processes compute alike', () => {
    const a = Buffer.alloc(3 * TILE_BYTES);
    p.fill(a, 0, a.length, 5);
    expect(p.firstMismatch(a, 0, a.length, 5)).toBe(-1);
    expect(new BytePattern().firstMismatch(a, 0, a.length, 5)).toBe(-1);
    // A range written from another source offset verifies against that offset.
    const b = Buffer.alloc(4096);
    p.fill(b, 0, 4096, 5, 12345);
    expect(p.firstMismatch(b, 0, 4096, 5, 12345)).toBe(-1);
    expect(regionSalt('initiator', 0)).not.toBe(regionSalt('target', 0));
  });

  it('finds the first wrong byte, and a block written at the wrong place', () => {
    const a = Buffer.alloc(1 << 20);
    p.fill(a, 0, a.length, 0);
    a[777_777] ^= 1;
    expect(p.firstMismatch(a, 0, a.length, 0)).toBe(777_777);
    // Block 3's bytes copied over block 5 (a misdirected descriptor) never match.
    const fresh = Buffer.alloc(1 << 20);
    p.fill(fresh, 0, fresh.length, 0);
    fresh.copy(fresh, 5 * 4096, 3 * 4096, 4 * 4096);
    expect(p.firstMismatch(fresh, 5 * 4096, 4096, 0)).toBeGreaterThanOrEqual(0);
  });

  it('poisons with the complement, so an unwritten byte cannot pass', () => {
    const a = Buffer.alloc(8192);
    p.poison(a, 0, 8192, 9);
    for (let i = 0; i < 8192; i += 997) expect(a[i]).not.toBe(p.byteAt(9, i));
    expect(p.firstMismatch(a, 0, 8192, 9)).toBe(0);
  });

  it('verifies entry lists, reports the descriptor, and restores the region', () => {
    const region = Buffer.alloc(64 << 10);
    const own = 3;
    p.fill(region, 0, region.length, own);
    const entries = new Float64Array(2 * ENTRY_STRIDE);
    entries.set([0, 0, 4096, 11, 0, 0, 8192, 4096, 11, 4096]);
    p.poisonEntries([region], entries);
    p.fill(region, 0, 4096, 11, 0); // descriptor 0 lands; descriptor 1 never does
    const m = p.verifyEntries([region], entries, [own]);
    expect(m).toMatchObject({ descriptor: 1, region: 0, offset: 8192, byteInDescriptor: 0 });
    expect(p.firstMismatch(region, 0, region.length, own)).toBe(-1);
  });
});
