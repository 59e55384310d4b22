// The native code under AddressSanitizer and ThreadSanitizer: a separate build of the addon
// (sanitizers/build.sh), loaded by a copy of the package, runs a representative subset of the
// suite's two-process scenarios with the sanitizer's runtime preloaded into every process. Every
// scenario must complete, and no process may write a report (TSan: after the suppressions in
// sanitizers/tsan.supp, which cover Node's internals, each with its reason, and apart from the two
// kinds tsan-triage.ts counts instead: races inside UCX itself, and UCX serving a peer from a buffer
// whose allocation TSan cannot order before it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FULL, record, scale } from './harness.js';
import { logText, sanitizedPackage, startSanitized, takeReports } from './sanitize.js';
import type { SanitizedPackage, SanitizerKind, SanitizerReport } from './sanitize.js';

interface Scenario {
  name: string;
  fixture: string;
  args: Record<string, unknown>;
  execArgv?: string[];
  /** Only in the full run (the CI part keeps one of each kind). */
  fullOnly?: boolean;
}

/** The scenarios, at a size the slower sanitizer (TSan, ~10x) runs in minutes. */
const ALL: Scenario[] = [
  {
    name: 'soak over tcp',
    fixture: 'soak.js',
    args: { tls: 'tcp', transfers: scale(300, 2_000), seed: 1, maxBytes: 64 << 10, timeoutMs: 300_000 },
    fullOnly: true,
  },
  {
    name: 'soak over sm',
    fixture: 'soak.js',
    args: { tls: 'sm', transfers: scale(300, 2_000), seed: 2, maxBytes: 64 << 10, timeoutMs: 300_000 },
  },
  {
    // One transfer at a time: the small ones are driven to completion by the posting thread, which
    // runs the engine's turns while the engine thread parks (submit.cc, AwaitCompletion).
    name: 'sequential soak over tcp',
    fixture: 'soak.js',
    args: {
      tls: 'tcp',
      transfers: scale(300, 2_000),
      seed: 7,
      maxBytes: 64 << 10,
      timeoutMs: 300_000,
      sequential: true,
    },
  },
  {
    name: 'peer death over tcp',
    fixture: 'peer-death.js',
    args: { tls: 'tcp', rounds: scale(2, 10), seed: 3, timeoutMs: 20_000, quiesceBoundMs: 3_000, maxBytes: 4 << 20 },
  },
  {
    name: 'peer death over sm',
    fixture: 'peer-death.js',
    args: { tls: 'sm', rounds: scale(2, 10), seed: 4, timeoutMs: 20_000, quiesceBoundMs: 3_000, maxBytes: 4 << 20 },
  },
  {
    name: 'forged metadata over tcp-am',
    fixture: 'attack.js',
    args: { path: 'tcp-am', piece: 64 << 10, timeoutMs: 20_000 },
  },
  { name: 'lifetimes over tcp', fixture: 'lifetime.js', args: { tls: 'tcp', rounds: 12, seed: 5 }, fullOnly: true },
  { name: 'lifetimes over sm', fixture: 'lifetime.js', args: { tls: 'sm', rounds: scale(4, 12), seed: 6 } },
  {
    name: 'connect/disconnect cycles over tcp',
    fixture: 'leaks.js',
    args: { tls: 'tcp', kind: 'disconnect', cycles: scale(50, 500), warmup: 10 },
    execArgv: ['--expose-gc'],
    fullOnly: true,
  },
  {
    name: 'connect/close cycles over sm',
    fixture: 'leaks.js',
    args: { tls: 'sm', kind: 'close', cycles: scale(30, 300), warmup: 10 },
    execArgv: ['--expose-gc'],
  },
  {
    name: 'descriptor fuzzing on UCX',
    fixture: 'fuzz.js',
    args: { target: 'descriptors-ucx', seed: 7, start: 0, count: scale(300, 3_000), progressEvery: 100 },
  },
];
const SCENARIOS = ALL.filter((s) => FULL || s.fullOnly !== true);

const SANITIZERS: SanitizerKind[] = ['asan', 'tsan'];

describe.each(SANITIZERS)('the native code under %s', (kind) => {
  let pkg: SanitizedPackage | undefined;
  const figures: Record<string, { completed: boolean; reports: number; counted: Record<string, number>; ms: number }> =
    {};

  beforeAll(async () => {
    pkg = await sanitizedPackage(kind);
  }, 1_800_000);

  afterAll(() => {
    record(`sanitizer-${kind}`, figures);
    pkg?.remove();
  });

  it.each(SCENARIOS)('$name: completes with no report', async (s) => {
    const start = performance.now();
    const p = startSanitized(pkg!, s.fixture, s.args, s.execArgv);
    const last = await p.next('report', 1_200_000);
    if (last.type !== 'report') p.kill('SIGKILL');
    await p.exited;
    const logs = last.type === 'report' ? '' : logText(pkg!);
    const all: SanitizerReport[] = takeReports(pkg!);
    const reports = all.filter((r) => r.triage === undefined);
    const counted: Record<string, number> = {};
    for (const r of all) if (r.triage !== undefined) counted[r.triage] = (counted[r.triage] ?? 0) + 1;
    figures[s.name] = {
      completed: last.type === 'report',
      reports: reports.length,
      counted,
      ms: performance.now() - start,
    };
    expect(
      last.type,
      `${JSON.stringify(last).slice(0, 1500)}; stderr: ${p.stderr.slice(-3000)}; sanitizer logs: ${logs.slice(-6000)}`,
    ).toBe('report');
    expect(reports.map((r) => `${r.summary} (pid ${r.pid})\n${r.text}`)).toEqual([]);
  });
});
