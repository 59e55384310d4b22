/**
 * `kvwire bench` options: declared once on a commander command ({@link declareBenchOptions}, from
 * which `kvwire bench --help` is generated), then resolved into {@link BenchOptions} (defaults, and
 * the checks that involve more than one flag).
 *
 * Bad input throws a {@link UsageError}; the CLI prints its message and exits with 2.
 *
 * @packageDocumentation
 */
import { Option, type Command } from 'commander';
import { kvwireCommand, parseOptions, UsageError } from '../../cli/kit/command.js';
import { integer, list, oneOf, seconds } from '../../cli/kit/values.js';
import { KV_PRESET_NAMES } from '../../lib/kv/presets.js';
import type { KvPresetName } from '../../lib/kv/presets.js';
import type { CudaPath, TransferOp } from '../../lib/transport/types.js';
import { BENCH_MEMORIES } from './memory.js';
import type { BenchMemory } from './memory.js';
import { fmtSize, parseByteList, parseBytes } from './units.js';

export { UsageError };

/** Faults the loopback engine plants, to prove that `--check` catches them. */
export interface FaultOptions {
  /** Flip one destination byte in each of the next N transfers. */
  readonly corrupt: number;
}

/** Everything `kvwire bench` was asked to do. */
export interface BenchOptions {
  /** Engine: 'ucx' (two processes) or 'loopback' (in-process mock). `undefined`: UCX when available. */
  readonly engine: 'ucx' | 'loopback' | undefined;
  /** Transports to measure (tcp, sm, rdma, or UCX_TLS names); `undefined`: every one available. */
  readonly transports: readonly string[] | undefined;
  /** Operations. */
  readonly ops: readonly TransferOp[];
  /** Block sizes in bytes (one descriptor moves one block). */
  readonly sizes: readonly number[];
  /** Descriptors per transfer. */
  readonly batches: readonly number[];
  /** Measured iterations per row; `undefined`: a byte budget decides. */
  readonly iters: number | undefined;
  /** Seconds per row instead of an iteration count. */
  readonly durationS: number | undefined;
  /** Warmup iterations per row; `undefined`: automatic. */
  readonly warmup: number | undefined;
  /** Bytes each row aims to move when no `--iters`/`--duration` is given. */
  readonly budgetBytes: number;
  /** Transfers kept in flight. */
  readonly inflight: number;
  /** `--memory`: engine-allocated host memory (the default), registered Buffers, or CUDA device memory. */
  readonly memory: BenchMemory;
  /** The initiator's memory (`--initiator-memory`, else `--memory`), as nixlbench's initiator segment type. */
  readonly initiatorMemory: BenchMemory;
  /** The target's memory (`--target-memory`, else `--memory`). */
  readonly targetMemory: BenchMemory;
  /** How device memory moves (`--cuda-path`, `--staging-chunk`, `--staging-buffers`). */
  readonly cuda: {
    readonly path: 'auto' | CudaPath;
    readonly stagingChunkBytes: number | undefined;
    readonly stagingBuffers: number | undefined;
  };
  /** Verify every byte of every transfer. */
  readonly check: boolean;
  /** Run ucx_perftest and memcpy baselines interleaved with our rows. */
  readonly baseline: boolean;
  /** Largest region each side registers; rows that need more are skipped. `undefined`: from free memory. */
  readonly maxRegionBytes: number | undefined;
  /** A row stops measuring after this many seconds once it has 2 iterations (keeps the default sweep short). */
  readonly rowCapS: number;
  /**
   * Every descriptor moves block 0 of each side, as ucx_perftest moves one buffer again and again:
   * the same cache-resident working set as the baselines. By default blocks are distinct.
   */
  readonly sameBlock: boolean;
  /** Both agents' tuning.batchBelow (undefined: the engine's default). */
  readonly batchBelow: number | undefined;
  /** KV model preset for the model workload. */
  readonly model: KvPresetName | undefined;
  /** Tokens per request of the model workload. */
  readonly tokens: number;
  /** Region addressing of the model workload's caches. */
  readonly addressing: 'tensor' | 'arena';
  /** Contiguous block ids (to show coalescing) instead of scattered ones. */
  readonly contiguous: boolean;
  /** Blocks in each side's cache; `undefined`: twice the blocks of a request. */
  readonly cacheBlocks: number | undefined;
  /** Time registration and deregistration. */
  readonly register: boolean;
  /** Seconds of the idle-CPU check; `undefined`: not run. */
  readonly idleS: number | undefined;
  /** Run the transfer sweep (on by default when no other mode was asked for). */
  readonly sweep: boolean;
  /** Output as one JSON document. */
  readonly json: boolean;
  /** Output as CSV. */
  readonly csv: boolean;
  /** Write an SVG plot here. */
  readonly plot: string | undefined;
  /** Batch size the plot draws; `undefined`: the largest swept. */
  readonly plotBatch: number | undefined;
  /** Write a Markdown report (machine, command, tables) here. */
  readonly markdown: string | undefined;
  /** Draw no progress bar. */
  readonly quiet: boolean;
  /** Loopback fault injection. */
  readonly fault: FaultOptions | undefined;
}

/** The default sweep: the project's grid (4 KiB to 16 MiB; 1, 16 and 64 descriptors per transfer). */
export const DEFAULT_SIZES: readonly number[] = [4096, 65536, 262144, 1 << 20, 4 << 20, 16 << 20];
/** Descriptors per transfer of the default sweep. */
export const DEFAULT_BATCHES: readonly number[] = [1, 16, 64];
/** Bytes a row aims to move by default. */
export const DEFAULT_BUDGET = 64 << 20;

/** A byte size (`4K`, `64KiB`, `1G`), in the words of units.ts. */
function bytes(flag: string): (text: string) => number {
  return (text) => {
    try {
      return parseBytes(text, flag);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
}

/** `--batch-below`: a byte size, or 0. */
function bytesOrZero(flag: string): (text: string) => number {
  const b = bytes(flag);
  return (text) => (text.trim() === '0' ? 0 : b(text));
}

function byteList(flag: string): (text: string) => number[] {
  return (text) => {
    try {
      return parseByteList(text, flag);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  };
}

function ops(text: string): TransferOp[] {
  const items = list(text);
  for (const op of items)
    if (op !== 'read' && op !== 'write') throw new UsageError(`--ops takes read and write, not '${op}'`);
  return items as TransferOp[];
}

function batches(text: string): number[] {
  const parse = integer(1, 1 << 20);
  return list(text)
    .map((b) => {
      try {
        return parse(b);
      } catch (e) {
        throw new UsageError(`--batches ${(e as Error).message}, not '${b}'`);
      }
    })
    .sort((a, b) => a - b);
}

function fault(text: string): FaultOptions {
  const m = /^corrupt=(\d+)$/.exec(text);
  if (!m || Number(m[1]) < 1) throw new UsageError(`--fault takes corrupt=N (N at least 1), not '${text}'`);
  return { corrupt: Number(m[1]) };
}

function svgFile(text: string): string {
  if (!text.toLowerCase().endsWith('.svg'))
    throw new UsageError(`--plot writes SVG: give a file name ending in .svg, not '${text}'`);
  return text;
}

const MODES = 'What to run (the sweep runs when no other mode is given; modes combine):';
const GRID = 'Sweep grid:';
const CHECKS = 'Checks and baselines:';
const OUTPUT = 'Output (a table on stdout, a progress bar on stderr when it is a terminal):';

/** The options as commander parses them, before {@link resolveBenchOptions}. */
interface BenchFlags {
  model?: KvPresetName;
  tokens?: number;
  addressing?: 'tensor' | 'arena';
  contiguous?: boolean;
  cacheBlocks?: number;
  register?: boolean;
  idle?: number;
  sweep?: boolean;
  engine?: 'ucx' | 'loopback';
  transports?: string[];
  ops?: TransferOp[];
  sizes?: number[];
  batches?: number[];
  iters?: number;
  duration?: number;
  warmup?: number;
  budget?: number;
  inflight?: number;
  memory?: BenchMemory;
  initiatorMemory?: BenchMemory;
  targetMemory?: BenchMemory;
  cudaPath?: 'auto' | CudaPath;
  stagingChunk?: number;
  stagingBuffers?: number;
  maxRegion?: number;
  rowCap?: number;
  sameBlock?: boolean;
  batchBelow?: number;
  check?: boolean;
  baseline?: boolean;
  fault?: FaultOptions;
  json?: boolean;
  csv?: boolean;
  plot?: string;
  plotBatch?: number;
  markdown?: string;
  quiet?: boolean;
}

/** Declares the options of `kvwire bench` on `cmd` (help, parsers and groups come from here). */
export function declareBenchOptions<C extends Command>(cmd: C): C {
  const opt = (flags: string, help: string, group: string, parse?: (t: string) => unknown): Option => {
    const o = new Option(flags, help).helpGroup(group);
    return parse === undefined ? o : o.argParser(parse);
  };
  const memories = oneOf(BENCH_MEMORIES);
  for (const o of [
    opt(
      '--model <name>',
      `move a realistic KV cache per request (${KV_PRESET_NAMES.join(', ')}); --iters requests (default 20) after --warmup (default 5)`,
      MODES,
      (t) => {
        if (!(KV_PRESET_NAMES as readonly string[]).includes(t))
          throw new UsageError(`--model must be one of ${KV_PRESET_NAMES.join(', ')}, not '${t}'`);
        return t;
      },
    ),
    opt(
      '--tokens <n>',
      'with --model: tokens per request (default 4096; 16-token blocks)',
      MODES,
      integer(1, 10_000_000),
    ),
    opt(
      '--addressing <a>',
      'with --model: tensor (one region per layer K/V, default) or arena (one region)',
      MODES,
      oneOf(['tensor', 'arena']),
    ),
    opt('--contiguous', 'with --model: contiguous block ids (shows coalescing); default scattered', MODES),
    opt(
      '--cache-blocks <n>',
      "with --model: blocks in each side's cache (default: twice the request's)",
      MODES,
      integer(1),
    ),
    opt('--register', 'time register/deregister of 4 KiB .. 1 GiB and of 10,000 small regions', MODES),
    opt('--idle <s>', 'CPU an idle connected agent pair uses over S seconds', MODES, seconds(0.1)),
    opt('--sweep', 'also run the sweep together with the modes above', MODES),
    opt(
      '--engine <e>',
      'ucx (default when built with UCX) or loopback (in-process mock)',
      GRID,
      oneOf(['ucx', 'loopback']),
    ),
    opt('--transports <list>', 'tcp,sm,rdma or UCX_TLS names (default: every one available)', GRID, list),
    opt('--ops <list>', 'read,write (default both)', GRID, ops),
    opt(
      '--sizes <list>',
      `block sizes, e.g. 4K,64K,1M or 4K..16M (default ${DEFAULT_SIZES.map(fmtSize).join(',')})`,
      GRID,
      byteList('--sizes'),
    ),
    opt('--batches <list>', `descriptors per transfer (default ${DEFAULT_BATCHES.join(',')})`, GRID, batches),
    opt(
      '--iters <n>',
      'measured iterations per row (default: about --budget bytes, 5..1000)',
      GRID,
      integer(1, 10_000_000),
    ),
    opt('--duration <s>', 'seconds per row instead of --iters', GRID, seconds(0.001)),
    opt('--warmup <n>', 'warmup iterations per row (default: 1..10, a tenth of the row)', GRID, integer(0, 1_000_000)),
    opt(
      '--budget <size>',
      `bytes per row for the default iteration count (default ${fmtSize(DEFAULT_BUDGET)})`,
      GRID,
      bytes('--budget'),
    ),
    opt('--inflight <k>', 'transfers kept in flight (default 1, as nixlbench)', GRID, integer(1, 1024)),
    opt(
      '--memory <m>',
      'both sides: allocate (default: agent.allocate, shared memory peers map), register (Buffers) or cuda (device memory on GPU 0, with device-to-device and pinned host-to-device copy baselines in the same run)',
      GRID,
      memories,
    ),
    opt(
      '--initiator-memory <m>',
      "the initiator's memory only (as nixlbench's segment types); default --memory",
      GRID,
      memories,
    ),
    opt('--target-memory <m>', "the target's memory only; default --memory", GRID, memories),
    opt(
      '--cuda-path <p>',
      'auto (default), ipc, staging or ucx: how device memory moves (docs/cuda.md)',
      GRID,
      oneOf(['auto', 'ipc', 'staging', 'ucx']),
    ),
    opt('--staging-chunk <size>', 'staging buffer size (default 16M)', GRID, bytes('--staging-chunk')),
    opt('--staging-buffers <n>', 'staging buffers per direction (default 4)', GRID, integer(1, 64)),
    opt(
      '--max-region <size>',
      'largest region per side (default 1G when memory allows); bigger rows are skipped',
      GRID,
      bytes('--max-region'),
    ),
    opt('--row-cap <s>', 'stop a row after S seconds once it has 2 iterations (default 4; 0: never)', GRID, seconds(0)),
    opt(
      '--same-block',
      "every descriptor moves block 0 (ucx_perftest's one-buffer working set); default: distinct blocks, as a KV cache moves",
      GRID,
    ),
    opt(
      '--batch-below <size>',
      "over tcp, pack runs of descriptors smaller than SIZE into one message (the engine's tuning.batchBelow, default 128K); 0 sends each alone",
      GRID,
      bytesOrZero('--batch-below'),
    ),
    opt('--check', 'verify every byte of every transfer; a corrupted row FAILS (exit code 1)', CHECKS),
    opt('--baseline', 'run ucx_perftest (ucp_put_bw, ucp_get, ucp_am_bw) and memcpy per size, interleaved', CHECKS),
    opt(
      '--fault <spec>',
      'loopback engine only: corrupt=N corrupts N transfers, to see --check catch them',
      CHECKS,
      fault,
    ),
    opt('--json', 'one JSON document (schema: bench/transfer/schema.ts, docs/bench.md)', OUTPUT),
    opt('--csv', 'one line per row, with a header', OUTPUT),
    opt(
      '--plot <file.svg>',
      'GB/s against block size: a panel per transport, kvwire beside its baselines',
      OUTPUT,
      svgFile,
    ),
    opt('--plot-batch <n>', 'batch size the plot draws (default: the largest swept)', OUTPUT, integer(1)),
    opt('--markdown <file.md>', 'a report: machine, command, tables', OUTPUT),
    opt('--quiet', 'no progress bar', OUTPUT),
  ]) {
    cmd.addOption(o);
  }
  cmd.addHelpText(
    'after',
    '\nMeasures READ and WRITE between two processes (an initiator and a target, as in production) over every\n' +
      'transport available, side by side with raw UCX (ucx_perftest) and memcpy.\n\n' +
      'Exit code: 0 when every row passed, 1 when a row failed, 2 for bad options.',
  );
  return cmd;
}

/** Resolves parsed flags into {@link BenchOptions}: defaults, and the checks across flags. */
export function resolveBenchOptions(f: BenchFlags): BenchOptions {
  if (f.iters !== undefined && f.duration !== undefined) throw new UsageError('give --iters or --duration, not both');
  if (f.json === true && f.csv === true) throw new UsageError('give one of --json and --csv');
  if (f.fault !== undefined && f.engine !== 'loopback') {
    throw new UsageError('--fault needs --engine loopback (only the loopback engine injects faults)');
  }
  const modelFlags: [keyof BenchFlags, string][] = [
    ['tokens', '--tokens'],
    ['addressing', '--addressing'],
    ['contiguous', '--contiguous'],
    ['cacheBlocks', '--cache-blocks'],
  ];
  for (const [k, flag] of modelFlags) {
    if (f[k] !== undefined && f.model === undefined)
      throw new UsageError(`${flag} belongs to --model; give --model too`);
  }
  const memory = f.memory ?? 'allocate';
  const register = f.register === true;
  const otherMode = f.model !== undefined || register || f.idle !== undefined;
  return {
    engine: f.engine,
    transports: f.transports,
    ops: f.ops ?? ['read', 'write'],
    sizes: f.sizes ?? DEFAULT_SIZES,
    batches: f.batches ?? DEFAULT_BATCHES,
    iters: f.iters,
    durationS: f.duration,
    warmup: f.warmup,
    budgetBytes: f.budget ?? DEFAULT_BUDGET,
    inflight: f.inflight ?? 1,
    memory,
    initiatorMemory: f.initiatorMemory ?? memory,
    targetMemory: f.targetMemory ?? memory,
    cuda: { path: f.cudaPath ?? 'auto', stagingChunkBytes: f.stagingChunk, stagingBuffers: f.stagingBuffers },
    check: f.check === true,
    baseline: f.baseline === true,
    maxRegionBytes: f.maxRegion,
    rowCapS: f.rowCap ?? 4,
    sameBlock: f.sameBlock === true,
    batchBelow: f.batchBelow,
    model: f.model,
    tokens: f.tokens ?? 4096,
    addressing: f.addressing ?? 'tensor',
    contiguous: f.contiguous === true,
    cacheBlocks: f.cacheBlocks,
    register,
    idleS: f.idle,
    sweep: f.sweep === true || !otherMode,
    json: f.json === true,
    csv: f.csv === true,
    plot: f.plot,
    plotBatch: f.plotBatch,
    markdown: f.markdown,
    quiet: f.quiet === true,
    fault: f.fault,
  };
}

/** Parses `kvwire bench` arguments. @throws UsageError for anything it cannot make sense of. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  return resolveBenchOptions(parseOptions<BenchFlags>(declareBenchOptions(kvwireCommand('bench')), argv));
}
