// Partitions between two network namespaces joined by a veth pair (made and removed here; their
// addresses exist only inside them): link down, blackhole routes, 100% loss, a slow link. Deadlines
// hold, quiesced resolves, and a reconnect works once the fault is gone. Skipped, saying why,
// where namespaces cannot be made (not root, no iproute2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Attempt, PartitionReport } from './fixtures/partition.js';
import { record, runScenario, why } from './harness.js';
import { makePair, netnsUnavailable, removePair } from './netns.js';
import type { NetnsPair } from './netns.js';

const DEADLINE_MS = 3_000;
/** How late past its deadline a failure may arrive (the engine thread, the event loop, a busy machine). */
const LATE_MS = 1_500;
const FAULTS = ['link-down', 'blackhole', 'loss', 'slow'] as const;

/**
 * Finding F12 (/work/wt/notes/findings-reliability.md): on main the initiator dies with SIGSEGV in
 * the engine's ProgressRetiring when it disconnects the old peer after the silent-loss fault, so the
 * scenario ends without a report and every test below fails. Expected to fail until the data
 * plane's fix is on main; then the tests that hold run as plain tests again.
 */
const CRASHES_TODAY = true;
const held = CRASHES_TODAY ? it.fails : it;

let unavailable: string | undefined;
let pair: NetnsPair | undefined;
let scenario: Promise<PartitionReport> | undefined;

beforeAll(async () => {
  unavailable = await netnsUnavailable();
  if (unavailable !== undefined) {
    console.warn(`partition tests skipped: ${unavailable}`);
    return;
  }
  pair = await makePair();
});

afterAll(async () => {
  if (pair !== undefined) await removePair(pair);
});

/** The scenario, run once for every test (a crash is not retried: it fails each test the same way). */
function run(): Promise<PartitionReport> {
  scenario ??= (async () => {
    const r = await runScenario<PartitionReport>(
      'partition.js',
      { a: pair!.a, b: pair!.b, faults: FAULTS, deadlineMs: DEADLINE_MS, quiesceBoundMs: 5_000 },
      600_000,
      { netns: pair!.a.ns, env: { UCX_TLS: 'tcp', UCX_NET_DEVICES: pair!.a.dev } },
    );
    if (r.report === undefined) throw new Error(`the partition scenario ended without a report: ${why(r)}`);
    record('partitions', r.report);
    return r.report;
  })();
  return scenario;
}

function transfersDuring(r: PartitionReport): (Attempt & { fault: string })[] {
  return r.faults.flatMap((f) => f.during.filter((d) => d.what !== 'connect()').map((d) => ({ ...d, fault: f.fault })));
}

describe('partitions between two network namespaces', () => {
  held(
    'runs every fault: a genuine READ works before it, and it is made as asked (netem, or said why not)',
    async (ctx) => {
      if (unavailable !== undefined) ctx.skip();
      const r = await run();
      expect(r.faults.map((f) => f.fault)).toEqual([...FAULTS]);
      for (const f of r.faults) expect(f.how.length).toBeGreaterThan(0);
      expect(r.faults[0]!.baselineOk).toBe(true);
    },
  );

  held(
    'fails transfers cut by a fault with a typed error at their deadline; a small READ crosses the slow link intact',
    async (ctx) => {
      if (unavailable !== undefined) ctx.skip();
      const r = await run();
      for (const t of transfersDuring(r)) {
        if (t.deadlineMs === DEADLINE_MS) {
          expect(t.outcome, JSON.stringify(t)).toMatch(/^ERR_KVWIRE_(TIMEOUT|PEER_LOST)$/);
          expect(t.elapsedMs, JSON.stringify(t)).toBeLessThan(DEADLINE_MS + LATE_MS);
        } else {
          expect(t, 'the small READ over the slow link').toMatchObject({ outcome: 'done', intact: true });
        }
      }
    },
  );

  // Finding F7: during a silent partition (100% loss), connect() settles only at the agent's
  // backstop, deadline + 2 s, not at its deadline. Expected to fail until fixed on main.
  it.fails('fails connect() during a fault with a typed error at its deadline', async (ctx) => {
    if (unavailable !== undefined) ctx.skip();
    const r = await run();
    for (const f of r.faults) {
      const c = f.during.find((d) => d.what === 'connect()');
      if (c === undefined) continue;
      expect(c.outcome, f.fault).toMatch(/^ERR_KVWIRE_[A-Z_]+$/);
      expect(c.elapsedMs, f.fault).toBeLessThan(DEADLINE_MS + LATE_MS);
    }
  });

  // Finding F3 (issue 10, defect 4; fixed on main): a WRITE that timed out during a partition never
  // quiesced while the partition lasted.
  held('resolves quiesced for every transfer while the fault lasts', async (ctx) => {
    if (unavailable !== undefined) ctx.skip();
    const r = await run();
    const stuck = transfersDuring(r).filter((t) => !t.quiesced);
    expect(stuck, JSON.stringify(stuck, null, 1)).toEqual([]);
  });

  // Finding F6 (issue 10, defect 8): after a READ timed out during a partition, later READs served
  // to the same initiator, on the old connection or a new one, fail with "serving the READ failed:
  // Request canceled". Expected to fail until the data plane's fix lands on main.
  it.fails('after each fault, the old peer and a new connection READ intact bytes', async (ctx) => {
    if (unavailable !== undefined) ctx.skip();
    const r = await run();
    for (const f of r.faults) {
      expect({ fault: f.fault, baseline: f.baseline, old: f.oldPeerAfter, reconnect: f.reconnect }).toEqual({
        fault: f.fault,
        baseline: 'done',
        old: 'done',
        reconnect: 'done',
      });
      expect(f.reconnectIntact, f.fault).toBe(true);
    }
  });
});
