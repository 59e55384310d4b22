// Runs a seeded fuzz target over many inputs in child processes (fixtures/fuzz.ts). A child that
// crashes or stops making progress is replaced; the input that did it is found (the block since the
// last progress message is replayed one input at a time) and recorded; the run goes on after it.
// So a crash fails a test with the input's index instead of killing the test runner.
import { Proc } from './fixtures/process.js';

/** Where a fuzz run stands, and how it ended. */
export interface FuzzSummary {
  target: string;
  seed: number;
  inputs: number;
  /** Outcome -> inputs ('accepted:...', 'ignored:...', codes, 'untyped:...', 'crash', 'hang'). */
  outcomes: Record<string, number>;
  /** The first inputs whose error had no stable code. */
  untyped: { index: number; error: string }[];
  crashes: { index: number; exit: string; evidence: string }[];
  hangs: { index: number }[];
  children: number;
  durationMs: number;
}

/** Options of {@link fuzz}. */
export interface FuzzOptions {
  /** Inputs per child process (default 10,000). */
  chunk?: number;
  /** Inputs between progress messages (default 100). */
  progressEvery?: number;
  /** No progress for this long is a hang (default 60 s). */
  stallMs?: number;
  /** Extra environment of the children. */
  env?: NodeJS.ProcessEnv;
}

/** Runs inputs [0, total) of `target` seeded `seed`. */
export async function fuzz(target: string, seed: number, total: number, opts: FuzzOptions = {}): Promise<FuzzSummary> {
  const chunk = opts.chunk ?? 10_000;
  const every = opts.progressEvery ?? 100;
  const stallMs = opts.stallMs ?? 60_000;
  const s: FuzzSummary = {
    target,
    seed,
    inputs: total,
    outcomes: {},
    untyped: [],
    crashes: [],
    hangs: [],
    children: 0,
    durationMs: 0,
  };
  const start = performance.now();
  const merge = (m: Record<string, unknown>) => {
    for (const [k, v] of Object.entries((m.outcomes as Record<string, number>) ?? {}))
      s.outcomes[k] = (s.outcomes[k] ?? 0) + v;
    for (const u of (m.untyped as FuzzSummary['untyped']) ?? []) if (s.untyped.length < 20) s.untyped.push(u);
  };

  /** Runs [from, to) in one child; returns where it stopped early (crash or hang), or undefined. */
  async function child(
    from: number,
    to: number,
    step: number,
  ): Promise<{ at: number; how: 'crash' | 'hang'; exit: string; evidence: string } | undefined> {
    s.children++;
    const p = new Proc('fuzz.js', {
      args: { target, seed, start: from, count: to - from, progressEvery: step },
      env: opts.env,
    });
    let at = from;
    for (;;) {
      const m = await p.next(['progress', 'report'], stallMs);
      if (m.type === 'progress') {
        merge(m);
        at = m.next as number;
        continue;
      }
      if (m.type === 'report') {
        merge(m.report as Record<string, unknown>);
        await p.exited;
        return undefined;
      }
      const how = m.type === 'timeout' ? 'hang' : 'crash';
      await p.stop();
      const e = p.exit!;
      return {
        at,
        how,
        exit: e.signal ?? `code ${e.code}`,
        evidence: `${JSON.stringify(m).slice(0, 300)} ${p.stderr.slice(-1500)}`,
      };
    }
  }

  async function range(from: number, to: number): Promise<void> {
    while (from < to) {
      const end = Math.min(to, from + chunk);
      const step = end - from <= every ? 1 : every;
      const stop = await child(from, end, step);
      if (stop === undefined) {
        from = end;
        continue;
      }
      if (step === 1) {
        // `stop.at` is the input that was running.
        if (stop.how === 'hang') s.hangs.push({ index: stop.at });
        else s.crashes.push({ index: stop.at, exit: stop.exit, evidence: stop.evidence });
        s.outcomes[stop.how] = (s.outcomes[stop.how] ?? 0) + 1;
        from = stop.at + 1;
      } else {
        // One of [at, at + every) did it: replay them one at a time, then go on after them.
        const blockEnd = Math.min(end, stop.at + every);
        const seen = s.crashes.length + s.hangs.length;
        await range(stop.at, blockEnd);
        if (s.crashes.length + s.hangs.length === seen) {
          // Not reproduced input by input (it needed the state of the inputs before): still counted.
          const evidence = `inputs ${stop.at}..${blockEnd - 1} did not ${stop.how} when replayed alone; ${stop.evidence}`;
          if (stop.how === 'hang') s.hangs.push({ index: stop.at });
          else s.crashes.push({ index: stop.at, exit: stop.exit, evidence });
          s.outcomes[stop.how] = (s.outcomes[stop.how] ?? 0) + 1;
        }
        from = blockEnd;
      }
    }
  }

  await range(0, total);
  s.durationMs = performance.now() - start;
  return s;
}
