// Partitions between two network namespaces joined by a veth pair (made and removed here; their
// addresses exist only inside them): link down, blackhole routes, 100% loss, a slow link. Each fault
// is a scenario of its own (a fresh initiator and target), so one fault's failure cannot hide
// another's; and one long-lived initiator goes through link down, blackhole and the slow link in
// turn (what a decode worker lives through; issue 10's defect 8 showed only in such a sequence).
// Deadlines hold, quiesced resolves while the fault lasts, and a new connection works once the fault
// is gone. The peer connected before the fault may have been closed by the engine to free the memory
// of transfers that outlived their deadline (it then fails, typed, and says to connect again).
// Skipped, saying why, where namespaces cannot be made (not root, no iproute2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Attempt, FaultOutcome, PartitionReport } from './fixtures/partition.js';
import { FULL, record, runScenario, why } from './harness.js';
import { makePair, netnsUnavailable, removePair } from './netns.js';
import type { NetnsPair } from './netns.js';

const DEADLINE_MS = 3_000;
/** How late past its deadline a failure may arrive (the engine thread, the event loop, a busy machine). */
const LATE_MS = 1_500;
type Fault = 'link-down' | 'blackhole' | 'loss' | 'slow';
type Check = 'scenario' | 'deadlines' | 'quiesced' | 'connect' | 'reconnect' | 'sequence';
const SEQUENCE = 'link-down, blackhole, slow in turn';
/** The CI part runs the silent loss alone and the sequence (every fault once); the full run each alone too. */
const SCENARIOS: { name: string; faults: Fault[] }[] = [
  { name: 'loss', faults: ['loss'] },
  { name: SEQUENCE, faults: ['link-down', 'blackhole', 'slow'] },
  ...(FULL
    ? [
        { name: 'link-down', faults: ['link-down'] as Fault[] },
        { name: 'blackhole', faults: ['blackhole'] as Fault[] },
        { name: 'slow', faults: ['slow'] as Fault[] },
      ]
    : []),
];

/**
 * What fails today on main, by scenario and check, with the finding in
 * /work/wt/notes/findings-reliability.md; expected to fail until fixed on main.
 * F12 (over a silent 100% loss the initiator died with SIGSEGV in the engine's ProgressRetiring) is
 *   fixed on main: that scenario's checks are plain tests but one:
 * F7: connect() during a silent 100% loss settles at the agent's backstop (deadline + 2 s), not at
 *   its deadline: UCX 1.13's blocking tcp connect() holds the engine thread 5.1 s (UCX's
 *   non-blocking connect fixes it but left transfers unquiesced after a tcp peer's death, 2 runs
 *   in 20: not used).
 * F6 (issue 10, defect 8): a long-lived initiator that went through link down and blackhole routes
 *   stops working: a new connection's READ times out (before the defect-4 fix: "Request canceled"),
 *   at the blackhole's baseline or after it, and a READ that timed out on the slow link afterwards is
 *   not quiesced in 5 s. Where it shows first varies from run to run; alone, each fault is fine. The
 *   sequence's own check covers all of it (later baselines, reconnects, quiesce).
 */
const FAILS_TODAY: Record<string, Check[]> = {
  'link-down': [],
  blackhole: [],
  loss: ['connect'],
  slow: [],
  [SEQUENCE]: ['sequence'],
};

/**
 * Checks that fail only now and then today, and so can be neither plain nor `it.fails`: they accept
 * the finding's typed failure (and still fail on anything else). F6: after the silent loss alone, a
 * new connection's first READ timed out in 1 of 6 runs on main 7eb6776 (the sequence, where F6
 * shows every time, is its `it.fails` check).
 */
const INTERMITTENT_TODAY: Record<string, Check[]> = { loss: ['reconnect'] };

let unavailable: string | undefined;
let pair: NetnsPair | undefined;

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

const runs = new Map<string, Promise<FaultOutcome[]>>();

/** The scenario, run once for all its checks (a crash fails each of them the same way). */
function run(name: string, faults: Fault[]): Promise<FaultOutcome[]> {
  let p = runs.get(name);
  if (p === undefined) {
    p = (async () => {
      const r = await runScenario<PartitionReport>(
        'partition.js',
        { a: pair!.a, b: pair!.b, faults, deadlineMs: DEADLINE_MS, quiesceBoundMs: 5_000 },
        300_000,
        { netns: pair!.a.ns, env: { UCX_TLS: 'tcp', UCX_NET_DEVICES: pair!.a.dev } },
      );
      if (r.report === undefined) throw new Error(`the scenario '${name}' ended without a report: ${why(r)}`);
      record(`partition-${name.replace(/[^a-z]+/g, '-')}`, r.report);
      return r.report.faults;
    })();
    runs.set(name, p);
  }
  return p;
}

function transfersDuring(fs: FaultOutcome[]): (Attempt & { fault: string })[] {
  return fs.flatMap((f) => f.during.filter((d) => d.what !== 'connect()').map((d) => ({ ...d, fault: f.fault })));
}

describe.each(SCENARIOS)('partitions between two network namespaces: $name', ({ name, faults }) => {
  const test = (check: Check) => (FAILS_TODAY[name]!.includes(check) ? it.fails : it);

  test('scenario')('is made as asked (netem, or said why not) after a genuine READ works', async (ctx) => {
    if (unavailable !== undefined) ctx.skip();
    const fs = await run(name, faults);
    expect(fs.map((f) => f.fault)).toEqual(faults);
    for (const f of fs) expect(f.how.length).toBeGreaterThan(0);
    // Later baselines of a sequence are the sequence's own check.
    expect(fs[0]!.baselineOk, `${fs[0]!.fault}: ${fs[0]!.baseline}`).toBe(true);
  });

  test('deadlines')(
    'fails transfers cut by it with a typed error at their deadline; a small READ crosses a slow link intact',
    async (ctx) => {
      if (unavailable !== undefined) ctx.skip();
      const fs = await run(name, faults);
      expect(transfersDuring(fs).length).toBeGreaterThan(0);
      for (const t of transfersDuring(fs)) {
        if (t.deadlineMs === DEADLINE_MS) {
          expect(t.outcome, JSON.stringify(t)).toMatch(/^ERR_KVWIRE_(TIMEOUT|PEER_LOST)$/);
          expect(t.elapsedMs, JSON.stringify(t)).toBeLessThan(DEADLINE_MS + LATE_MS);
        } else {
          expect(t, 'the small READ over the slow link').toMatchObject({ outcome: 'done', intact: true });
        }
      }
    },
  );

  test('quiesced')('resolves quiesced for every transfer while it lasts', async (ctx) => {
    if (unavailable !== undefined) ctx.skip();
    if (name === SEQUENCE) return; // the sequence's own check
    const fs = await run(name, faults);
    const stuck = transfersDuring(fs).filter((t) => !t.quiesced);
    expect(stuck, JSON.stringify(stuck, null, 1)).toEqual([]);
  });

  // Finding F7: over the silent loss, connect() settles at the agent's backstop (deadline + 2 s).
  test('connect')('fails connect() during it with a typed error at its deadline', async (ctx) => {
    if (unavailable !== undefined) ctx.skip();
    const fs = await run(name, faults);
    for (const f of fs) {
      if (f.fault === 'slow') continue; // the slow link connects (slowly): nothing to fail
      const c = f.during.find((d) => d.what === 'connect()');
      expect(c, `${f.fault}: a connect() was tried during the fault`).toBeDefined();
      expect(c!.outcome, f.fault).toMatch(/^ERR_KVWIRE_[A-Z_]+$/);
      expect(c!.elapsedMs, f.fault).toBeLessThan(DEADLINE_MS + LATE_MS);
    }
  });

  test('reconnect')(
    'lets a new connection READ intact bytes once it is gone; the old peer works or fails typed',
    async (ctx) => {
      if (unavailable !== undefined) ctx.skip();
      if (name === SEQUENCE) return; // the sequence's own check
      const fs = await run(name, faults);
      for (const f of fs) {
        expect(f.oldPeerAfter, f.fault).toMatch(/^(done|ERR_KVWIRE_[A-Z_]+ )/);
        if (INTERMITTENT_TODAY[name]?.includes('reconnect') === true && f.reconnect !== 'done') {
          expect(f.reconnect, `${f.fault} (F6, intermittent)`).toMatch(/^ERR_KVWIRE_TIMEOUT /);
          continue;
        }
        expect(f.reconnect, `${f.fault}: ${f.reconnect}`).toBe('done');
        expect(f.reconnectIntact, f.fault).toBe(true);
      }
    },
  );

  if (name === SEQUENCE) {
    test('sequence')(
      'keeps one initiator working through all of them: every baseline, reconnect and quiesce',
      async (ctx) => {
        if (unavailable !== undefined) ctx.skip();
        const fs = await run(name, faults);
        for (const f of fs) {
          expect(f.baselineOk, `${f.fault}: baseline ${f.baseline}`).toBe(true);
          expect(f.reconnect, `${f.fault}: reconnect ${f.reconnect}`).toBe('done');
          expect(f.reconnectIntact, f.fault).toBe(true);
        }
        const stuck = transfersDuring(fs).filter((t) => !t.quiesced);
        expect(stuck, JSON.stringify(stuck, null, 1)).toEqual([]);
      },
    );
  }
});
