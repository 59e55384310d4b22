// The sidecar benchmark runs end to end (fake workers, sidecar and wrk in their own processes) and
// reports every arm without errors. Not a timed test: it checks the benchmark works, not its figures.
import { describe, expect, it } from 'vitest';
import { renderMarkdown, runSidecarBench } from '../../bench/sidecar/bench.js';

describe('bench/sidecar', () => {
  it('measures direct, decode-only, prefill and P/D arms and renders the table', async () => {
    const lines: string[] = [];
    const report = await runSidecarBench({
      concurrency: [2],
      seconds: 1,
      rounds: 1,
      serviceMs: 0,
      log: (l) => lines.push(l),
    });
    expect(lines).toHaveLength(4);
    const [r] = report.results;
    for (const arm of ['direct', 'sidecar', 'prefill', 'pd'] as const) {
      expect(r!.arms[arm].rps, arm).toBeGreaterThan(0);
      expect(r!.arms[arm].errors, arm).toBe(0);
      expect(r!.arms[arm].p99).toBeGreaterThanOrEqual(r!.arms[arm].p50);
    }
    // The sidecar's own time came from its histogram: a bucket bound, finite.
    expect(Number.isFinite(r!.ownOverhead.decodeOnly.p99)).toBe(true);
    const table = renderMarkdown(report);
    expect(table).toMatch(/\| 2 \| decode-only \|/);
    expect(table).toMatch(/\| 2 \| P\/D \|/);
    expect(table).toContain('No errors.');
  });
});
