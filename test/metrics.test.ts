import { describe, expect, it } from 'vitest';
import { counter, createRegistry, gauge } from '../lib/metrics.js';

describe('metrics', () => {
  it('returns the same metric for the same name on one registry', async () => {
    const r = createRegistry();
    const a = counter(r, 'kvwire_test_total', 'test', ['x']);
    const b = counter(r, 'kvwire_test_total', 'test', ['x']);
    expect(a).toBe(b);
    a.inc({ x: '1' }, 2);
    expect(await r.getSingleMetricAsString('kvwire_test_total')).toContain('kvwire_test_total{x="1"} 2');
  });
  it('refuses a name registered as another kind', () => {
    const r = createRegistry();
    counter(r, 'kvwire_kind', 'k');
    expect(() => gauge(r, 'kvwire_kind', 'k')).toThrow(/already registered as a Counter/);
  });
});
