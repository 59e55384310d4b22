// Leaks: register/deregister, allocate/deregister, connect/disconnect and connect/close cycles.
// Resident memory may not grow by 5% or more over a run, and open file descriptors stay flat after
// the warm-up, on the driving side and on the target's. Resident memory is sampled after a
// collection at every tenth of the run, and its growth is judged by the rate of the run's second
// half (the median growth per tenth, times ten) and by the whole run's growth, whichever is less: a
// leak grows with every cycle and fails both, while glibc's arenas and V8's heap size themselves in
// steps and then stay (the full run's 100,000 register cycles grew 24% over their first 30,000, then
// stayed within 1%; a new engine thread's arena shows as one step of ~5 MB), and a heap that shrank
// and grows back is no leak either (10,000 close cycles over sm: 73.5 -> 71.7 -> 77.4 MB, -1% overall). The sensitivity is 5% of ~75 MB over the run: ~7 KB a cycle in 500 cycles, ~40 bytes
// in 100,000.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import type { LeakReport } from './fixtures/leaks.js';
import { record, runScenario, scale, why } from './harness.js';

const CASES = [
  { kind: 'register', cycles: scale(5_000, 100_000) },
  { kind: 'allocate', cycles: scale(5_000, 100_000) },
  { kind: 'disconnect', cycles: scale(500, 10_000) },
  { kind: 'close', cycles: scale(500, 10_000) },
] as const;

/** Growth allowed: resident memory over a run at the second half's rate, relative; descriptors, absolute. */
const MAX_RSS_GROWTH = 0.05;

/**
 * The growth of a run at the rate of its second half, relative to the first sample: the median of
 * the increments between the last six tenths, times ten (steps that happen once do not count).
 */
function projectedGrowth(trend: number[]): number {
  const late = trend.slice(-6);
  const steps = late
    .slice(1)
    .map((v, i) => v - late[i]!)
    .sort((x, y) => x - y);
  const median = steps[Math.floor(steps.length / 2)] ?? 0;
  return (median * 10) / trend[0]!;
}

/** The growth a run is judged by: its second half's rate or its overall growth, whichever is less. */
function judgedGrowth(trend: number[], before: number, after: number): number {
  return Math.min(projectedGrowth(trend), (after - before) / before);
}

const MAX_FD_GROWTH = 2;

/**
 * Cycles over shared memory run in an IPC namespace of their own where one can be made (root):
 * finding F13, every inbound connection leaves the target attached to a System V segment, and
 * 10,000 of them exhaust the host's segment limit (SHMMNI, 4096), failing every other process's
 * UCX shared memory meanwhile.
 */
const IPC_NAMESPACE = spawnSync('unshare', ['--ipc', 'true'], { timeout: 20_000 }).status === 0;

describe('the growth projection', () => {
  const mb = (xs: number[]) => xs.map((x) => x * 1e6);
  it('finds a leak that grows with every cycle, late or throughout', () => {
    expect(projectedGrowth(mb([75, 76.4, 77.8, 79.2, 80.6, 82, 83.4, 84.8, 86.2, 87.6]))).toBeGreaterThan(0.15);
    expect(projectedGrowth(mb([75, 75, 75, 75, 75, 76, 77, 78, 79, 80]))).toBeGreaterThan(0.1);
  });
  it('does not count a heap that settles, or one step of an arena', () => {
    expect(projectedGrowth(mb([78.1, 82.9, 91, 90.5, 90.4, 91.1, 91, 91.3, 91.1, 90.9]))).toBeLessThan(0.02);
    expect(projectedGrowth(mb([74.7, 75.2, 75.5, 75.7, 80.1, 79.8, 80.1, 79.9, 80.2, 80]))).toBeLessThan(0.02);
    expect(projectedGrowth(mb([75, 75, 75, 75, 75, 75, 75, 80, 80, 80]))).toBeLessThan(0.02);
  });
  it('judges by the lesser of the late rate and the whole run: a heap that dipped and grows back passes, a leak fails', () => {
    const dip = mb([73.5, 75.2, 75.3, 73.7, 71.7, 73.6, 75.0, 75.7, 75.3, 77.4]);
    expect(judgedGrowth(dip, 73.5e6, 72.6e6)).toBeLessThan(0.05);
    const leak = mb([75, 76.4, 77.8, 79.2, 80.6, 82, 83.4, 84.8, 86.2, 87.6]);
    expect(judgedGrowth(leak, 74e6, 87.6e6)).toBeGreaterThan(0.15);
  });
});

/**
 * Cases that leak today, with the finding in /work/wt/notes/findings-reliability.md; expected to
 * fail until the data plane's fixes land on main. None now: F4 (issue 10, defect 5: peer.disconnect()
 * over tcp leaked file descriptors on both sides) and F5 / F13 (connections over shared memory
 * leaked resident memory and System V segments: ~16-28 KB and one segment per cycle) are fixed on
 * main; their cases run as plain tests.
 */
const LEAKS_TODAY = new Set<string>();

describe.each(['tcp', 'sm'] as const)('leaks over %s', (tls) => {
  for (const c of CASES) {
    const test = LEAKS_TODAY.has(`${c.kind} ${tls}`) ? it.fails : it;
    test(`${c.cycles} ${c.kind} cycles: resident memory grows under 5% (judged as below), descriptors stay flat`, async () => {
      const r = await runScenario<LeakReport>(
        'leaks.js',
        { tls, kind: c.kind, cycles: c.cycles, warmup: Math.max(100, Math.floor(c.cycles / 20)) },
        c.cycles * 100 + 120_000,
        { execArgv: ['--expose-gc'], ipcns: tls === 'sm' && IPC_NAMESPACE },
      );
      expect(r.report, why(r)).toBeDefined();
      const l = r.report!;
      const growth = judgedGrowth(l.rssTrend, l.before.rss, l.after.rss);
      const targetGrowth = l.targetRssTrend && judgedGrowth(l.targetRssTrend, l.targetBefore!.rss, l.targetAfter!.rss);
      const overall = (l.after.rss - l.before.rss) / l.before.rss;
      const targetOverall = l.targetBefore && (l.targetAfter!.rss - l.targetBefore.rss) / l.targetBefore.rss;
      record(`leaks-${c.kind}-${tls}`, {
        cycles: l.cycles,
        rssBefore: l.before.rss,
        rssAfter: l.after.rss,
        rssGrowthProjected: projectedGrowth(l.rssTrend),
        rssGrowthJudged: growth,
        rssGrowthOverall: overall,
        fdsBefore: l.before.fds,
        fdsAfter: l.after.fds,
        targetRssGrowthProjected: l.targetRssTrend && projectedGrowth(l.targetRssTrend),
        targetRssGrowthJudged: targetGrowth,
        targetRssTrend: l.targetRssTrend,
        targetRssGrowthOverall: targetOverall,
        targetFdsBefore: l.targetBefore?.fds,
        targetFdsAfter: l.targetAfter?.fds,
        rssTrend: l.rssTrend,
        durationMs: l.durationMs,
      });
      expect(l.after.fds - l.before.fds, 'descriptors opened and never closed').toBeLessThanOrEqual(MAX_FD_GROWTH);
      expect(growth, `resident memory at every tenth: ${l.rssTrend.join(', ')}`).toBeLessThan(MAX_RSS_GROWTH);
      if (l.targetBefore !== undefined) {
        expect(l.targetAfter!.fds - l.targetBefore.fds, "the target's descriptors").toBeLessThanOrEqual(MAX_FD_GROWTH);
        expect(targetGrowth!, `the target's resident memory: ${l.targetRssTrend!.join(', ')}`).toBeLessThan(
          MAX_RSS_GROWTH,
        );
      }
    });
  }
});
