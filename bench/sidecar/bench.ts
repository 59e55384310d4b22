/**
 * The sidecar's added latency and throughput, against calling the decode worker directly.
 *
 * Four arms, each a wrk run (closed loop, keep-alive, `connections` in flight) against fast fake
 * workers in their own processes:
 * - `direct`: wrk -> decode worker.
 * - `sidecar`: wrk -> sidecar -> decode worker (no prefill target: the decode-only path).
 * - `prefill`: wrk -> prefill worker (the baseline of the P/D path's first leg).
 * - `pd`: wrk -> sidecar -> prefill worker, then decode worker (x-prefiller-host-port set).
 *
 * Arms are interleaved within each round and the order flips every round, so a burst of load from
 * elsewhere on a shared machine lands on both sides of a comparison. Each figure is the median over
 * rounds of the per-round figure (differences and ratios are taken within a round).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { runWrk, type WrkResult } from './wrk.js';

/** Options of {@link runSidecarBench}. */
export interface SidecarBenchOptions {
  /** Concurrent requests (wrk connections) to measure at. */
  readonly concurrency: readonly number[];
  /** Seconds per wrk run. */
  readonly seconds: number;
  /** Rounds (each runs every arm at every concurrency once). */
  readonly rounds: number;
  /** Fake workers' service time per request in ms (0: answer at once). */
  readonly serviceMs: number;
  /** Progress lines (stderr). */
  readonly log: (line: string) => void;
}

/** The arms. */
export type Arm = 'direct' | 'sidecar' | 'prefill' | 'pd';
const ARMS: readonly Arm[] = ['direct', 'sidecar', 'prefill', 'pd'];

/** Figures at one concurrency (medians over rounds). */
export interface ConcurrencyResult {
  readonly connections: number;
  /** Each arm's median figures. */
  readonly arms: Record<
    Arm,
    { p50: number; p90: number; p99: number; rps: number; errors: number; cpuPerRequest: number }
  >;
  /** Decode-only path: sidecar minus direct latency, µs. */
  readonly decodeOnlyOverhead: { p50: number; p99: number };
  /** Decode-only throughput, sidecar / direct. */
  readonly decodeOnlyThroughputRatio: number;
  /** P/D path minus both legs called directly (direct decode + direct prefill), µs. */
  readonly pdOverhead: { p50: number; p99: number };
  /**
   * P/D throughput against a client that runs both legs itself at the same concurrency: each of
   * its requests takes a prefill and a decode round trip, so it completes
   * 1 / (1/prefill rps + 1/decode rps) requests per second.
   */
  readonly pdThroughputRatio: number;
  /** The sidecar's own time per request from its histogram (bucket bounds, µs), per path. */
  readonly ownOverhead: { decodeOnly: { p50: number; p99: number }; pd: { p50: number; p99: number } };
}

/** The whole run. */
export interface SidecarBenchReport {
  readonly options: Omit<SidecarBenchOptions, 'log'>;
  readonly results: ConcurrencyResult[];
  readonly loadAverage: { start: number[]; end: number[] };
  readonly cores: number;
}

const here = dirname(fileURLToPath(import.meta.url));
/** The compiled children (this module also runs from its TypeScript source, under vitest). */
const childDir = here.includes(join('dist', 'bench')) ? here : join(here, '..', '..', 'dist', 'bench', 'sidecar');

interface Child {
  readonly process: ChildProcess;
  readonly port: number;
}

function startChild(script: string, args: string[]): Promise<Child> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(childDir, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (c: string) => {
      out += c;
      const m = /ready (\d+)/.exec(out);
      if (m) resolve({ process: child, port: Number(m[1]) });
    });
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code} before it was ready`)));
  });
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** CPU time (user + system) a process has used so far, in µs (Linux /proc; 10 ms ticks). */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  // After "pid (comm) ", utime and stime are fields 12 and 13 (0-based).
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100;
}

/** Cumulative counts of `kvwire_sidecar_overhead_seconds` buckets for one route. */
async function overheadBuckets(sidecarPort: number, route: string): Promise<Map<number, number>> {
  const res = await fetch(`http://127.0.0.1:${sidecarPort}/sidecar/metrics`);
  const text = await res.text();
  const buckets = new Map<number, number>();
  const re = new RegExp(`^kvwire_sidecar_overhead_seconds_bucket\\{le="([^"]+)",route="${route}"\\} (\\d+)`, 'gm');
  for (const m of text.matchAll(re)) buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  return buckets;
}

/** Bucket bound (µs) under which `q` of the requests between two scrapes fell. */
function bucketQuantile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total === 0) return Number.NaN;
  for (const le of bounds) {
    if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le * 1e6;
  }
  return Infinity;
}

/** Runs the benchmark. */
export async function runSidecarBench(options: SidecarBenchOptions): Promise<SidecarBenchReport> {
  const { availableParallelism, loadavg } = await import('node:os');
  const start = loadavg();
  const children: Child[] = [];
  try {
    const decode = await startChild('fake-worker.js', ['decode', String(options.serviceMs)]);
    children.push(decode);
    const prefill = await startChild('fake-worker.js', ['prefill', String(options.serviceMs)]);
    children.push(prefill);
    const sidecar = await startChild('sidecar-process.js', [
      `http://127.0.0.1:${decode.port}`,
      `127.0.0.1:${prefill.port}`,
    ]);
    children.push(sidecar);
    const url = (port: number) => `http://127.0.0.1:${port}/v1/completions`;
    const pdHeader = { 'x-prefiller-host-port': `127.0.0.1:${prefill.port}` };

    // Warm up every path (JIT, pools).
    for (const c of options.concurrency) {
      await runWrk(url(sidecar.port), c, 1, pdHeader);
      await runWrk(url(sidecar.port), c, 1);
    }

    type Measured = WrkResult & { cpuPerRequest: number };
    const perRound = new Map<number, { arms: Record<Arm, Measured>; own: ConcurrencyResult['ownOverhead'] }[]>();
    for (let round = 0; round < options.rounds; round++) {
      const order = round % 2 === 0 ? ARMS : [...ARMS].reverse();
      for (const c of options.concurrency) {
        const arms = {} as Record<Arm, Measured>;
        const own = { decodeOnly: { p50: 0, p99: 0 }, pd: { p50: 0, p99: 0 } };
        for (const arm of order) {
          const route = arm === 'pd' ? 'pd' : 'decode_only';
          const before = arm === 'sidecar' || arm === 'pd' ? await overheadBuckets(sidecar.port, route) : undefined;
          const target = arm === 'direct' ? decode.port : arm === 'prefill' ? prefill.port : sidecar.port;
          // CPU of the process that answers wrk: the sidecar on its arms, the worker on direct ones.
          const pid = (arm === 'direct' ? decode : arm === 'prefill' ? prefill : sidecar).process.pid!;
          const cpu0 = cpuMicros(pid);
          const w = await runWrk(url(target), c, options.seconds, arm === 'pd' ? pdHeader : {});
          arms[arm] = { ...w, cpuPerRequest: (cpuMicros(pid) - cpu0) / Math.max(1, w.requests) };
          if (before !== undefined) {
            const after = await overheadBuckets(sidecar.port, route);
            const q = { p50: bucketQuantile(before, after, 0.5), p99: bucketQuantile(before, after, 0.99) };
            if (arm === 'pd') own.pd = q;
            else own.decodeOnly = q;
          }
          const r = arms[arm];
          options.log(
            `round ${round + 1} c=${c} ${arm.padEnd(8)} ${r.rps.toFixed(0).padStart(7)} req/s  p50 ${r.p50} µs  p99 ${r.p99} µs  cpu ${r.cpuPerRequest.toFixed(0)} µs/req${r.errors ? `  errors ${r.errors}` : ''}`,
          );
        }
        const list = perRound.get(c) ?? [];
        list.push({ arms, own });
        perRound.set(c, list);
      }
    }

    const results: ConcurrencyResult[] = options.concurrency.map((c) => {
      const rounds = perRound.get(c)!;
      const m = (f: (r: (typeof rounds)[number]) => number) => median(rounds.map(f));
      const arm = (a: Arm) => ({
        p50: m((r) => r.arms[a].p50),
        p90: m((r) => r.arms[a].p90),
        p99: m((r) => r.arms[a].p99),
        rps: m((r) => r.arms[a].rps),
        errors: rounds.reduce((s, r) => s + r.arms[a].errors, 0),
        cpuPerRequest: m((r) => r.arms[a].cpuPerRequest),
      });
      return {
        connections: c,
        arms: { direct: arm('direct'), sidecar: arm('sidecar'), prefill: arm('prefill'), pd: arm('pd') },
        decodeOnlyOverhead: {
          p50: m((r) => r.arms.sidecar.p50 - r.arms.direct.p50),
          p99: m((r) => r.arms.sidecar.p99 - r.arms.direct.p99),
        },
        decodeOnlyThroughputRatio: m((r) => r.arms.sidecar.rps / r.arms.direct.rps),
        pdOverhead: {
          p50: m((r) => r.arms.pd.p50 - r.arms.direct.p50 - r.arms.prefill.p50),
          p99: m((r) => r.arms.pd.p99 - r.arms.direct.p99 - r.arms.prefill.p99),
        },
        pdThroughputRatio: m((r) => r.arms.pd.rps * (1 / r.arms.direct.rps + 1 / r.arms.prefill.rps)),
        ownOverhead: {
          decodeOnly: { p50: m((r) => r.own.decodeOnly.p50), p99: m((r) => r.own.decodeOnly.p99) },
          pd: { p50: m((r) => r.own.pd.p50), p99: m((r) => r.own.pd.p99) },
        },
      };
    });
    const { log: _log, ...rest } = options;
    return { options: rest, results, loadAverage: { start, end: loadavg() }, cores: availableParallelism() };
  } finally {
    for (const c of children) c.process.kill('SIGTERM');
  }
}

const us = (v: number): string => (Number.isFinite(v) ? `${(v / 1000).toFixed(3)} ms` : String(v));

/** The report as a markdown table. */
export function renderMarkdown(report: SidecarBenchReport): string {
  const o = report.options;
  const lines = [
    `wrk, ${o.seconds} s per run, ${o.rounds} rounds interleaved, fake workers' service time ${o.serviceMs} ms; medians over rounds.`,
    `Load average (1/5/15 min) at start ${report.loadAverage.start.map((v) => v.toFixed(1)).join('/')}, at end ${report.loadAverage.end.map((v) => v.toFixed(1)).join('/')} on ${report.cores} cores (a machine shared with other jobs: compare within a row, not across runs).`,
    '',
    '| concurrency | path | direct p50 / p99 | via sidecar p50 / p99 | added p50 / p99 | sidecar own time p50 / p99 (histogram bucket) | throughput direct / via sidecar | ratio | CPU per request: worker / sidecar |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of report.results) {
    const a = r.arms;
    const twoLegs = 1 / (1 / a.direct.rps + 1 / a.prefill.rps);
    const cpu = (v: number) => `${v.toFixed(0)} µs`;
    lines.push(
      `| ${r.connections} | decode-only | ${us(a.direct.p50)} / ${us(a.direct.p99)} | ${us(a.sidecar.p50)} / ${us(a.sidecar.p99)} | ${us(r.decodeOnlyOverhead.p50)} / ${us(r.decodeOnlyOverhead.p99)} | ≤ ${us(r.ownOverhead.decodeOnly.p50)} / ≤ ${us(r.ownOverhead.decodeOnly.p99)} | ${a.direct.rps.toFixed(0)} / ${a.sidecar.rps.toFixed(0)} req/s | ${r.decodeOnlyThroughputRatio.toFixed(2)}x | ${cpu(a.direct.cpuPerRequest)} / ${cpu(a.sidecar.cpuPerRequest)} |`,
      `| ${r.connections} | P/D | ${us(a.direct.p50 + a.prefill.p50)} / ${us(a.direct.p99 + a.prefill.p99)} (both legs) | ${us(a.pd.p50)} / ${us(a.pd.p99)} | ${us(r.pdOverhead.p50)} / ${us(r.pdOverhead.p99)} | ≤ ${us(r.ownOverhead.pd.p50)} / ≤ ${us(r.ownOverhead.pd.p99)} | ${twoLegs.toFixed(0)} (both legs) / ${a.pd.rps.toFixed(0)} req/s | ${r.pdThroughputRatio.toFixed(2)}x | ${cpu(a.direct.cpuPerRequest + a.prefill.cpuPerRequest)} / ${cpu(a.pd.cpuPerRequest)} |`,
    );
  }
  const errors = report.results.reduce((s, r) => s + Object.values(r.arms).reduce((t, a) => t + a.errors, 0), 0);
  lines.push('', errors === 0 ? 'No errors.' : `${errors} errors (socket errors or non-2xx answers).`);
  return lines.join('\n');
}
