// Soak: thousands of concurrent READs and WRITEs of random sizes and offsets between two processes,
// over tcp and shared memory, registered and allocated memory alike: 0 corrupt bytes, 0 failed
// transfers, 0 lost notifications.
import { describe, expect, it } from 'vitest';
import type { SoakReport } from './fixtures/soak.js';
import { record, runScenario, scale, why } from './harness.js';

/** Runs: many small-to-medium descriptors, then fewer large ones (rendezvous, packed and in place). */
const RUNS = scale(
  [
    { transfers: 2_000, maxBytes: 64 << 10, seed: 1 },
    { transfers: 200, maxBytes: 1 << 20, seed: 2 },
  ],
  [
    { transfers: 10_000, maxBytes: 64 << 10, seed: 1 },
    { transfers: 10_000, maxBytes: 64 << 10, seed: 3 },
    { transfers: 1_000, maxBytes: 1 << 20, seed: 2 },
  ],
);

describe.each(['tcp', 'sm'] as const)('soak over %s', (tls) => {
  it.each(RUNS)(
    '$transfers concurrent transfers of up to $maxBytes bytes per descriptor: every byte and notification arrives',
    async (run) => {
      const r = await runScenario<SoakReport>('soak.js', { tls, ...run, timeoutMs: 300_000 }, 600_000);
      expect(r.report, why(r)).toBeDefined();
      const s = r.report!;
      record(`soak-${tls}-${run.transfers}-${run.maxBytes}-${run.seed}`, s);
      expect(s.transfers).toBe(run.transfers);
      expect(s.reads).toBeGreaterThan(run.transfers / 3);
      expect(s.writes).toBeGreaterThan(run.transfers / 3);
      expect(s.failures).toEqual({});
      expect(s.corruptReadBytes).toBe(0);
      expect(s.corruptWriteBytes).toBe(0);
      expect(s.targetHashesMatch).toBe(true);
      expect(s.notificationsUnique).toBe(s.notificationsSent);
      expect(s.notificationsReceived).toBe(s.notificationsSent);
    },
  );
});
