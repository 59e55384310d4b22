/**
 * The document `kvwire bench --json` prints, declared once as a JSON Schema (TypeBox): the
 * TypeScript types are derived from it ({@link Static}), {@link BENCH_JSON_SCHEMA} is the schema
 * itself, and {@link benchReportErrors} checks a document against it (TypeBox's validator).
 *
 * Conventions: every key is always present (absent values are `null`, never omitted); times are
 * microseconds (`...Us`), milliseconds (`...Ms`) or seconds (`...S`) as the name says; GB/s is
 * 10^9 bytes per second; sizes are bytes; ratios are ours divided by the baseline.
 *
 * Versioning: `schema` is `kvwire-bench/1`; a change that removes or retypes a key bumps it.
 *
 * @packageDocumentation
 */
import { Type, type Static, type TLiteral, type TProperties, type TSchema, type TUnion } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** The schema identifier of the documents this version writes. */
export const BENCH_SCHEMA_VERSION = 'kvwire-bench/1';

/** `T` with every property and array readonly, as the documents are built and read. */
type DeepReadonly<T> = T extends readonly (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** The TypeScript type of a schema. */
type Doc<S extends TSchema> = DeepReadonly<Static<S>>;

const num = (description?: string) => Type.Number({ minimum: 0, ...(description ? { description } : {}) });
const int = (description?: string) => Type.Integer({ minimum: 0, ...(description ? { description } : {}) });
const str = (description?: string) => Type.String(description ? { description } : {});
const bool = (description?: string) => Type.Boolean(description ? { description } : {});
const nullable = <S extends TSchema>(s: S) => Type.Union([s, Type.Null()]);
/** One of these strings (a union of literals: the derived type is the union of the strings). */
function oneOf<const L extends readonly string[]>(...values: L): TUnion<{ -readonly [K in keyof L]: TLiteral<L[K]> }> {
  return Type.Union(values.map((v) => Type.Literal(v))) as never;
}
/** An object whose listed properties are all required and no others allowed. */
const obj = <P extends TProperties>(properties: P, description?: string) =>
  Type.Object(properties, { additionalProperties: false, ...(description ? { description } : {}) });

const Distribution = obj(
  { avg: Type.Number(), p50: Type.Number(), p99: Type.Number(), min: Type.Number(), max: Type.Number() },
  'A summary of samples (bench/stats.ts): average, nearest-rank p50 and p99, min, max.',
);
/** A summary of samples (see `bench/stats.ts`). */
export type DistributionJson = Doc<typeof Distribution>;

const Machine = obj(
  {
    cpus: int('Logical CPUs (`nproc`).'),
    cpuModel: str(),
    memoryBytes: int(),
    kernel: str('Kernel release (`uname -r`).'),
    platform: str(),
    arch: str(),
    node: str('Node.js version.'),
    ucx: nullable(str('UCX version, when kvwire was built with UCX.')),
    ucxPerftest: nullable(str('ucx_perftest path, when found.')),
    loadAvg1: num('1-minute load average when the run started: other work on the machine makes numbers noisy.'),
  },
  'The machine the run measured.',
);
/** The machine the run measured. */
export type MachineJson = Doc<typeof Machine>;

const Memory = oneOf('allocate', 'register', 'cuda');
const Op = oneOf('read', 'write');

const Settings = obj(
  {
    engine: oneOf('ucx', 'loopback'),
    transports: Type.Array(str()),
    ops: Type.Array(Op),
    sizes: Type.Array(int()),
    batches: Type.Array(int()),
    iters: nullable(int()),
    durationS: nullable(num()),
    warmup: nullable(int()),
    budgetBytes: int(),
    inflight: int(),
    check: bool(),
    baseline: bool(),
    maxRegionBytes: int(),
    rowCapS: num(),
    initiatorMemory: Memory,
    targetMemory: Memory,
    cudaPath: str('The CUDA path asked for (auto, ipc, staging, ucx).'),
    sameBlock: bool("Every descriptor moved block 0 (the baselines' one-buffer working set)."),
    batchBelow: nullable(int("tuning.batchBelow both agents got (null: the engine's default).")),
  },
  'What the run was asked to do (after defaults).',
);
/** What the run was asked to do (after defaults). */
export type SettingsJson = Doc<typeof Settings>;

const Transport = obj(
  {
    name: str('As asked: tcp, sm, rdma, loopback or a UCX_TLS value.'),
    ucxTls: nullable(str('The UCX_TLS value both agents used (null for loopback).')),
    category: nullable(str('How bytes actually travelled, as the engine reports (`peer.transport`).')),
    lanes: nullable(str('Transport details, e.g. "tcp/lo" or "sysv/memory+posix/memory+cma/memory".')),
    protocol: nullable(str('Data path: rma, am or loopback.')),
    cudaPath: nullable(str('How device memory travelled (`peer.cudaPath`); null without device memory.')),
    targetPid: nullable(int('Process id of the target.')),
    regionBytes: int('Bytes each side registered.'),
    status: oneOf('ok', 'failed'),
    error: nullable(str()),
  },
  'A transport the sweep (or the model workload) ran over.',
);
/** A transport the sweep (or the model workload) ran over. */
export type TransportJson = Doc<typeof Transport>;

const RowBaseline = obj(
  {
    putBwGbps: nullable(num()),
    amBwGbps: nullable(num()),
    getGbps: nullable(num()),
    memcpyGbps: nullable(num()),
    d2dGbps: nullable(num('CUDA device-to-device copy of the same size (device-memory runs).')),
    h2dGbps: nullable(num('CUDA pinned host-to-device copy of the same size (device-memory runs).')),
  },
  'Raw-UCX and memcpy numbers beside a row.',
);
/** Raw-UCX and memcpy numbers beside a row. */
export type RowBaselineJson = Doc<typeof RowBaseline>;

const RowRatios = obj(
  {
    put: nullable(num('ours / ucp_put_bw.')),
    best: nullable(num('ours / max(ucp_put_bw, ucp_am_bw): the best raw UCX path.')),
    get: nullable(num('ours / ucp_get (READ rows).')),
    memcpy: nullable(num('ours / memcpy (shared-memory rows).')),
    d2d: nullable(num('ours / device-to-device copy.')),
    h2d: nullable(num('ours / pinned host-to-device copy.')),
  },
  'Ours divided by a baseline.',
);
/** Ours divided by a baseline. */
export type RowRatiosJson = Doc<typeof RowRatios>;

const Mismatch = obj(
  {
    side: oneOf('target', 'initiator'),
    descriptor: int(),
    region: int(),
    offset: int(),
    byteInDescriptor: int(),
    expected: int(),
    actual: int(),
    transfer: int('Which transfer of the row (0 = first warmup).'),
  },
  "The first byte a `--check` found wrong: 'target' (a WRITE's destination) or 'initiator' (a READ's).",
);
/** The first byte a `--check` found wrong. */
export type MismatchJson = Doc<typeof Mismatch>;

const SweepRow = obj(
  {
    op: Op,
    transport: str(),
    blockSize: int('Bytes per descriptor.'),
    batch: int('Descriptors per transfer (posted as given: no coalescing).'),
    inflight: int(),
    status: oneOf('ok', 'failed', 'skipped'),
    error: nullable(str('Why it failed or was skipped.')),
    errorCode: nullable(str()),
    iterations: int('Measured transfers.'),
    warmup: int(),
    bytes: int('Bytes moved by the measured transfers.'),
    elapsedS: num('Wall time of the measured transfers (with `--check`: without the verification pauses).'),
    gbps: num('bytes / elapsedS / 10^9.'),
    latencyUs: Distribution,
    prepUs: Distribution,
    postUs: Distribution,
    completionUs: Distribution,
    descriptors: int('Descriptors posted per transfer.'),
    checked: bool('True when every transfer of the row was verified byte by byte.'),
    verifiedBytes: int(),
    mismatch: nullable(Mismatch),
    baseline: nullable(RowBaseline),
    ratios: nullable(RowRatios),
  },
  'One row of the sweep: one (op, transport, block size, batch). Times per transfer: latency from the post call to completion; prep and post (TransferStats.prepMs, postMs); completion from the last post.',
);
/** One row of the sweep: one (op, transport, block size, batch). */
export type SweepRowJson = Doc<typeof SweepRow>;

const Perftest = obj(
  {
    transport: str(),
    ucxTls: str(),
    test: oneOf('ucp_put_bw', 'ucp_get', 'ucp_am_bw'),
    size: int(),
    iterations: int(),
    status: oneOf('ok', 'failed', 'timeout'),
    mibps: nullable(num("ucx_perftest's average bandwidth, MiB/s (2^20 bytes per second), as it prints it.")),
    gbps: nullable(num('The same in GB/s: MiB/s × 1.048576 / 1000.')),
    latencyUs: nullable(num("ucx_perftest's average overhead per iteration, µs.")),
    wallS: num(),
    error: nullable(str()),
  },
  'One ucx_perftest run.',
);
/** One ucx_perftest run. */
export type PerftestJson = Doc<typeof Perftest>;

const Memcpy = obj({ size: int(), iterations: int(), gbps: num() }, 'One memcpy baseline (native, one core).');
/** One memcpy baseline (native, one core). */
export type MemcpyJson = Doc<typeof Memcpy>;

const CudaCopy = obj(
  { kind: oneOf('dtod', 'htod'), size: int(), iterations: int(), gbps: num() },
  'One CUDA copy baseline on GPU 0, timed with CUDA events: dtod device to device, htod pinned host to device.',
);
/** One CUDA copy baseline (device memory runs). */
export type CudaCopyJson = Doc<typeof CudaCopy>;

const Sweep = obj(
  {
    transports: Type.Array(Transport),
    rows: Type.Array(SweepRow),
    perftest: Type.Array(Perftest),
    memcpy: Type.Array(Memcpy),
    cuda: Type.Array(CudaCopy),
  },
  'The transfer sweep.',
);
/** The transfer sweep. */
export type SweepJson = Doc<typeof Sweep>;

const ModelRow = obj(
  {
    transport: str(),
    op: Op,
    status: oneOf('ok', 'failed'),
    error: nullable(str()),
    iterations: int(),
    requestMs: Distribution,
    gbps: num('bytesPerRequest / average request time.'),
    descriptorsBefore: int('Descriptors before coalescing (blocks × tensors).'),
    descriptorsAfter: int("After lib/kv's pairing coalesced runs contiguous on both sides."),
    descriptorsPosted: int('As the engine posted them.'),
    jsMs: Distribution,
    jsBreakdownMs: obj({ pair: num(), prepare: num(), prep: num(), post: num(), call: num() }),
    jsSharePct: num('Average jsMs / average requestMs, percent.'),
    jsThreadMs: Distribution,
    jsThreadSharePct: num('Average jsThreadMs / average requestMs, percent.'),
    checked: bool(),
    mismatch: nullable(Mismatch),
  },
  'One (transport, op) of the model workload. requestMs: from building the descriptors until every byte landed; jsMs: pairing + prepare + post marshalling + engine post; jsThreadMs: time the JS thread was busy per request.',
);
/** One (transport, op) of the model workload. */
export type ModelRowJson = Doc<typeof ModelRow>;

const Model = obj(
  {
    preset: str(),
    tokens: int(),
    blockTokens: int(),
    blocks: int(),
    bytesPerToken: int(),
    bytesPerRequest: int(),
    blockBytes: int("Bytes of one descriptor before coalescing (one layer's K or V of one block)."),
    addressing: oneOf('tensor', 'arena'),
    contiguous: bool(),
    cacheBlocks: int(),
    regionsPerSide: int(),
    transports: Type.Array(Transport),
    rows: Type.Array(ModelRow),
  },
  'The model workload.',
);
/** The model workload. */
export type ModelJson = Doc<typeof Model>;

const RegisterRow = obj(
  { bytes: int(), repeats: int(), registerUs: Distribution, deregisterUs: Distribution },
  'Registration cost of one size.',
);
/** Registration cost of one size. */
export type RegisterRowJson = Doc<typeof RegisterRow>;

const Register = obj(
  {
    engine: str(),
    transports: str(),
    memory: oneOf('host', 'cuda'),
    rows: Type.Array(RegisterRow),
    many: obj(
      {
        count: int(),
        regionBytes: int(),
        registerMs: num(),
        deregisterMs: num(),
        registerUsPerRegion: num(),
        deregisterUsPerRegion: num(),
        metadataBytes: nullable(int()),
        metadataMs: nullable(num()),
      },
      'Many small regions at once.',
    ),
  },
  'Registration cost.',
);
/** Registration cost. */
export type RegisterJson = Doc<typeof Register>;

const IdleRow = obj(
  {
    transport: str(),
    category: nullable(str()),
    status: oneOf('ok', 'failed'),
    error: nullable(str()),
    wallS: num(),
    initiatorPct: num('Percent of one core.'),
    targetPct: num(),
    totalPct: num(),
  },
  'CPU of an idle connected pair over one transport.',
);
/** CPU of an idle connected pair over one transport. */
export type IdleRowJson = Doc<typeof IdleRow>;

const Idle = obj({ seconds: num(), rows: Type.Array(IdleRow) }, 'The idle-CPU check.');
/** The idle-CPU check. */
export type IdleJson = Doc<typeof Idle>;

const Target = obj(
  {
    id: str(),
    description: str(),
    status: oneOf('pass', 'fail', 'n/a'),
    value: nullable(Type.Number({ description: 'The measured value that decides (worst ratio, share or percent).' })),
    threshold: Type.Number(),
    detail: str(),
  },
  "One of kvwire's performance targets, as this run measured it ('n/a' when the run did not measure what it needs).",
);
/** One of kvwire's performance targets, as this run measured it. */
export type TargetJson = Doc<typeof Target>;

/** JSON Schema of the whole document (`kvwire bench --json`). */
export const BENCH_JSON_SCHEMA = Type.Object(
  {
    schema: Type.Literal(BENCH_SCHEMA_VERSION),
    kvwire: str(),
    command: str('The command line as given.'),
    startedAt: str('ISO 8601.'),
    durationS: num(),
    exitCode: int('0: every row passed; 1: something failed.'),
    machine: Machine,
    settings: Settings,
    notices: Type.Array(str(), {
      description: 'Things the reader should know (a missing ucx_perftest, skipped rows, fallbacks).',
    }),
    sweep: nullable(Sweep),
    model: nullable(Model),
    register: nullable(Register),
    idle: nullable(Idle),
    targets: Type.Array(Target),
  },
  {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://kvwire.dev/schemas/kvwire-bench-1.json',
    description: 'kvwire bench --json output (bench/transfer/schema.ts)',
    additionalProperties: false,
  },
);
/** The whole document. */
export type BenchReportJson = Doc<typeof BENCH_JSON_SCHEMA>;

/**
 * What is wrong with `value` as a `kvwire bench --json` document, each as `/json/pointer: message`
 * (e.g. `/sweep/rows/3/gbps: Expected number`); an empty list means valid.
 */
export function benchReportErrors(value: unknown, schema: TSchema = BENCH_JSON_SCHEMA): string[] {
  return [...Value.Errors(schema, value)].map((e) => `${e.path || '/'}: ${e.message}`);
}

/** The schemas of the document's parts, for tests of a part. */
export const BENCH_JSON_PARTS = { Distribution, Transport, SweepRow, Model, Target } as const;
