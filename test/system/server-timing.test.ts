import { describe, expect, it } from 'vitest';
import { parseServerTiming, timingOf } from '../../lib/system/server-timing.js';

describe('Server-Timing', () => {
  it('reads names, durations, descriptions and extra parameters, across joined headers', () => {
    const t = parseServerTiming(
      'router;dur=1.25, sidecar-prefill;dur=40;desc="prefill-0, 1 retry", decode-kv-pull;dur=3.5;bytes=1048576;blocks=32,cache;desc=hit',
    );
    expect(t.map((e) => e.name)).toEqual(['router', 'sidecar-prefill', 'decode-kv-pull', 'cache']);
    expect(timingOf(t, 'router')).toBe(1.25);
    expect(t[1]!.desc).toBe('prefill-0, 1 retry');
    expect(t[2]!.params).toEqual({ bytes: '1048576', blocks: '32' });
    expect(t[3]).toEqual({ name: 'cache', desc: 'hit', params: {} });
    expect(timingOf(t, 'missing')).toBeUndefined();
  });

  it('skips what does not parse instead of failing (the first of a repeated parameter counts)', () => {
    expect(parseServerTiming(undefined)).toEqual([]);
    expect(parseServerTiming(null)).toEqual([]);
    expect(parseServerTiming('')).toEqual([]);
    const t = parseServerTiming('bad name;dur=1, ok;dur=x, two;dur=2;dur=3, "quoted";dur=1');
    expect(t.map((e) => [e.name, e.dur])).toEqual([
      ['ok', undefined],
      ['two', 2],
    ]);
  });
});
