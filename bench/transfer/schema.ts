/**
 * The document `kvwire bench --json` prints: TypeScript interfaces and the same schema as a JSON
 * Schema object ({@link BENCH_JSON_SCHEMA}), which `validate.ts` checks documents against.
 *
 * Conventions: every key is always present (absent values are `null`, never omitted); times are
 * microseconds (`...Us`), milliseconds (`...Ms`) or seconds (`...S`) as the name says; GB/s is
 * 10^9 bytes per second; sizes are bytes; ratios are ours divided by the baseline.
 *
 * Versioning: `schema` is `kvwire-bench/1`; a change that removes or retypes a key bumps it.
 *
 * @packageDocumentation
 */

/** The schema identifier of the documents this version writes. */
export const BENCH_SCHEMA_VERSION = 'kvwire-bench/1';

/** A summary of samples (see `stats.ts`). */
export interface DistributionJson {
  readonly avg: number;
  readonly p50: number;
  readonly p99: number;
  readonly min: number;
  readonly max: number;
}

/** The machine the run measured. */
export interface MachineJson {
  /** Logical CPUs (`nproc`). */
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryBytes: number;
  /** Kernel release (`uname -r`). */
  readonly kernel: string;
  readonly platform: string;
  readonly arch: string;
  /** Node.js version. */
  readonly node: string;
  /** UCX version, when kvwire was built with UCX. */
  readonly ucx: string | null;
  /** ucx_perftest path, when found. */
  readonly ucxPerftest: string | null;
  /** 1-minute load average when the run started: other work on the machine makes numbers noisy. */
  readonly loadAvg1: number;
}

/** What the run was asked to do (after defaults). */
export interface SettingsJson {
  readonly engine: 'ucx' | 'loopback';
  readonly transports: readonly string[];
  readonly ops: readonly ('read' | 'write')[];
  readonly sizes: readonly number[];
  readonly batches: readonly number[];
  readonly iters: number | null;
  readonly durationS: number | null;
  readonly warmup: number | null;
  readonly budgetBytes: number;
  readonly inflight: number;
  readonly check: boolean;
  readonly baseline: boolean;
  readonly maxRegionBytes: number;
  readonly rowCapS: number;
  /** Memory of each side: allocate, register (host) or cuda (device memory), as nixlbench's segment types. */
  readonly initiatorMemory: 'allocate' | 'register' | 'cuda';
  readonly targetMemory: 'allocate' | 'register' | 'cuda';
  /** The CUDA path asked for (auto, ipc, staging, ucx). */
  readonly cudaPath: string;
  /** Every descriptor moved block 0 (the baselines' one-buffer working set). */
  readonly sameBlock: boolean;
  /** tuning.batchBelow both agents got (null: the engine's default). */
  readonly batchBelow: number | null;
}

/** A transport the sweep (or the model workload) ran over. */
export interface TransportJson {
  /** As asked: tcp, sm, rdma, loopback or a UCX_TLS value. */
  readonly name: string;
  /** The UCX_TLS value both agents used (null for loopback). */
  readonly ucxTls: string | null;
  /** How bytes actually travelled, as the engine reports (`peer.transport`). */
  readonly category: string | null;
  /** Transport details, e.g. "tcp/lo" or "sysv/memory+posix/memory+cma/memory". */
  readonly lanes: string | null;
  /** Data path: rma, am or loopback. */
  readonly protocol: string | null;
  /** How device memory travelled (`peer.cudaPath`: ucx, ipc, staging); null when neither side used device memory. */
  readonly cudaPath: string | null;
  /** Process id of the target. */
  readonly targetPid: number | null;
  /** Bytes each side registered. */
  readonly regionBytes: number;
  readonly status: 'ok' | 'failed';
  readonly error: string | null;
}

/** Raw-UCX and memcpy numbers beside a row. */
export interface RowBaselineJson {
  readonly putBwGbps: number | null;
  readonly amBwGbps: number | null;
  readonly getGbps: number | null;
  readonly memcpyGbps: number | null;
  /** CUDA device-to-device copy of the same size (cuMemcpyDtoD, timed with events; device-memory runs). */
  readonly d2dGbps: number | null;
  /** CUDA pinned host-to-device copy of the same size (device-memory runs). */
  readonly h2dGbps: number | null;
}

/** Ours divided by a baseline. */
export interface RowRatiosJson {
  /** ours / ucp_put_bw. */
  readonly put: number | null;
  /** ours / max(ucp_put_bw, ucp_am_bw): the best raw UCX path. */
  readonly best: number | null;
  /** ours / ucp_get (READ rows). */
  readonly get: number | null;
  /** ours / memcpy (shared-memory rows). */
  readonly memcpy: number | null;
  /** ours / device-to-device copy. */
  readonly d2d: number | null;
  /** ours / pinned host-to-device copy. */
  readonly h2d: number | null;
}

/** The first byte a `--check` found wrong. */
export interface MismatchJson {
  /** 'target' (a WRITE's destination) or 'initiator' (a READ's). */
  readonly side: 'target' | 'initiator';
  readonly descriptor: number;
  readonly region: number;
  readonly offset: number;
  readonly byteInDescriptor: number;
  readonly expected: number;
  readonly actual: number;
  /** Which transfer of the row (0 = first warmup). */
  readonly transfer: number;
}

/** One row of the sweep: one (op, transport, block size, batch). */
export interface SweepRowJson {
  readonly op: 'read' | 'write';
  readonly transport: string;
  /** Bytes per descriptor. */
  readonly blockSize: number;
  /** Descriptors per transfer (posted as given: no coalescing). */
  readonly batch: number;
  readonly inflight: number;
  readonly status: 'ok' | 'failed' | 'skipped';
  /** Why it failed or was skipped. */
  readonly error: string | null;
  readonly errorCode: string | null;
  /** Measured transfers. */
  readonly iterations: number;
  readonly warmup: number;
  /** Bytes moved by the measured transfers. */
  readonly bytes: number;
  /** Wall time of the measured transfers (with `--check`: without the verification pauses). */
  readonly elapsedS: number;
  /** bytes / elapsedS / 10^9. */
  readonly gbps: number;
  /** Per transfer: from the call to post until completion. */
  readonly latencyUs: DistributionJson;
  /** JavaScript validation and marshalling (TransferStats.prepMs). */
  readonly prepUs: DistributionJson;
  /** Handing the operations to the engine (TransferStats.postMs). */
  readonly postUs: DistributionJson;
  /** From the last post until completion (TransferStats.completionMs). */
  readonly completionUs: DistributionJson;
  /** Descriptors posted per transfer. */
  readonly descriptors: number;
  /** True when every transfer of the row was verified byte by byte. */
  readonly checked: boolean;
  readonly verifiedBytes: number;
  readonly mismatch: MismatchJson | null;
  readonly baseline: RowBaselineJson | null;
  readonly ratios: RowRatiosJson | null;
}

/** One ucx_perftest run. */
export interface PerftestJson {
  readonly transport: string;
  readonly ucxTls: string;
  readonly test: 'ucp_put_bw' | 'ucp_get' | 'ucp_am_bw';
  readonly size: number;
  readonly iterations: number;
  readonly status: 'ok' | 'failed' | 'timeout';
  /** ucx_perftest's average bandwidth, MiB/s (2^20 bytes per second), as it prints it. */
  readonly mibps: number | null;
  /** The same in GB/s: MiB/s × 1.048576 / 1000. */
  readonly gbps: number | null;
  /** ucx_perftest's average overhead per iteration, µs. */
  readonly latencyUs: number | null;
  readonly wallS: number;
  readonly error: string | null;
}

/** One memcpy baseline (native, one core). */
export interface MemcpyJson {
  readonly size: number;
  readonly iterations: number;
  readonly gbps: number;
}

/** One CUDA copy baseline (device memory runs), on GPU 0, timed with CUDA events. */
export interface CudaCopyJson {
  /** dtod: device to device; htod: pinned host to device. */
  readonly kind: 'dtod' | 'htod';
  readonly size: number;
  readonly iterations: number;
  readonly gbps: number;
}

/** The transfer sweep. */
export interface SweepJson {
  readonly transports: readonly TransportJson[];
  readonly rows: readonly SweepRowJson[];
  readonly perftest: readonly PerftestJson[];
  readonly memcpy: readonly MemcpyJson[];
  readonly cuda: readonly CudaCopyJson[];
}

/** One (transport, op) of the model workload. */
export interface ModelRowJson {
  readonly transport: string;
  readonly op: 'read' | 'write';
  readonly status: 'ok' | 'failed';
  readonly error: string | null;
  readonly iterations: number;
  /** Time per request: from building the descriptors until every byte landed. */
  readonly requestMs: DistributionJson;
  /** bytesPerRequest / average request time. */
  readonly gbps: number;
  /** Descriptors before coalescing (blocks × tensors). */
  readonly descriptorsBefore: number;
  /** After lib/kv's pairing coalesced runs contiguous on both sides. */
  readonly descriptorsAfter: number;
  /** As the engine posted them. */
  readonly descriptorsPosted: number;
  /** Prep+post time per request: pairing + prepare + post marshalling (prepMs) + engine post (postMs). */
  readonly jsMs: DistributionJson;
  /**
   * Average of each step, ms: `pair` (lib/kv pairBlockDescriptors), `prepare` (agent.prepare),
   * `prep` and `post` (TransferStats.prepMs and postMs), `call` (the synchronous post() call).
   */
  readonly jsBreakdownMs: {
    readonly pair: number;
    readonly prepare: number;
    readonly prep: number;
    readonly post: number;
    readonly call: number;
  };
  /** Average jsMs / average requestMs, percent. */
  readonly jsSharePct: number;
  /** Time the JS thread was busy per request: pairing + prepare + the post() call. */
  readonly jsThreadMs: DistributionJson;
  /** Average jsThreadMs / average requestMs, percent. */
  readonly jsThreadSharePct: number;
  readonly checked: boolean;
  readonly mismatch: MismatchJson | null;
}

/** The model workload. */
export interface ModelJson {
  readonly preset: string;
  readonly tokens: number;
  readonly blockTokens: number;
  readonly blocks: number;
  readonly bytesPerToken: number;
  readonly bytesPerRequest: number;
  /** Bytes of one descriptor before coalescing (one layer's K or V of one block). */
  readonly blockBytes: number;
  readonly addressing: 'tensor' | 'arena';
  readonly contiguous: boolean;
  readonly cacheBlocks: number;
  readonly regionsPerSide: number;
  readonly transports: readonly TransportJson[];
  readonly rows: readonly ModelRowJson[];
}

/** Registration cost of one size. */
export interface RegisterRowJson {
  readonly bytes: number;
  readonly repeats: number;
  readonly registerUs: DistributionJson;
  readonly deregisterUs: DistributionJson;
}

/** Registration cost. */
export interface RegisterJson {
  readonly engine: string;
  readonly transports: string;
  readonly rows: readonly RegisterRowJson[];
  /** Many small regions at once. */
  readonly many: {
    readonly count: number;
    readonly regionBytes: number;
    readonly registerMs: number;
    readonly deregisterMs: number;
    readonly registerUsPerRegion: number;
    readonly deregisterUsPerRegion: number;
    readonly metadataBytes: number | null;
    readonly metadataMs: number | null;
  };
}

/** CPU of an idle connected pair over one transport. */
export interface IdleRowJson {
  readonly transport: string;
  readonly category: string | null;
  readonly status: 'ok' | 'failed';
  readonly error: string | null;
  readonly wallS: number;
  /** Percent of one core. */
  readonly initiatorPct: number;
  readonly targetPct: number;
  readonly totalPct: number;
}

/** The idle-CPU check. */
export interface IdleJson {
  readonly seconds: number;
  readonly rows: readonly IdleRowJson[];
}

/** One of the targets, as this run measured it. */
export interface TargetJson {
  readonly id: string;
  readonly description: string;
  /** 'n/a' when the run did not measure what the target needs (e.g. no --baseline). */
  readonly status: 'pass' | 'fail' | 'n/a';
  /** The measured value that decides (worst ratio, share or percent). */
  readonly value: number | null;
  readonly threshold: number;
  readonly detail: string;
}

/** The whole document. */
export interface BenchReportJson {
  readonly schema: typeof BENCH_SCHEMA_VERSION;
  readonly kvwire: string;
  /** The command line as given. */
  readonly command: string;
  /** ISO 8601. */
  readonly startedAt: string;
  readonly durationS: number;
  /** 0: every row passed; 1: something failed. */
  readonly exitCode: number;
  readonly machine: MachineJson;
  readonly settings: SettingsJson;
  /** Things the reader should know (a missing ucx_perftest, skipped rows, fallbacks). */
  readonly notices: readonly string[];
  readonly sweep: SweepJson | null;
  readonly model: ModelJson | null;
  readonly register: RegisterJson | null;
  readonly idle: IdleJson | null;
  readonly targets: readonly TargetJson[];
}

// ---------------------------------------------------------------------------------------------
// The same, as JSON Schema (draft 2020-12 subset: type, properties, required,
// additionalProperties, items, anyOf, enum, const, minimum, $ref, $defs).

/** A JSON Schema node (the subset `validate.ts` understands). */
export interface JsonSchema {
  readonly $schema?: string;
  readonly $id?: string;
  readonly $ref?: string;
  readonly $defs?: Readonly<Record<string, JsonSchema>>;
  readonly description?: string;
  readonly type?: string | readonly string[];
  readonly properties?: Readonly<Record<string, JsonSchema>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean;
  readonly items?: JsonSchema;
  readonly anyOf?: readonly JsonSchema[];
  readonly enum?: readonly unknown[];
  readonly const?: unknown;
  readonly minimum?: number;
}

const num: JsonSchema = { type: 'number', minimum: 0 };
const anyNum: JsonSchema = { type: 'number' };
const int: JsonSchema = { type: 'integer', minimum: 0 };
const str: JsonSchema = { type: 'string' };
const bool: JsonSchema = { type: 'boolean' };
const nullable = (s: JsonSchema): JsonSchema => ({ ...s, type: [s.type as string, 'null'] });
const ref = (name: string): JsonSchema => ({ $ref: `#/$defs/${name}` });
const nullableRef = (name: string): JsonSchema => ({ anyOf: [{ type: 'null' }, ref(name)] });

/** An object node: every listed property is required, no others are allowed. */
function obj(properties: Record<string, JsonSchema>, description?: string): JsonSchema {
  return {
    type: 'object',
    ...(description ? { description } : {}),
    properties,
    required: Object.keys(properties),
    additionalProperties: false,
  };
}

const arr = (items: JsonSchema): JsonSchema => ({ type: 'array', items });

const transport = obj({
  name: str,
  ucxTls: nullable(str),
  category: nullable(str),
  lanes: nullable(str),
  protocol: nullable(str),
  cudaPath: nullable(str),
  targetPid: nullable(int),
  regionBytes: int,
  status: { enum: ['ok', 'failed'] },
  error: nullable(str),
});

/** JSON Schema of {@link BenchReportJson}. */
export const BENCH_JSON_SCHEMA: JsonSchema = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: 'https://kvwire.dev/schemas/kvwire-bench-1.json',
  description: 'kvwire bench --json output (lib/bench/schema.ts)',
  $defs: {
    distribution: obj({ avg: anyNum, p50: anyNum, p99: anyNum, min: anyNum, max: anyNum }),
    transport,
    mismatch: obj({
      side: { enum: ['target', 'initiator'] },
      descriptor: int,
      region: int,
      offset: int,
      byteInDescriptor: int,
      expected: int,
      actual: int,
      transfer: int,
    }),
    sweepRow: obj({
      op: { enum: ['read', 'write'] },
      transport: str,
      blockSize: int,
      batch: int,
      inflight: int,
      status: { enum: ['ok', 'failed', 'skipped'] },
      error: nullable(str),
      errorCode: nullable(str),
      iterations: int,
      warmup: int,
      bytes: int,
      elapsedS: num,
      gbps: num,
      latencyUs: ref('distribution'),
      prepUs: ref('distribution'),
      postUs: ref('distribution'),
      completionUs: ref('distribution'),
      descriptors: int,
      checked: bool,
      verifiedBytes: int,
      mismatch: nullableRef('mismatch'),
      baseline: nullableRef('rowBaseline'),
      ratios: nullableRef('rowRatios'),
    }),
    rowBaseline: obj({
      putBwGbps: nullable(num),
      amBwGbps: nullable(num),
      getGbps: nullable(num),
      memcpyGbps: nullable(num),
      d2dGbps: nullable(num),
      h2dGbps: nullable(num),
    }),
    rowRatios: obj({
      put: nullable(num),
      best: nullable(num),
      get: nullable(num),
      memcpy: nullable(num),
      d2d: nullable(num),
      h2d: nullable(num),
    }),
    perftest: obj({
      transport: str,
      ucxTls: str,
      test: { enum: ['ucp_put_bw', 'ucp_get', 'ucp_am_bw'] },
      size: int,
      iterations: int,
      status: { enum: ['ok', 'failed', 'timeout'] },
      mibps: nullable(num),
      gbps: nullable(num),
      latencyUs: nullable(num),
      wallS: num,
      error: nullable(str),
    }),
    memcpy: obj({ size: int, iterations: int, gbps: num }),
    cudaCopy: obj({ kind: { enum: ['dtod', 'htod'] }, size: int, iterations: int, gbps: num }),
    sweep: obj({
      transports: arr(ref('transport')),
      rows: arr(ref('sweepRow')),
      perftest: arr(ref('perftest')),
      memcpy: arr(ref('memcpy')),
      cuda: arr(ref('cudaCopy')),
    }),
    modelRow: obj({
      transport: str,
      op: { enum: ['read', 'write'] },
      status: { enum: ['ok', 'failed'] },
      error: nullable(str),
      iterations: int,
      requestMs: ref('distribution'),
      gbps: num,
      descriptorsBefore: int,
      descriptorsAfter: int,
      descriptorsPosted: int,
      jsMs: ref('distribution'),
      jsBreakdownMs: obj({ pair: num, prepare: num, prep: num, post: num, call: num }),
      jsSharePct: num,
      jsThreadMs: ref('distribution'),
      jsThreadSharePct: num,
      checked: bool,
      mismatch: nullableRef('mismatch'),
    }),
    model: obj({
      preset: str,
      tokens: int,
      blockTokens: int,
      blocks: int,
      bytesPerToken: int,
      bytesPerRequest: int,
      blockBytes: int,
      addressing: { enum: ['tensor', 'arena'] },
      contiguous: bool,
      cacheBlocks: int,
      regionsPerSide: int,
      transports: arr(ref('transport')),
      rows: arr(ref('modelRow')),
    }),
    registerRow: obj({ bytes: int, repeats: int, registerUs: ref('distribution'), deregisterUs: ref('distribution') }),
    register: obj({
      engine: str,
      transports: str,
      rows: arr(ref('registerRow')),
      many: obj({
        count: int,
        regionBytes: int,
        registerMs: num,
        deregisterMs: num,
        registerUsPerRegion: num,
        deregisterUsPerRegion: num,
        metadataBytes: nullable(int),
        metadataMs: nullable(num),
      }),
    }),
    idleRow: obj({
      transport: str,
      category: nullable(str),
      status: { enum: ['ok', 'failed'] },
      error: nullable(str),
      wallS: num,
      initiatorPct: num,
      targetPct: num,
      totalPct: num,
    }),
    idle: obj({ seconds: num, rows: arr(ref('idleRow')) }),
    target: obj({
      id: str,
      description: str,
      status: { enum: ['pass', 'fail', 'n/a'] },
      value: nullable(anyNum),
      threshold: anyNum,
      detail: str,
    }),
  },
  ...obj({
    schema: { const: BENCH_SCHEMA_VERSION },
    kvwire: str,
    command: str,
    startedAt: str,
    durationS: num,
    exitCode: int,
    machine: obj({
      cpus: int,
      cpuModel: str,
      memoryBytes: int,
      kernel: str,
      platform: str,
      arch: str,
      node: str,
      ucx: nullable(str),
      ucxPerftest: nullable(str),
      loadAvg1: num,
    }),
    settings: obj({
      engine: { enum: ['ucx', 'loopback'] },
      transports: arr(str),
      ops: arr({ enum: ['read', 'write'] }),
      sizes: arr(int),
      batches: arr(int),
      iters: nullable(int),
      durationS: nullable(num),
      warmup: nullable(int),
      budgetBytes: int,
      inflight: int,
      check: bool,
      baseline: bool,
      maxRegionBytes: int,
      rowCapS: num,
      sameBlock: bool,
      batchBelow: nullable(int),
      initiatorMemory: { enum: ['allocate', 'register', 'cuda'] },
      targetMemory: { enum: ['allocate', 'register', 'cuda'] },
      cudaPath: str,
    }),
    notices: arr(str),
    sweep: nullableRef('sweep'),
    model: nullableRef('model'),
    register: nullableRef('register'),
    idle: nullableRef('idle'),
    targets: arr(ref('target')),
  }),
};
