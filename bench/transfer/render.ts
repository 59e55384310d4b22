/**
 * Text renderers of a bench report: tables for people (columns as nixlbench's, so numbers
 * compare: block size, batch, GB/s, average latency, p50/p99 of prep, post and completion; then
 * the baselines and ours-over-baseline ratios) and CSV for machines.
 *
 * @packageDocumentation
 */
import { renderTable } from '../../cli/kit/table.js';
import { describe } from './runner.js';
import type {
  BenchReportJson,
  IdleJson,
  ModelJson,
  RegisterJson,
  SweepJson,
  SweepRowJson,
  TargetJson,
  TransportJson,
} from './schema.js';
import { fmtBinary, fmtNum, fmtRatio, fmtSize } from './units.js';

/** The status cell of a row. */
function statusCell(r: SweepRowJson): string {
  if (r.status === 'skipped') return `skipped: ${r.error ?? ''}`;
  if (r.status === 'failed') return `FAILED: ${r.mismatch ? `corrupted at ${describe(r.mismatch)}` : (r.error ?? '')}`;
  return r.checked ? 'ok, verified' : 'ok';
}

/** One section: the rows of one (transport, op). */
function sweepSection(
  t: TransportJson | undefined,
  name: string,
  op: 'read' | 'write',
  rows: readonly SweepRowJson[],
): string {
  const withBase = rows.some((r) => r.baseline !== null);
  const withPerf = rows.some((r) => r.baseline?.putBwGbps !== null || r.baseline?.amBwGbps !== null) && withBase;
  const withMem = rows.some((r) => r.baseline?.memcpyGbps !== null && r.baseline !== null);
  const withCuda = rows.some(
    (r) => r.baseline !== null && (r.baseline.d2dGbps !== null || r.baseline.h2dGbps !== null),
  );
  const headers = [
    'block',
    'batch',
    'iters',
    'GB/s',
    'lat avg',
    'lat p50',
    'lat p99',
    'prep p50',
    'prep p99',
    'post p50',
    'post p99',
    'compl p50',
    'compl p99',
  ];
  if (withPerf) headers.push('put_bw', 'x put', 'am_bw', 'x best');
  if (withPerf && op === 'read') headers.push('get', 'x get');
  if (withMem) headers.push('memcpy', 'x memcpy');
  if (withCuda) headers.push('d2d', 'x d2d', 'h2d', 'x h2d');
  headers.push('status');
  const body = rows.map((r) => {
    const run = r.status !== 'skipped' && r.iterations > 0;
    const v = (x: number) => (run ? fmtNum(x) : '-');
    const cells = [
      fmtSize(r.blockSize),
      String(r.batch),
      String(r.iterations),
      v(r.gbps),
      v(r.latencyUs.avg),
      v(r.latencyUs.p50),
      v(r.latencyUs.p99),
      v(r.prepUs.p50),
      v(r.prepUs.p99),
      v(r.postUs.p50),
      v(r.postUs.p99),
      v(r.completionUs.p50),
      v(r.completionUs.p99),
    ];
    const b = r.baseline;
    if (withPerf)
      cells.push(fmtNum(b?.putBwGbps), fmtRatio(r.ratios?.put), fmtNum(b?.amBwGbps), fmtRatio(r.ratios?.best));
    if (withPerf && op === 'read') cells.push(fmtNum(b?.getGbps), fmtRatio(r.ratios?.get));
    if (withMem) cells.push(fmtNum(b?.memcpyGbps), fmtRatio(r.ratios?.memcpy));
    if (withCuda) cells.push(fmtNum(b?.d2dGbps), fmtRatio(r.ratios?.d2d), fmtNum(b?.h2dGbps), fmtRatio(r.ratios?.h2d));
    cells.push(statusCell(r));
    return cells;
  });
  const via = t?.category
    ? ` (via ${t.category}: ${t.lanes}, ${t.protocol}${t.cudaPath ? `; device memory by ${t.cudaPath}` : ''}${t.targetPid !== null ? `; target pid ${t.targetPid}` : ''})`
    : '';
  return `${op.toUpperCase()} over ${name}${via}\n${renderTable(headers, body)}`;
}

/** The legend printed under sweep tables. */
export const SWEEP_LEGEND =
  "GB/s = 10^9 bytes/s over the row's wall time; times in µs per transfer (lat: post call to completion; prep: JS validation and marshalling; " +
  'post: handing the descriptors to the engine; compl: last post to completion). ' +
  'Baselines in GB/s at the same block size: put_bw/am_bw/get = ucx_perftest ucp_put_bw/ucp_am_bw/ucp_get, memcpy = one core; ' +
  'x put = ours / put_bw, x best = ours / max(put_bw, am_bw), x get = ours / get. ' +
  'Device memory: d2d = CUDA device-to-device copy, h2d = pinned host-to-device copy, same size, same run.';

/** Tables of the sweep's rows of the given transports (all when omitted), one per (transport, op). */
export function renderSweep(sweep: SweepJson, only?: readonly string[]): string {
  const out: string[] = [];
  const names = [...new Set(sweep.rows.map((r) => r.transport))].filter((n) => only === undefined || only.includes(n));
  for (const name of names) {
    const t = sweep.transports.find((x) => x.name === name);
    if (t?.status === 'failed') out.push(`${name}: FAILED: ${t.error}`);
    for (const op of ['read', 'write'] as const) {
      const rows = sweep.rows.filter((r) => r.transport === name && r.op === op);
      if (rows.length > 0 && t?.status !== 'failed') out.push(sweepSection(t, name, op, rows));
    }
  }
  return out.join('\n\n');
}

/** The model workload's table. */
export function renderModel(m: ModelJson): string {
  const title =
    `${m.preset}: ${m.tokens.toLocaleString('en-US')} tokens = ${m.blocks} blocks of ${m.blockTokens} tokens = ` +
    `${fmtBinary(m.bytesPerRequest)} per request (${fmtBinary(m.bytesPerToken)}/token, ${fmtBinary(m.blockBytes)} per layer-K/V-block); ` +
    `${m.addressing} addressing (${m.regionsPerSide} region(s) per side), ${m.contiguous ? 'contiguous' : 'scattered'} block ids, cache of ${m.cacheBlocks} blocks`;
  const headers = [
    'transport',
    'op',
    'iters',
    'ms/request p50',
    'p99',
    'GB/s',
    'descs before',
    'after',
    'posted',
    'prep+post ms',
    'share',
    'pair',
    'prepare',
    'prep',
    'post',
    'JS thread ms',
    'share',
    'status',
  ];
  const rows = m.rows.map((r) => {
    const t = m.transports.find((x) => x.name === r.transport);
    const ok = r.status === 'ok';
    const v = (x: number) => (ok ? fmtNum(x) : '-');
    return [
      `${r.transport}${t?.category && t.category !== r.transport ? ` (${t.category})` : ''}`,
      r.op.toUpperCase(),
      String(r.iterations),
      v(r.requestMs.p50),
      v(r.requestMs.p99),
      v(r.gbps),
      ok ? r.descriptorsBefore.toLocaleString('en-US') : '-',
      ok ? r.descriptorsAfter.toLocaleString('en-US') : '-',
      ok ? r.descriptorsPosted.toLocaleString('en-US') : '-',
      v(r.jsMs.avg),
      ok ? `${r.jsSharePct.toFixed(2)}%` : '-',
      v(r.jsBreakdownMs.pair),
      v(r.jsBreakdownMs.prepare),
      v(r.jsBreakdownMs.prep),
      v(r.jsBreakdownMs.post),
      v(r.jsThreadMs.avg),
      ok ? `${r.jsThreadSharePct.toFixed(2)}%` : '-',
      ok ? (r.checked ? 'ok, verified' : 'ok') : `FAILED: ${r.error ?? ''}`,
    ];
  });
  return (
    `${title}\n${renderTable(headers, rows)}\n` +
    'ms/request: from pairing the block ids to the last byte landing. prep+post = pair (lib/kv pairBlockDescriptors) + prepare (agent.prepare) + ' +
    'prep (post marshalling, TransferStats.prepMs) + post (engine post, TransferStats.postMs), ms averages; share = of the request time. ' +
    'JS thread = pair + prepare + the synchronous post() call (the engine posts on its own thread).'
  );
}

/** The registration table. */
export function renderRegister(r: RegisterJson): string {
  const rows = r.rows.map((x) => [
    fmtSize(x.bytes),
    String(x.repeats),
    fmtNum(x.registerUs.p50),
    fmtNum(x.registerUs.p99),
    fmtNum(x.deregisterUs.p50),
    fmtNum(x.deregisterUs.p99),
  ]);
  const m = r.many;
  return (
    `registration of ${r.memory === 'cuda' ? 'device' : 'host'} memory (engine ${r.engine}, transports ${r.transports}; access readwrite)\n` +
    renderTable(['region', 'repeats', 'register p50 µs', 'p99', 'deregister p50 µs', 'p99'], rows) +
    `\n\n${m.count.toLocaleString('en-US')} regions of ${fmtSize(m.regionBytes)}: register ${fmtNum(m.registerMs)} ms (${fmtNum(m.registerUsPerRegion)} µs each), ` +
    `deregister ${fmtNum(m.deregisterMs)} ms (${fmtNum(m.deregisterUsPerRegion)} µs each)` +
    (m.metadataBytes !== null
      ? `; metadata of all of them: ${fmtBinary(m.metadataBytes)} in ${fmtNum(m.metadataMs)} ms`
      : '')
  );
}

/** The idle-CPU table. */
export function renderIdle(i: IdleJson): string {
  const rows = i.rows.map((r) => [
    r.transport,
    r.category ?? '-',
    r.status === 'ok' ? fmtNum(r.wallS) : '-',
    r.status === 'ok' ? `${r.initiatorPct.toFixed(3)}%` : '-',
    r.status === 'ok' ? `${r.targetPct.toFixed(3)}%` : '-',
    r.status === 'ok' ? `${r.totalPct.toFixed(3)}%` : '-',
    r.status === 'ok' ? 'ok' : `FAILED: ${r.error ?? ''}`,
  ]);
  return (
    `idle connected pair, CPU as % of one core over ${i.seconds} s\n` +
    renderTable(['transport', 'via', 'seconds', 'initiator', 'target', 'together', 'status'], rows)
  );
}

/** The targets table. */
export function renderTargets(targets: readonly TargetJson[]): string {
  const judged = targets.filter((t) => t.status !== 'n/a');
  const na = targets.filter((t) => t.status === 'n/a');
  const lines: string[] = [];
  if (judged.length > 0) {
    const rows = judged.map((t) => [t.status === 'pass' ? 'PASS' : 'BELOW', t.id, t.description, t.detail]);
    lines.push(
      `targets (the engine is still being tuned; BELOW = not met yet)\n${renderTable(['', 'target', 'what', 'measured'], rows)}`,
    );
  }
  if (na.length > 0) {
    const reasons = [...new Set(na.map((t) => t.detail))];
    lines.push(`not judged in this run: ${na.map((t) => t.id).join(', ')} (${reasons.join('; ')})`);
  }
  return lines.join('\n');
}

/** The whole report as text (what a terminal shows). */
export function renderText(r: BenchReportJson, skipSweep = false): string {
  const parts: string[] = [];
  if (r.sweep !== null && !skipSweep) parts.push(renderSweep(r.sweep), SWEEP_LEGEND);
  if (r.model !== null) parts.push(renderModel(r.model));
  if (r.register !== null) parts.push(renderRegister(r.register));
  if (r.idle !== null) parts.push(renderIdle(r.idle));
  const t = renderTargets(r.targets);
  if (t !== '') parts.push(t);
  return parts.join('\n\n');
}

function csvCell(v: unknown): string {
  const s =
    v === null || v === undefined
      ? ''
      : typeof v === 'number'
        ? String(Number.isInteger(v) ? v : +v.toPrecision(6))
        : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csv(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  return [headers.join(','), ...rows.map((r) => r.map(csvCell).join(','))].join('\n');
}

/** CSV: one line per row, with a header; each section that ran, separated by a blank line. */
export function renderCsv(r: BenchReportJson): string {
  const parts: string[] = [];
  if (r.sweep !== null) {
    parts.push(
      csv(
        [
          'op',
          'transport',
          'block_size',
          'batch',
          'inflight',
          'status',
          'iterations',
          'warmup',
          'bytes',
          'elapsed_s',
          'gbps',
          'lat_avg_us',
          'lat_p50_us',
          'lat_p99_us',
          'prep_p50_us',
          'prep_p99_us',
          'post_p50_us',
          'post_p99_us',
          'compl_p50_us',
          'compl_p99_us',
          'descriptors',
          'checked',
          'put_bw_gbps',
          'am_bw_gbps',
          'get_gbps',
          'memcpy_gbps',
          'ratio_put',
          'ratio_best',
          'ratio_get',
          'ratio_memcpy',
          'error',
        ],
        r.sweep.rows.map((x) => [
          x.op,
          x.transport,
          x.blockSize,
          x.batch,
          x.inflight,
          x.status,
          x.iterations,
          x.warmup,
          x.bytes,
          x.elapsedS,
          x.gbps,
          x.latencyUs.avg,
          x.latencyUs.p50,
          x.latencyUs.p99,
          x.prepUs.p50,
          x.prepUs.p99,
          x.postUs.p50,
          x.postUs.p99,
          x.completionUs.p50,
          x.completionUs.p99,
          x.descriptors,
          x.checked,
          x.baseline?.putBwGbps,
          x.baseline?.amBwGbps,
          x.baseline?.getGbps,
          x.baseline?.memcpyGbps,
          x.ratios?.put,
          x.ratios?.best,
          x.ratios?.get,
          x.ratios?.memcpy,
          x.mismatch ? `corrupted at ${describe(x.mismatch)}` : x.error,
        ]),
      ),
    );
  }
  if (r.model !== null) {
    const m = r.model;
    parts.push(
      csv(
        [
          'model',
          'tokens',
          'transport',
          'op',
          'status',
          'iterations',
          'bytes_per_request',
          'request_p50_ms',
          'request_p99_ms',
          'gbps',
          'descriptors_before',
          'descriptors_after',
          'descriptors_posted',
          'js_avg_ms',
          'js_share_pct',
          'js_thread_avg_ms',
          'js_thread_share_pct',
          'error',
        ],
        m.rows.map((x) => [
          m.preset,
          m.tokens,
          x.transport,
          x.op,
          x.status,
          x.iterations,
          m.bytesPerRequest,
          x.requestMs.p50,
          x.requestMs.p99,
          x.gbps,
          x.descriptorsBefore,
          x.descriptorsAfter,
          x.descriptorsPosted,
          x.jsMs.avg,
          x.jsSharePct,
          x.jsThreadMs.avg,
          x.jsThreadSharePct,
          x.error,
        ]),
      ),
    );
  }
  if (r.register !== null) {
    parts.push(
      csv(
        ['region_bytes', 'repeats', 'register_p50_us', 'register_p99_us', 'deregister_p50_us', 'deregister_p99_us'],
        r.register.rows.map((x) => [
          x.bytes,
          x.repeats,
          x.registerUs.p50,
          x.registerUs.p99,
          x.deregisterUs.p50,
          x.deregisterUs.p99,
        ]),
      ),
    );
    const m = r.register.many;
    parts.push(
      csv(
        [
          'regions',
          'region_bytes',
          'register_ms',
          'deregister_ms',
          'register_us_per_region',
          'deregister_us_per_region',
        ],
        [[m.count, m.regionBytes, m.registerMs, m.deregisterMs, m.registerUsPerRegion, m.deregisterUsPerRegion]],
      ),
    );
  }
  if (r.idle !== null) {
    parts.push(
      csv(
        ['transport', 'category', 'status', 'wall_s', 'initiator_pct', 'target_pct', 'total_pct', 'error'],
        r.idle.rows.map((x) => [
          x.transport,
          x.category,
          x.status,
          x.wallS,
          x.initiatorPct,
          x.targetPct,
          x.totalPct,
          x.error,
        ]),
      ),
    );
  }
  return parts.join('\n\n');
}
