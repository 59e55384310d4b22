/**
 * A whole bench run: picks the engine and transports, runs the modes asked for (sweep, model
 * workload, registration, idle CPU), judges the targets, and returns the report document.
 *
 * @packageDocumentation
 */
import { ErrorCode, KvwireError } from '../../lib/errors.js';
import { capabilities, kvwireVersion } from '../../lib/transport/capabilities.js';
import { runIdle } from './idle.js';
import { requireCuda } from './memory.js';
import { describeMachine } from './machine.js';
import { runModel } from './model.js';
import { UsageError } from './options.js';
import type { BenchOptions } from './options.js';
import { defaultTransports, maxRegionBytes } from './plan.js';
import type { Progress } from './progress.js';
import { runRegister } from './register.js';
import { BENCH_SCHEMA_VERSION } from './schema.js';
import type {
  BenchReportJson,
  IdleJson,
  ModelJson,
  RegisterJson,
  SweepJson,
  SweepRowJson,
  TransportJson,
} from './schema.js';
import { runSweep } from './sweep.js';
import type { SweepHooks } from './sweep.js';
import { evaluateTargets } from './targets.js';

/** Where a run reports while it goes. */
export interface BenchIo {
  /** Something the reader should know; it is also kept in the report's notices. */
  readonly notice: (message: string) => void;
  readonly progress: Progress;
  /** A transport's sweep rows are complete. */
  readonly onSweepTransport?: (transport: TransportJson, rows: readonly SweepRowJson[], sweep: SweepJson) => void;
}

/** The engine a run uses: as asked, else UCX when this build has it, else loopback (with a notice). */
export function chooseEngine(asked: 'ucx' | 'loopback' | undefined, notice: (m: string) => void): 'ucx' | 'loopback' {
  const ucx = capabilities().engines.ucx;
  if (asked === 'loopback') return 'loopback';
  if (ucx.available) return 'ucx';
  if (asked === 'ucx')
    throw new KvwireError(
      ErrorCode.UNSUPPORTED,
      `--engine ucx: the UCX engine is unavailable here: ${ucx.reason ?? 'unknown reason'}`,
    );
  notice(
    `the UCX engine is unavailable (${ucx.reason ?? 'unknown reason'}); measuring the in-process loopback engine instead`,
  );
  return 'loopback';
}

/** Quotes an argument for a shell command line when it needs it. */
function shellQuote(a: string): string {
  return /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

/** Runs the bench. @throws UsageError for option combinations that cannot run here. */
export async function runBench(
  opts: BenchOptions,
  argv: readonly string[],
  io: BenchIo,
  hooks: SweepHooks = {},
): Promise<BenchReportJson> {
  const started = Date.now();
  const notices: string[] = [];
  const notice = (m: string) => {
    notices.push(m);
    io.notice(m);
  };
  const machine = describeMachine();
  if (machine.loadAvg1 > 0.5 * machine.cpus) {
    notice(
      `the machine is busy (load average ${machine.loadAvg1.toFixed(2)} on ${machine.cpus} CPUs) before the run starts: expect noisy numbers`,
    );
  }
  const engine = chooseEngine(opts.engine, notice);
  if (opts.fault !== undefined && engine !== 'loopback') throw new UsageError('--fault needs --engine loopback');
  try {
    requireCuda(opts.initiatorMemory, opts.targetMemory, engine);
  } catch (e) {
    throw new UsageError((e as Error).message); // exit code 2: this machine cannot run what was asked
  }
  let transports: string[];
  if (opts.transports !== undefined) {
    transports = [...opts.transports];
    if (engine === 'loopback' && transports.some((t) => t !== 'loopback')) {
      throw new UsageError(
        `the loopback engine has one transport, 'loopback'; --transports ${transports.join(',')} needs --engine ucx`,
      );
    }
  } else {
    transports = defaultTransports(engine);
    if (transports.length === 0)
      throw new KvwireError(
        ErrorCode.UNSUPPORTED,
        'UCX reaches no peer here (no tcp, shared memory or RDMA transport); see `kvwire info`',
      );
  }
  const regionCap = maxRegionBytes(opts);
  const faultHooks: SweepHooks =
    opts.fault !== undefined
      ? {
          onConnected: (p) => {
            p.initiator.faults?.set({ corrupt: opts.fault!.corrupt });
            hooks.onConnected?.(p);
          },
        }
      : hooks;

  let sweep: SweepJson | null = null;
  let model: ModelJson | null = null;
  let register: RegisterJson | null = null;
  let idle: IdleJson | null = null;
  // The idle check runs first: after a sweep the initiator process holds a large garbage heap whose
  // collection (the bench's, not the agents') would land in the idle window.
  if (opts.idleS !== undefined) idle = await runIdle(opts.idleS, engine, transports, notice, io.progress);
  if (opts.sweep) {
    sweep = await runSweep(
      opts,
      { engine, transports, regionCap },
      {
        notice,
        progress: io.progress,
        ...(io.onSweepTransport ? { onTransportDone: io.onSweepTransport } : {}),
      },
      faultHooks,
    );
  }
  if (opts.model !== undefined)
    model = await runModel(opts, engine, transports, regionCap, notice, io.progress, faultHooks);
  if (opts.register)
    register = await runRegister(engine, transports, regionCap, notice, io.progress, opts.initiatorMemory);
  io.progress.finish();

  const failed =
    (sweep?.rows.some((r) => r.status === 'failed') ?? false) ||
    (model?.rows.some((r) => r.status === 'failed') ?? false) ||
    (idle?.rows.some((r) => r.status === 'failed') ?? false);
  return {
    schema: BENCH_SCHEMA_VERSION,
    kvwire: kvwireVersion(),
    command: ['kvwire', 'bench', ...argv].map(shellQuote).join(' '),
    startedAt: new Date(started).toISOString(),
    durationS: (Date.now() - started) / 1000,
    exitCode: failed ? 1 : 0,
    machine,
    settings: {
      engine,
      transports,
      ops: [...opts.ops],
      sizes: [...opts.sizes],
      batches: [...opts.batches],
      iters: opts.iters ?? null,
      durationS: opts.durationS ?? null,
      warmup: opts.warmup ?? null,
      budgetBytes: opts.budgetBytes,
      inflight: opts.inflight,
      check: opts.check,
      baseline: opts.baseline,
      maxRegionBytes: regionCap,
      rowCapS: opts.rowCapS,
      sameBlock: opts.sameBlock,
      batchBelow: opts.batchBelow ?? null,
      initiatorMemory: opts.initiatorMemory,
      targetMemory: opts.targetMemory,
      cudaPath: opts.cuda.path,
    },
    notices,
    sweep,
    model,
    register,
    idle,
    targets: evaluateTargets(sweep, model, idle, register),
  };
}
