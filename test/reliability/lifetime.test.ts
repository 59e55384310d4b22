// Lifetimes against one long-lived target: processes exiting with transfers in flight (with and
// without close()), worker threads terminated mid-transfer, agents dropped without close() and
// collected. None may crash; the target lives on and serves a fresh peer; its descriptors stay flat.
import { describe, expect, it } from 'vitest';
import type { LifetimeReport } from './fixtures/lifetime.js';
import { record, runScenario, scale, why } from './harness.js';

const ROUNDS = scale(8, 100); // the four kinds in turn

describe.each(['tcp', 'sm'] as const)('lifetimes over %s', (tls) => {
  it(`${ROUNDS} processes and threads end with transfers in flight: none crashes, the target serves on`, async () => {
    const r = await runScenario<LifetimeReport>(
      'lifetime.js',
      { tls, rounds: ROUNDS, seed: 17 },
      ROUNDS * 30_000 + 60_000,
    );
    expect(r.report, why(r)).toBeDefined();
    const l = r.report!;
    const kinds = [...new Set(l.outcomes.map((o) => o.kind))];
    record(`lifetime-${tls}`, {
      rounds: l.outcomes.length,
      perKind: Object.fromEntries(kinds.map((k) => [k, l.outcomes.filter((o) => o.kind === k).length])),
      crashes: l.outcomes.filter((o) => o.crashed).length,
      targetAliveEveryRound: l.targetAliveEveryRound,
      freshPeerOk: l.freshPeerOk,
      targetFds: l.targetFds,
    });
    expect(l.outcomes.length).toBe(ROUNDS);
    const crashed = l.outcomes.filter((o) => o.crashed);
    expect(crashed, JSON.stringify(crashed, null, 1)).toEqual([]);
    expect(l.targetAliveEveryRound).toBe(true);
    expect(l.freshPeerOk).toBe(true);
    expect(l.targetFds.after - l.targetFds.before).toBeLessThanOrEqual(2);
  });
});
