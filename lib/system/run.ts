/**
 * `runSystemDemo`: the main job (`npm start`, `kvwire demo`). Starts the system on this machine
 * (local-system.ts), sends the workload through the router with the openai client, optionally
 * SIGKILLs a prefill worker mid-run (the fault drill), checks every output against the single
 * worker, scrapes every component's metrics, stops everything, and writes the HTML report.
 *
 * @packageDocumentation
 */
import { setMaxListeners } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { ErrorCode, KvwireError } from '../errors.js';
import { driveWorkload, type RequestRecord } from './client.js';
import { describeExit } from './component.js';
import { measureCopySpeeds } from './copy-speed.js';
import {
  startLocalSystem,
  unexpectedExits,
  type KilledComponent,
  type LocalSystem,
  type LocalSystemOptions,
} from './local-system.js';
import { scrapeAll, sumOf, type ScrapedMetrics } from './metrics-scrape.js';
import { checkAgainstReference, type ReferenceCheck } from './reference.js';
import { renderReport, type ReportComponent } from './report/html.js';
import { summarizeRun, type DemoSummary } from './summary.js';
import { demoWorkload, type WorkloadOptions } from './workload.js';

/** How long the fault drill waits, after the workload, for the router to eject the killed worker. */
const EJECT_WAIT_MS = 20_000;

/** Options of {@link runSystemDemo}. */
export interface SystemDemoOptions extends Omit<LocalSystemOptions, 'reference' | 'signal' | 'log'> {
  /** Requests; default 100. */
  readonly requests?: number;
  /** Sessions in flight at once; default 4. */
  readonly concurrency?: number;
  /** Workload seed; default 1. */
  readonly seed?: number;
  /** Other workload knobs (sizes, turns). */
  readonly workload?: Omit<WorkloadOptions, 'requests' | 'seed'>;
  /** SIGKILL the last prefill worker after this many requests finished (the fault drill). */
  readonly killPrefillAfter?: number;
  /** Write the HTML report here. */
  readonly reportPath?: string;
  /** The command line, for the report. */
  readonly command?: string;
  /** Stops the run (Ctrl-C): requests in flight are aborted, everything is stopped. */
  readonly signal?: AbortSignal;
  /** Progress lines. */
  readonly log?: (line: string) => void;
  /** Called once the system is up (tests reach the components through it). */
  readonly onStarted?: (system: LocalSystem) => void;
}

/** What {@link runSystemDemo} produced. */
export interface SystemDemoResult {
  /** The summary (`ok` says whether everything succeeded and matched). */
  readonly summary: DemoSummary;
  /** Every request. */
  readonly records: readonly RequestRecord[];
  /** The reference checks. */
  readonly checks: readonly ReferenceCheck[];
  /** The end-of-run scrape. */
  readonly metrics: readonly ScrapedMetrics[];
  /** The components and how they ended. */
  readonly components: readonly ReportComponent[];
  /** The report's path, when written. */
  readonly reportPath?: string;
  /** Files the components were seen to map in /dev/shm, by pid (all gone after the stop). */
  readonly sharedMemory: ReadonlyMap<number, ReadonlySet<string>>;
}

/**
 * Runs the demo. Rejects when the system cannot start (a component's own message, e.g. a port
 * in use) or when the run was stopped by `signal` (`ERR_KVWIRE_CANCELLED`); otherwise resolves,
 * and `summary.ok` says whether every request succeeded and matched.
 */
export async function runSystemDemo(o: SystemDemoOptions = {}): Promise<SystemDemoResult> {
  const log = o.log ?? (() => {});
  // A function, not a property read: the signal aborts while the run awaits.
  const aborted = (): boolean => o.signal?.aborted === true;
  // Every request in flight listens to the stop signal (the openai client, fetch): one signal of
  // our own, without Node's listener warning, follows the caller's.
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  if (o.signal !== undefined) {
    if (o.signal.aborted) stop.abort();
    else o.signal.addEventListener('abort', () => stop.abort(), { once: true });
  }
  const requests = o.requests ?? 100;
  if (o.killPrefillAfter !== undefined && !(o.killPrefillAfter >= 1 && o.killPrefillAfter < requests)) {
    throw new KvwireError(
      ErrorCode.INVALID_ARGUMENT,
      `killPrefillAfter must be between 1 and requests - 1 (${requests - 1}), got ${o.killPrefillAfter}`,
      { field: 'killPrefillAfter' },
    );
  }
  const workload = demoWorkload({ ...o.workload, requests, ...(o.seed === undefined ? {} : { seed: o.seed }) });
  const startedAt = Date.now();
  log(`starting the system (${o.runtime ?? 'llama'} runtime) ...`);
  const system = await startLocalSystem({
    ...o,
    reference: true,
    log: (l) => log(`  ${l}`),
    signal: stop.signal,
  });
  let stopped = false;
  try {
    o.onStarted?.(system);
    const t0 = performance.now();
    const clock = (): number => performance.now() - t0;
    let kill: { killed: KilledComponent; afterRequests: number; atMs: number } | undefined;
    const victim = system.prefills.at(-1);
    log(
      `sending ${requests} requests (${workload.sessions.length} sessions, ${o.concurrency ?? 4} at once) to ${system.router.url} ...`,
    );
    const records = await driveWorkload({
      baseUrl: system.router.url,
      model: system.model,
      workload,
      concurrency: o.concurrency ?? 4,
      clock,
      signal: stop.signal,
      onDone: (r, done) => {
        if (r.error !== undefined) log(`  ${r.id} failed: ${r.error}`);
        if (done % 10 === 0 || done === requests) log(`  ${done}/${requests} done`);
        if (done === o.killPrefillAfter && victim !== undefined) {
          system.noteSharedMemory();
          const k = system.kill(victim.name);
          kill = { killed: k, afterRequests: done, atMs: clock() };
          log(`  fault drill: SIGKILL ${k.name} (pid ${k.pid}) after ${done} requests`);
        }
        if (done % 5 === 0) system.noteSharedMemory();
      },
    });
    if (aborted()) throw new KvwireError(ErrorCode.CANCELLED, 'the demo was stopped');
    const loadAverage = loadavg()[0]!;
    let metrics = await scrapeAll(system);
    // The drill shows the recovery: the router's health checks eject the killed worker within a few
    // intervals; on a busy machine a short run can end before they do, so wait for it (bounded).
    for (const until = performance.now() + EJECT_WAIT_MS; kill !== undefined && performance.now() < until;) {
      const ejected =
        sumOf(metrics, ['router'], 'kvwire_scheduler_endpoint_healthy', { endpoint: kill.killed.name }) === 0;
      if (ejected || aborted()) break;
      await new Promise((r) => setTimeout(r, 250));
      metrics = await scrapeAll(system);
    }
    const reference = system.reference!;
    log(`checking every output against the single worker (${reference.url}) ...`);
    const checks = await checkAgainstReference({
      url: reference.url,
      model: system.model,
      records,
      signal: stop.signal,
      onChecked: (_c, done) => {
        if (done % 25 === 0 || done === records.length) log(`  ${done}/${records.length} checked`);
      },
    });
    if (aborted()) throw new KvwireError(ErrorCode.CANCELLED, 'the demo was stopped');
    const problems = unexpectedExits(system);
    log('stopping ...');
    await system.stop();
    stopped = true;
    const copy = measureCopySpeeds();
    const summary = summarizeRun({
      runtime: system.runtime,
      model: system.model,
      records,
      checks,
      metrics,
      copyGbps: copy.warm,
      freshCopyGbps: copy.fresh,
      loadAverage,
      ...(kill === undefined ? {} : { kill }),
      problems,
    });
    const components: ReportComponent[] = system.components.map((c) => ({
      name: c.name,
      role: system.roleOf(c),
      url: c.url,
      pid: c.pid,
      ended: c.exit === undefined ? 'running' : describeExit(c.exit),
    }));
    let reportPath: string | undefined;
    if (o.reportPath !== undefined) {
      await writeFile(
        o.reportPath,
        renderReport({
          summary,
          records,
          startedAt,
          ...(kill === undefined ? {} : { killAtMs: kill.atMs }),
          command: o.command ?? 'kvwire demo',
          components,
        }),
      );
      reportPath = o.reportPath;
    }
    return {
      summary,
      records,
      checks,
      metrics,
      components,
      sharedMemory: system.sharedMemorySeen(),
      ...(reportPath === undefined ? {} : { reportPath }),
    };
  } finally {
    if (!stopped) await system.stop();
  }
}
