/**
 * `kvwire bench` options: the command line, parsed into {@link BenchOptions}, and the usage text.
 *
 * Bad input throws a {@link UsageError}; the CLI prints its message and the usage and exits with 2.
 *
 * @packageDocumentation
 */
import { KV_PRESET_NAMES } from '../kv/presets.js';
import type { KvPresetName } from '../kv/presets.js';
import type { CudaPath, TransferOp } from '../transport/types.js';
import { BENCH_MEMORIES } from './memory.js';
import type { BenchMemory } from './memory.js';
import { fmtSize, parseByteList, parseBytes } from './units.js';

/** Bad command-line input: the CLI answers with this message, the usage, and exit code 2. */
export class UsageError extends Error {
  /** @param message - what is wrong with the command line, and how to write it. */
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

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
  /** Show the usage. */
  readonly help: boolean;
}

/** The default sweep: the grid (4 KiB to 16 MiB; 1, 16 and 64 descriptors per transfer). */
export const DEFAULT_SIZES: readonly number[] = [4096, 65536, 262144, 1 << 20, 4 << 20, 16 << 20];
/** Descriptors per transfer of the default sweep. */
export const DEFAULT_BATCHES: readonly number[] = [1, 16, 64];
/** Bytes a row aims to move by default. */
export const DEFAULT_BUDGET = 64 << 20;

function memoryArg(name: string, v: string | undefined, dflt: BenchMemory): BenchMemory {
  if (v === undefined) return dflt;
  if ((BENCH_MEMORIES as readonly string[]).includes(v)) return v as BenchMemory;
  throw new UsageError(`${name} must be ${BENCH_MEMORIES.join(', ')}, not '${v}'`);
}

/** The usage text of `kvwire bench`. */
export function benchUsage(): string {
  return `usage: kvwire bench [options]

Measures READ and WRITE between two processes (an initiator and a target, as in production) over
every transport available, side by side with raw UCX (ucx_perftest) and memcpy.

What to run (the sweep runs when no other mode is given; modes combine):
  --model NAME          move a realistic KV cache per request (${KV_PRESET_NAMES.join(', ')})
    --tokens N          tokens per request (default 4096; 16-token blocks)
    (--iters requests, default 20, after --warmup, default 5)
    --addressing A      tensor (one region per layer K/V, default) or arena (one region)
    --contiguous        contiguous block ids (shows coalescing); default scattered
    --cache-blocks N    blocks in each side's cache (default: twice the request's)
  --register            time register/deregister of 4 KiB .. 1 GiB and of 10,000 small regions
  --idle S              CPU an idle connected agent pair uses over S seconds
  --sweep               also run the sweep together with the modes above

Sweep grid:
  --engine E            ucx (default when built with UCX) or loopback (in-process mock)
  --transports LIST     tcp,sm,rdma or UCX_TLS names (default: every one available)
  --ops LIST            read,write (default both)
  --sizes LIST          block sizes, e.g. 4K,64K,1M or 4K..16M (default ${DEFAULT_SIZES.map(fmtSize).join(',')})
  --batches LIST        descriptors per transfer (default ${DEFAULT_BATCHES.join(',')})
  --iters N             measured iterations per row (default: about --budget bytes, 5..1000)
  --duration S          seconds per row instead of --iters
  --warmup N            warmup iterations per row (default: 1..10, a tenth of the row)
  --budget SIZE         bytes per row for the default iteration count (default ${fmtSize(DEFAULT_BUDGET)})
  --inflight K          transfers kept in flight (default 1, as nixlbench)
  --memory M            both sides: allocate (default: agent.allocate, shared memory peers map), register
                        (Buffers) or cuda (device memory on GPU 0, with device-to-device and pinned
                        host-to-device copy baselines in the same run)
  --initiator-memory M  the initiator's memory only (as nixlbench's segment types); default --memory
  --target-memory M     the target's memory only; default --memory
  --cuda-path P         auto (default), ipc, staging or ucx: how device memory moves (docs/cuda.md)
  --staging-chunk SIZE  staging buffer size (default 16M)
  --staging-buffers N   staging buffers per direction (default 4)
  --max-region SIZE     largest region per side (default 1G when memory allows); bigger rows are skipped
  --row-cap S           stop a row after S seconds once it has 2 iterations (default 4; 0: never)
  --same-block          every descriptor moves block 0 (ucx_perftest's one-buffer working set);
                        default: distinct blocks, as a KV cache moves
  --batch-below SIZE    over tcp, pack runs of descriptors smaller than SIZE into one message
                        (the engine's tuning.batchBelow, default 128K); 0 sends each alone

Checks and baselines:
  --check               verify every byte of every transfer; a corrupted row FAILS (exit code 1)
  --baseline            run ucx_perftest (ucp_put_bw, ucp_get, ucp_am_bw) and memcpy per size, interleaved
  --fault corrupt=N     loopback engine only: corrupt N transfers, to see --check catch them

Output (a table on stdout, a progress bar on stderr when it is a terminal):
  --json                one JSON document (schema: lib/bench/schema.ts, docs/bench.md)
  --csv                 one line per row, with a header
  --plot FILE.svg       GB/s against block size, one line per op and transport
  --plot-batch N        batch size the plot draws (default: the largest swept)
  --markdown FILE.md    a report: machine, command, tables
  --quiet               no progress bar
  -h, --help            this text

Exit code: 0 when every row passed, 1 when a row failed, 2 for bad options.`;
}

type Flag = 'bool' | 'value';

const FLAGS: Record<string, Flag> = {
  '--engine': 'value',
  '--transports': 'value',
  '--ops': 'value',
  '--sizes': 'value',
  '--batches': 'value',
  '--iters': 'value',
  '--duration': 'value',
  '--warmup': 'value',
  '--budget': 'value',
  '--inflight': 'value',
  '--max-region': 'value',
  '--row-cap': 'value',
  '--same-block': 'bool',
  '--batch-below': 'value',
  '--check': 'bool',
  '--baseline': 'bool',
  '--fault': 'value',
  '--memory': 'value',
  '--initiator-memory': 'value',
  '--target-memory': 'value',
  '--cuda-path': 'value',
  '--staging-chunk': 'value',
  '--staging-buffers': 'value',
  '--model': 'value',
  '--tokens': 'value',
  '--addressing': 'value',
  '--contiguous': 'bool',
  '--cache-blocks': 'value',
  '--register': 'bool',
  '--idle': 'value',
  '--sweep': 'bool',
  '--json': 'bool',
  '--csv': 'bool',
  '--plot': 'value',
  '--plot-batch': 'value',
  '--markdown': 'value',
  '--quiet': 'bool',
  '--help': 'bool',
  '-h': 'bool',
};

function intArg(name: string, text: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`${name} must be an integer from ${min} to ${max.toLocaleString('en-US')}, not '${text}'`);
  }
  return n;
}

function secondsArg(name: string, text: string, min: number): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < min || n > 86_400) {
    throw new UsageError(`${name} must be a number of seconds from ${min} to 86400, not '${text}'`);
  }
  return n;
}

function bytesArg(name: string, text: string): number {
  try {
    return parseBytes(text, name);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function listArg(name: string, text: string): string[] {
  const items = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`${name} needs a comma-separated list, not '${text}'`);
  return [...new Set(items)];
}

/** Parses `kvwire bench` arguments. @throws UsageError for anything it cannot make sense of. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions {
  const seen = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const kind = FLAGS[name];
    if (kind === undefined) {
      throw new UsageError(
        arg.startsWith('-') ? `unknown option ${name}` : `unexpected argument '${arg}' (options start with --)`,
      );
    }
    if (seen.has(name)) throw new UsageError(`${name} is given twice`);
    if (kind === 'bool') {
      if (eq > 0) throw new UsageError(`${name} takes no value`);
      seen.set(name, '');
    } else if (eq > 0) {
      seen.set(name, arg.slice(eq + 1));
    } else {
      const v = argv[i + 1];
      if (v === undefined || (v.startsWith('--') && v.length > 2)) throw new UsageError(`${name} needs a value`);
      seen.set(name, v);
      i++;
    }
  }
  const get = (n: string) => seen.get(n);
  const has = (n: string) => seen.has(n);

  const engineText = get('--engine');
  if (engineText !== undefined && engineText !== 'ucx' && engineText !== 'loopback') {
    throw new UsageError(`--engine must be ucx or loopback, not '${engineText}'`);
  }
  const ops = has('--ops') ? listArg('--ops', get('--ops')!) : ['read', 'write'];
  for (const op of ops)
    if (op !== 'read' && op !== 'write') throw new UsageError(`--ops takes read and write, not '${op}'`);
  let sizes = DEFAULT_SIZES;
  if (has('--sizes')) {
    try {
      sizes = parseByteList(get('--sizes')!, '--sizes');
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  }
  const batches = has('--batches')
    ? listArg('--batches', get('--batches')!)
        .map((b) => intArg('--batches', b, 1, 1 << 20))
        .sort((a, b) => a - b)
    : DEFAULT_BATCHES;
  if (has('--iters') && has('--duration')) throw new UsageError('give --iters or --duration, not both');
  const model = get('--model');
  if (model !== undefined && !(KV_PRESET_NAMES as readonly string[]).includes(model)) {
    throw new UsageError(`--model must be one of ${KV_PRESET_NAMES.join(', ')}, not '${model}'`);
  }
  const addressing = get('--addressing') ?? 'tensor';
  if (addressing !== 'tensor' && addressing !== 'arena')
    throw new UsageError(`--addressing must be tensor or arena, not '${addressing}'`);
  for (const f of ['--tokens', '--addressing', '--contiguous', '--cache-blocks']) {
    if (has(f) && model === undefined) throw new UsageError(`${f} belongs to --model; give --model too`);
  }
  let fault: FaultOptions | undefined;
  if (has('--fault')) {
    const m = /^corrupt=(\d+)$/.exec(get('--fault')!);
    if (!m) throw new UsageError(`--fault takes corrupt=N, not '${get('--fault')}'`);
    if (engineText !== 'loopback')
      throw new UsageError('--fault needs --engine loopback (only the loopback engine injects faults)');
    fault = { corrupt: intArg('--fault corrupt', m[1]!, 1) };
  }
  const outputs = ['--json', '--csv'].filter(has);
  if (outputs.length > 1) throw new UsageError('give one of --json and --csv');
  const plot = get('--plot');
  if (plot !== undefined && !plot.toLowerCase().endsWith('.svg'))
    throw new UsageError(`--plot writes SVG: give a file name ending in .svg, not '${plot}'`);
  const memory = memoryArg('--memory', get('--memory'), 'allocate');
  const cudaPath = get('--cuda-path') ?? 'auto';
  if (!['auto', 'ipc', 'staging', 'ucx'].includes(cudaPath))
    throw new UsageError(`--cuda-path must be auto, ipc, staging or ucx, not '${cudaPath}'`);
  const register = has('--register');
  const idleS = has('--idle') ? secondsArg('--idle', get('--idle')!, 0.1) : undefined;
  const otherMode = model !== undefined || register || idleS !== undefined;
  return {
    engine: engineText as BenchOptions['engine'],
    transports: has('--transports') ? listArg('--transports', get('--transports')!) : undefined,
    ops: ops as TransferOp[],
    sizes,
    batches,
    iters: has('--iters') ? intArg('--iters', get('--iters')!, 1, 10_000_000) : undefined,
    durationS: has('--duration') ? secondsArg('--duration', get('--duration')!, 0.001) : undefined,
    warmup: has('--warmup') ? intArg('--warmup', get('--warmup')!, 0, 1_000_000) : undefined,
    budgetBytes: has('--budget') ? bytesArg('--budget', get('--budget')!) : DEFAULT_BUDGET,
    inflight: has('--inflight') ? intArg('--inflight', get('--inflight')!, 1, 1024) : 1,
    memory,
    initiatorMemory: memoryArg('--initiator-memory', get('--initiator-memory'), memory),
    targetMemory: memoryArg('--target-memory', get('--target-memory'), memory),
    cuda: {
      path: cudaPath as 'auto' | CudaPath,
      stagingChunkBytes: has('--staging-chunk') ? bytesArg('--staging-chunk', get('--staging-chunk')!) : undefined,
      stagingBuffers: has('--staging-buffers')
        ? intArg('--staging-buffers', get('--staging-buffers')!, 1, 64)
        : undefined,
    },
    check: has('--check'),
    baseline: has('--baseline'),
    maxRegionBytes: has('--max-region') ? bytesArg('--max-region', get('--max-region')!) : undefined,
    rowCapS: has('--row-cap') ? secondsArg('--row-cap', get('--row-cap')!, 0) : 4,
    sameBlock: has('--same-block'),
    batchBelow: has('--batch-below')
      ? get('--batch-below')!.trim() === '0'
        ? 0
        : bytesArg('--batch-below', get('--batch-below')!)
      : undefined,
    model: model as KvPresetName | undefined,
    tokens: has('--tokens') ? intArg('--tokens', get('--tokens')!, 1, 10_000_000) : 4096,
    addressing,
    contiguous: has('--contiguous'),
    cacheBlocks: has('--cache-blocks') ? intArg('--cache-blocks', get('--cache-blocks')!, 1) : undefined,
    register,
    idleS,
    sweep: has('--sweep') || !otherMode,
    json: has('--json'),
    csv: has('--csv'),
    plot,
    plotBatch: has('--plot-batch') ? intArg('--plot-batch', get('--plot-batch')!, 1) : undefined,
    markdown: get('--markdown'),
    quiet: has('--quiet'),
    fault,
    help: has('--help') || has('-h'),
  };
}
