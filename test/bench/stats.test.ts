import { describe, expect, it } from 'vitest';
import { percentile, Samples, summarize } from '../../bench/stats.js';

describe('bench stats', () => {
  it('takes nearest-rank percentiles', () => {
    const s = Float64Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(s, 50)).toBe(50);
    expect(percentile(s, 99)).toBe(99);
    expect(percentile(s, 100)).toBe(100);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBe(0);
  });

  it('summarizes unsorted samples without modifying them', () => {
    const raw = [5, 1, 4, 2, 3];
    expect(summarize(raw)).toEqual({ avg: 3, p50: 3, p99: 5, min: 1, max: 5 });
    expect(raw).toEqual([5, 1, 4, 2, 3]);
    expect(summarize([])).toEqual({ avg: 0, p50: 0, p99: 0, min: 0, max: 0 });
  });

  it('grows a sample column as needed', () => {
    const s = new Samples(1);
    for (let i = 0; i < 1000; i++) s.add(i);
    expect(s.length).toBe(1000);
    expect(s.summary().max).toBe(999);
  });
});
