import { describe, expect, it } from 'vitest';
import { demoWorkload } from '../../lib/system/workload.js';

describe('the demo workload', () => {
  it('is deterministic for a seed and its turns add up to the requests', () => {
    const a = demoWorkload({ requests: 100, seed: 3 });
    expect(demoWorkload({ requests: 100, seed: 3 })).toEqual(a);
    expect(demoWorkload({ requests: 100, seed: 4 })).not.toEqual(a);
    expect(a.sessions.reduce((n, s) => n + s.turns.length, 0)).toBe(100);
    expect(a.requests).toBe(100);
    expect(new Set(a.sessions.map((s) => s.id)).size).toBe(a.sessions.length);
  });

  it('shares a few long system prompts across multi-turn sessions, and has one-off documents', () => {
    const w = demoWorkload({ requests: 100 });
    expect(w.systemPrompts).toHaveLength(4);
    for (const p of w.systemPrompts) expect(p.length).toBeGreaterThanOrEqual(600);
    const uses = new Map<number, number>();
    for (const s of w.sessions)
      if (s.systemPrompt !== null) uses.set(s.systemPrompt, (uses.get(s.systemPrompt) ?? 0) + 1);
    expect([...uses.values()].every((n) => n >= 2)).toBe(true);
    expect(w.sessions.some((s) => s.turns.length >= 3)).toBe(true);
    const oneOffs = w.sessions.filter((s) => s.systemPrompt === null);
    expect(oneOffs.length).toBeGreaterThan(0);
    for (const s of oneOffs) {
      expect(s.turns).toHaveLength(1);
      expect(s.turns[0]!.user.length).toBeGreaterThan(600);
    }
    for (const s of w.sessions)
      for (const t of s.turns) {
        expect(t.maxTokens).toBeGreaterThanOrEqual(16);
        expect(t.maxTokens).toBeLessThanOrEqual(32);
      }
  });

  it('refuses a request count that is not a positive integer', () => {
    expect(() => demoWorkload({ requests: 0 })).toThrow(/requests must be an integer >= 1/);
    expect(() => demoWorkload({ requests: 1.5 })).toThrow(/requests/);
  });
});
