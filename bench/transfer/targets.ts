/**
 * kvwire's performance targets (docs/bench.md, Targets), judged from what this run measured (never from a timed test).
 *
 * Rule for throughput targets: ucx_perftest has one configuration per size, so each size is
 * compared at our best batch for that size (as a nixlbench user picks the batch); the value is
 * the worst of those per-size ratios, and the detail lists every size.
 *
 * @packageDocumentation
 */
import type { IdleJson, ModelJson, RegisterJson, SweepJson, SweepRowJson, TargetJson } from './schema.js';
import { fmtSize } from './units.js';

const KIB64 = 64 << 10;
const MIB1 = 1 << 20;
const MIB16 = 16 << 20;

/** Our best ok row per size for (transport, op), sizes ascending. */
function bestPerSize(
  rows: readonly SweepRowJson[],
  transport: string,
  op: 'read' | 'write',
  minSize = 0,
): SweepRowJson[] {
  const by = new Map<number, SweepRowJson>();
  for (const r of rows) {
    if (r.transport !== transport || r.op !== op || r.status !== 'ok' || r.blockSize < minSize) continue;
    const b = by.get(r.blockSize);
    if (b === undefined || r.gbps > b.gbps) by.set(r.blockSize, r);
  }
  return [...by.values()].sort((a, b) => a.blockSize - b.blockSize);
}

function judge(
  id: string,
  description: string,
  threshold: number,
  pairs: { label: string; value: number | null }[],
  missing: string,
  atMost = false,
  unit: 'x' | '%' | 'ms' = atMost ? '%' : 'x',
): TargetJson {
  const known = pairs.filter(
    (p): p is { label: string; value: number } => p.value !== null && Number.isFinite(p.value),
  );
  if (known.length === 0) return { id, description, status: 'n/a', value: null, threshold, detail: missing };
  const worst = known.reduce((w, p) => ((atMost ? p.value > w.value : p.value < w.value) ? p : w));
  const pass = atMost ? worst.value <= threshold : worst.value >= threshold;
  const fmt = (v: number) =>
    unit === 'x' ? `${v.toFixed(2)}x` : unit === '%' ? `${v.toFixed(2)}%` : `${v.toFixed(2)} ms`;
  return {
    id,
    description,
    status: pass ? 'pass' : 'fail',
    value: worst.value,
    threshold,
    detail: `worst ${worst.label} ${fmt(worst.value)}; ${known.map((p) => `${p.label} ${fmt(p.value)}`).join(', ')}`,
  };
}

/**
 * The device-memory targets (runs with --memory cuda on both sides): CUDA IPC READ and WRITE of
 * 1 MiB+ blocks >= 0.9x the device-to-device copy; staging >= 0.8x the pinned host-to-device copy
 * at 16 MiB.
 */
function cudaTargets(sweep: SweepJson): TargetJson[] {
  const out: TargetJson[] = [];
  for (const t of sweep.transports.filter((x) => x.status === 'ok' && x.cudaPath !== null)) {
    const rows = (op: 'read' | 'write', min: number) =>
      bestPerSize(sweep.rows, t.name, op, min).map((r) => ({ r, op: op.toUpperCase() }));
    if (t.cudaPath === 'ipc') {
      out.push(
        judge(
          `cuda-ipc-vs-d2d/${t.name}`,
          'CUDA IPC READ and WRITE of 1 MiB+ blocks >= 0.9x the device-to-device copy',
          0.9,
          [...rows('read', MIB1), ...rows('write', MIB1)].map(({ r, op }) => ({
            label: `${op} ${fmtSize(r.blockSize)}`,
            value: r.ratios?.d2d ?? null,
          })),
          'needs device memory on both sides and rows of 1 MiB or more',
        ),
      );
    }
    if (t.cudaPath === 'staging') {
      out.push(
        judge(
          `cuda-staging-vs-h2d/${t.name}`,
          'staging READ and WRITE >= 0.8x the pinned host-to-device copy at 16 MiB',
          0.8,
          [...rows('read', MIB16), ...rows('write', MIB16)]
            .filter(({ r }) => r.blockSize === MIB16)
            .map(({ r, op }) => ({ label: `${op} 16M`, value: r.ratios?.h2d ?? null })),
          'needs device memory and a 16M row',
        ),
      );
    }
  }
  return out;
}

/** Registration of 1 GiB of device memory (`--register --memory cuda`) under 10 ms, p50. */
function registerTargets(register: RegisterJson): TargetJson[] {
  if (register.memory !== 'cuda') return [];
  const gib = register.rows.find((r) => r.bytes === 1 << 30);
  return [
    judge(
      'register-cuda-1g',
      'agent.register of 1 GiB of device memory < 10 ms (p50)',
      10,
      gib === undefined ? [] : [{ label: '1 GiB p50', value: gib.registerUs.p50 / 1000 }],
      'needs a 1 GiB row (--max-region 1G or more)',
      true,
      'ms',
    ),
  ];
}

/** Evaluates every target this run has data for (the rest are 'n/a' with the reason). */
export function evaluateTargets(
  sweep: SweepJson | null,
  model: ModelJson | null,
  idle: IdleJson | null,
  register: RegisterJson | null = null,
): TargetJson[] {
  const out: TargetJson[] = [];
  if (register !== null) out.push(...registerTargets(register));
  if (sweep !== null) out.push(...cudaTargets(sweep));
  if (sweep !== null) {
    const noBase = 'needs --baseline with ucx_perftest installed';
    for (const t of sweep.transports.filter((x) => x.status === 'ok' && x.ucxTls !== null)) {
      const writes = bestPerSize(sweep.rows, t.name, 'write', KIB64);
      out.push(
        judge(
          `write-vs-put-bw/${t.name}`,
          `WRITE >= 0.95x ucp_put_bw over ${t.name}, 64 KiB to 16 MiB (per size, our best batch)`,
          0.95,
          writes.map((r) => ({ label: fmtSize(r.blockSize), value: r.ratios?.put ?? null })),
          noBase,
        ),
      );
      const both = [
        ...writes.map((r) => ({ r, op: 'WRITE' })),
        ...bestPerSize(sweep.rows, t.name, 'read', KIB64).map((r) => ({ r, op: 'READ' })),
      ];
      out.push(
        judge(
          `vs-best-raw/${t.name}`,
          `READ and WRITE >= 0.9x max(ucp_put_bw, ucp_am_bw) over ${t.name}, 64 KiB to 16 MiB`,
          0.9,
          both.map(({ r, op }) => ({ label: `${op} ${fmtSize(r.blockSize)}`, value: r.ratios?.best ?? null })),
          noBase,
        ),
      );
      if (t.category === 'sm') {
        out.push(
          judge(
            `sm-vs-put-bw/${t.name}`,
            `shared memory >= 0.9x ucp_put_bw at >= 64 KiB (READ and WRITE)`,
            0.9,
            both.map(({ r, op }) => ({ label: `${op} ${fmtSize(r.blockSize)}`, value: r.ratios?.put ?? null })),
            noBase,
          ),
        );
        const big = [
          ...bestPerSize(sweep.rows, t.name, 'write', MIB16),
          ...bestPerSize(sweep.rows, t.name, 'read', MIB16),
        ].filter((r) => r.blockSize === MIB16);
        out.push(
          judge(
            `sm-vs-memcpy/${t.name}`,
            'shared memory >= 0.8x memcpy at 16 MiB (READ and WRITE)',
            0.8,
            big.map((r) => ({ label: `${r.op.toUpperCase()} 16M`, value: r.ratios?.memcpy ?? null })),
            'needs --baseline and a 16M row',
          ),
        );
      }
      if (t.category === 'tcp') {
        const reads = bestPerSize(sweep.rows, t.name, 'read');
        const allWrites = bestPerSize(sweep.rows, t.name, 'write');
        out.push(
          judge(
            `read-vs-write/${t.name}`,
            'READ over tcp >= 0.9x our WRITE of the same size',
            0.9,
            reads.map((r) => {
              const w = allWrites.find((x) => x.blockSize === r.blockSize);
              return { label: fmtSize(r.blockSize), value: w !== undefined && w.gbps > 0 ? r.gbps / w.gbps : null };
            }),
            'needs READ and WRITE rows over tcp',
          ),
        );
      }
    }
  }
  if (model !== null) {
    const sm = model.rows.filter(
      (r) => r.status === 'ok' && model.transports.find((t) => t.name === r.transport)?.category === 'sm',
    );
    const descriptors = model.rows.find((r) => r.descriptorsBefore > 0)?.descriptorsBefore ?? 0;
    out.push(
      judge(
        'js-share/sm',
        `prep+post of ${descriptors.toLocaleString('en-US')} descriptors (${model.tokens} tokens of ${model.preset}) <= 5% of the request's time over shared memory`,
        5,
        sm.map((r) => ({ label: r.op.toUpperCase(), value: r.jsSharePct })),
        'needs a --model run over sm',
        true,
      ),
    );
  }
  if (idle !== null) {
    out.push(
      judge(
        'idle-cpu',
        'an idle connected agent pair uses < 1% of one core',
        1,
        idle.rows.filter((r) => r.status === 'ok').map((r) => ({ label: r.transport, value: r.totalPct })),
        'the idle check failed',
        true,
      ),
    );
  }
  return out;
}
