/**
 * The sweep: for each transport, a fresh target process and initiator; for each block size, the
 * raw-UCX baselines of that size (with `--baseline`) right before our rows of that size, so that
 * both see the machine in the same state; then every (op, batch) row.
 *
 * @packageDocumentation
 */
import type { Agent } from '../../lib/transport/agent.js';
import { findPerftest, memcpyBaseline, PERFTEST_TESTS, perftestIterations, runPerftest } from './baselines.js';
import type { TargetLink } from './link.js';
import type { BenchOptions } from './options.js';
import { failedTransport, openPair } from './pair.js';
import type { BenchPair } from './pair.js';
import { BytePattern, regionSalt } from './pattern.js';
import { budgetIterations, planRows, regionBytesFor, ucxTlsOf } from './plan.js';
import type { PlannedRow } from './plan.js';
import type { Progress } from './progress.js';
import { cuda } from '../../lib/transport/cuda.js';
import { BENCH_DEVICE, benchAgentExtras } from './memory.js';
import { emptyRow, runRow } from './runner.js';
import type { CudaCopyJson, MemcpyJson, PerftestJson, SweepJson, SweepRowJson, TransportJson } from './schema.js';
import { fmtSize } from './units.js';

/** Hooks for tests: reach the agents of a pair once it is connected (e.g. to plant faults). */
export interface SweepHooks {
  /** Called once per transport, after the pair connected and before the first row. */
  readonly onConnected?: (pair: { readonly initiator: Agent; readonly target: TargetLink }) => void;
}

/** Where the sweep reports as it goes. */
export interface SweepIo {
  /** A line the reader should see (also collected in the document's notices). */
  readonly notice: (message: string) => void;
  readonly progress: Progress;
  /** Called when a transport's rows are complete (the CLI prints its tables then). */
  readonly onTransportDone?: (transport: TransportJson, rows: readonly SweepRowJson[], sweep: SweepJson) => void;
}

/** What the sweep needs besides the options. */
export interface SweepContext {
  readonly engine: 'ucx' | 'loopback';
  readonly transports: readonly string[];
  /** Largest region per side. */
  readonly regionCap: number;
}

/** Our GB/s over a baseline's, when both exist. */
function ratio(ours: SweepRowJson, base: number | null | undefined): number | null {
  if (ours.status !== 'ok' || base === null || base === undefined || base <= 0) return null;
  return ours.gbps / base;
}

function attachBaselines(
  row: SweepRowJson,
  perftest: readonly PerftestJson[],
  memcpy: MemcpyJson | undefined,
  category: string | null,
  withPerftest: boolean,
  copies: readonly CudaCopyJson[],
): SweepRowJson {
  const find = (test: string) =>
    perftest.find(
      (p) => p.transport === row.transport && p.test === test && p.size === row.blockSize && p.status === 'ok',
    )?.gbps ?? null;
  const put = withPerftest ? find('ucp_put_bw') : null;
  const am = withPerftest ? find('ucp_am_bw') : null;
  const get = withPerftest ? find('ucp_get') : null;
  const best = put === null && am === null ? null : Math.max(put ?? 0, am ?? 0);
  const copyBound = category === 'sm' || category === 'loopback';
  const mem = memcpy !== undefined && copyBound ? memcpy.gbps : null;
  const d2d = copies.find((c) => c.kind === 'dtod' && c.size === row.blockSize)?.gbps ?? null;
  const h2d = copies.find((c) => c.kind === 'htod' && c.size === row.blockSize)?.gbps ?? null;
  return {
    ...row,
    baseline: { putBwGbps: put, amBwGbps: am, getGbps: get, memcpyGbps: mem, d2dGbps: d2d, h2dGbps: h2d },
    ratios: {
      put: ratio(row, put),
      best: ratio(row, best),
      get: row.op === 'read' ? ratio(row, get) : null,
      memcpy: ratio(row, mem),
      d2d: ratio(row, d2d),
      h2d: ratio(row, h2d),
    },
  };
}

function rowLabel(r: PlannedRow): string {
  return `${r.op} ${r.transport} ${fmtSize(r.size)} x ${r.batch}`;
}

/** Runs the sweep; never throws for a transport or row that fails (they are reported as failed). */
export async function runSweep(
  opts: BenchOptions,
  ctx: SweepContext,
  io: SweepIo,
  hooks: SweepHooks = {},
): Promise<SweepJson> {
  const pattern = new BytePattern();
  const transports: TransportJson[] = [];
  const rows: SweepRowJson[] = [];
  const perftest: PerftestJson[] = [];
  const memcpy: MemcpyJson[] = [];
  const cudaCopies: CudaCopyJson[] = [];
  const doc = (): SweepJson => ({ transports, rows, perftest, memcpy, cuda: cudaCopies });
  const onDevice = opts.initiatorMemory === 'cuda' || opts.targetMemory === 'cuda';

  const perftestBin = opts.baseline && ctx.engine === 'ucx' ? findPerftest() : undefined;
  if (opts.baseline && ctx.engine === 'ucx' && perftestBin === undefined) {
    io.notice(
      'ucx_perftest was not found on PATH (Debian/Ubuntu: apt-get install ucx-utils); continuing without raw-UCX baselines and their ratios',
    );
  }
  if (opts.baseline && ctx.engine === 'loopback')
    io.notice('raw-UCX baselines need --engine ucx; the loopback run compares with memcpy only');

  const plans = ctx.transports.map((t) => planRows(opts, t, ctx.regionCap));
  const skipped = plans.flat().filter((r) => r.skip !== undefined);
  if (skipped.length > 0) {
    io.notice(`${skipped.length} row(s) skipped: ${skipped[0]!.skip}${skipped.length > 1 ? ' (and similar)' : ''}`);
  }
  const perftestRuns = perftestBin !== undefined ? opts.sizes.length * PERFTEST_TESTS.length : 0;
  io.progress.addTotal(
    plans.flat().length + perftestRuns * ctx.transports.length + (onDevice ? opts.sizes.length * 2 : 0),
  );

  for (let ti = 0; ti < ctx.transports.length; ti++) {
    const transport = ctx.transports[ti]!;
    const planned = plans[ti]!;
    const regionBytes = regionBytesFor(planned, opts.inflight, ctx.regionCap);
    const first = rows.length;
    let pair: BenchPair | undefined;
    io.progress.begin(`${transport}: starting the target process and connecting`);
    try {
      pair = await openPair(
        ctx.engine,
        transport,
        [{ label: 'bench-target', bytes: regionBytes, salt: regionSalt('target', 0), memory: opts.targetMemory }],
        [
          {
            label: 'bench-initiator',
            bytes: regionBytes,
            salt: regionSalt('initiator', 0),
            memory: opts.initiatorMemory,
          },
        ],
        pattern,
        benchAgentExtras(opts),
      );
    } catch (e) {
      const msg = `could not open a ${transport} pair: ${(e as Error).message}`;
      io.notice(msg);
      transports.push(failedTransport(ctx.engine, transport, regionBytes, msg));
      for (const r of planned)
        rows.push(emptyRow(r, opts.inflight, 'failed', msg, (e as { code?: string }).code ?? null));
      io.progress.addTotal(-perftestRuns);
      for (let i = 0; i < planned.length; i++) io.progress.end();
      io.onTransportDone?.(transports[transports.length - 1]!, rows.slice(first), doc());
      continue;
    }
    try {
      transports.push(pair.info);
      if (
        pair.info.category !== null &&
        ctx.engine === 'ucx' &&
        pair.info.category !== transport &&
        ['tcp', 'sm', 'rdma'].includes(transport)
      ) {
        io.notice(
          `asked for ${transport} (UCX_TLS=${ucxTlsOf(transport)}) but the engine reaches the target over ${pair.info.category} (${pair.info.lanes})`,
        );
      }
      hooks.onConnected?.({ initiator: pair.agent, target: pair.target });
      for (const size of opts.sizes) {
        if (perftestBin !== undefined) {
          for (const test of PERFTEST_TESTS) {
            const tls = ucxTlsOf(transport);
            const n = perftestIterations(
              tls,
              test,
              size,
              opts.iters !== undefined ? opts.iters * size : opts.budgetBytes,
            );
            io.progress.begin(`ucx_perftest ${test} ${transport} ${fmtSize(size)} (-n ${n})`);
            const p = await runPerftest(perftestBin, transport, tls, test, size, n);
            perftest.push(p);
            io.progress.end();
          }
        }
        let mem = memcpy.find((m) => m.size === size);
        if (opts.baseline && mem === undefined) {
          mem = memcpyBaseline(size);
          if (mem !== undefined) memcpy.push(mem);
        }
        if (onDevice && !cudaCopies.some((c) => c.size === size)) {
          // Device memory: the copy engine's own bandwidth, measured in this run, is the baseline.
          for (const kind of ['dtod', 'htod'] as const) {
            const n = budgetIterations(size, opts.budgetBytes);
            io.progress.begin(
              `CUDA ${kind === 'dtod' ? 'device-to-device' : 'pinned host-to-device'} copy ${fmtSize(size)} (x${n})`,
            );
            try {
              const b = await cuda.baseline(kind, BENCH_DEVICE, size, n);
              cudaCopies.push({ kind, size, iterations: n, gbps: b.gbps });
            } catch (e) {
              io.notice(`the CUDA ${kind} baseline of ${fmtSize(size)} failed: ${(e as Error).message}`);
            }
            io.progress.end();
          }
        }
        for (const r of planned.filter((p) => p.size === size)) {
          io.progress.begin(rowLabel(r));
          let result: SweepRowJson;
          if (r.skip !== undefined) {
            result = emptyRow(r, opts.inflight, 'skipped', r.skip, null);
          } else {
            const total = r.warmup + (r.iterations ?? 0);
            result = await runRow(
              {
                agent: pair.agent,
                peer: pair.peer,
                local: pair.local[0]!,
                remote: pair.remote[0]!,
                target: pair.target,
                pattern,
                localSalt: regionSalt('initiator', 0),
                remoteSalt: regionSalt('target', 0),
                inflight: opts.inflight,
                check: opts.check,
                durationS: opts.durationS,
                rowCapS: opts.rowCapS,
                sameBlock: opts.sameBlock,
                onTransfer: total > 0 ? (done) => io.progress.partial(done / total) : undefined,
              },
              r,
            );
          }
          rows.push(
            opts.baseline || onDevice
              ? attachBaselines(result, perftest, mem, pair.info.category, perftestBin !== undefined, cudaCopies)
              : result,
          );
          io.progress.end();
        }
      }
    } finally {
      await pair.close();
    }
    io.onTransportDone?.(transports[transports.length - 1]!, rows.slice(first), doc());
  }
  return doc();
}
