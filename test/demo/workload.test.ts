import { describe, expect, it } from 'vitest';
import { demoWorkload } from '../../lib/demo/workload.js';
import { blockHashes } from '../../lib/engine/runtimes/synthetic/content.js';

describe('demo workload', () => {
  it('is deterministic for a seed, with lengths in range and distinct ids', () => {
    const a = demoWorkload({ requests: 50, minTokens: 16, maxTokens: 300, seed: 3 });
    expect(demoWorkload({ requests: 50, minTokens: 16, maxTokens: 300, seed: 3 })).toEqual(a);
    expect(demoWorkload({ requests: 50, minTokens: 16, maxTokens: 300, seed: 4 })).not.toEqual(a);
    expect(new Set(a.map((r) => r.id)).size).toBe(50);
    for (const r of a) {
      expect(r.tokens.length).toBeGreaterThanOrEqual(16);
      expect(r.tokens.length).toBeLessThanOrEqual(300);
    }
  });

  it('shares prefixes among requests, so full blocks repeat', () => {
    const reqs = demoWorkload({ requests: 40, minTokens: 64, maxTokens: 512 });
    const seen = new Map<string, number>();
    for (const r of reqs)
      for (const h of blockHashes(r.tokens, 16)) if (h.full) seen.set(h.key, (seen.get(h.key) ?? 0) + 1);
    expect([...seen.values()].some((n) => n > 1)).toBe(true);
  });
});
