import { describe, expect, it } from 'vitest';
import type { RegisterJson, SweepJson, SweepRowJson, TransportJson } from '../../bench/transfer/schema.js';
import { EMPTY_DISTRIBUTION } from '../../bench/stats.js';
import { evaluateTargets } from '../../bench/transfer/targets.js';

function row(
  transport: string,
  op: 'read' | 'write',
  size: number,
  batch: number,
  gbps: number,
  put: number | null,
  am: number | null,
): SweepRowJson {
  const best = put === null && am === null ? null : Math.max(put ?? 0, am ?? 0);
  return {
    op,
    transport,
    blockSize: size,
    batch,
    inflight: 1,
    status: 'ok',
    error: null,
    errorCode: null,
    iterations: 5,
    warmup: 1,
    bytes: 1,
    elapsedS: 1,
    gbps,
    latencyUs: EMPTY_DISTRIBUTION,
    prepUs: EMPTY_DISTRIBUTION,
    postUs: EMPTY_DISTRIBUTION,
    completionUs: EMPTY_DISTRIBUTION,
    descriptors: batch,
    checked: false,
    verifiedBytes: 0,
    mismatch: null,
    baseline: { putBwGbps: put, amBwGbps: am, getGbps: null, memcpyGbps: null, d2dGbps: null, h2dGbps: null },
    ratios: {
      put: put ? gbps / put : null,
      best: best ? gbps / best : null,
      get: null,
      memcpy: null,
      d2d: null,
      h2d: null,
    },
  };
}

/** A device-memory row with the CUDA copy baselines of its size. */
function cudaRow(
  transport: string,
  op: 'read' | 'write',
  size: number,
  gbps: number,
  d2d: number,
  h2d: number,
): SweepRowJson {
  const r = row(transport, op, size, 4, gbps, null, null);
  return {
    ...r,
    baseline: { ...r.baseline!, d2dGbps: d2d, h2dGbps: h2d },
    ratios: { ...r.ratios!, d2d: gbps / d2d, h2d: gbps / h2d },
  };
}

const tcp: TransportJson = {
  name: 'tcp',
  ucxTls: 'tcp',
  category: 'tcp',
  lanes: 'tcp/lo',
  protocol: 'am',
  cudaPath: null,
  targetPid: 1,
  regionBytes: 1,
  status: 'ok',
  error: null,
};

describe('bench targets', () => {
  it('compares each size at our best batch and reports the worst size', () => {
    const sweep: SweepJson = {
      transports: [tcp],
      perftest: [],
      memcpy: [],
      cuda: [],
      rows: [
        row('tcp', 'write', 65536, 1, 0.5, 1, 1.2),
        row('tcp', 'write', 65536, 16, 0.97, 1, 1.2),
        row('tcp', 'write', 1 << 20, 16, 2, 1.9, 1.8),
        row('tcp', 'read', 65536, 16, 1.1, 1, 1.2),
        row('tcp', 'read', 1 << 20, 16, 1.7, 1.9, 1.8),
        row('tcp', 'write', 4096, 1, 0.01, 1, 1), // below 64 KiB: not judged by the throughput targets
      ],
    };
    const t = evaluateTargets(sweep, null, null);
    const put = t.find((x) => x.id === 'write-vs-put-bw/tcp')!;
    expect(put.status).toBe('pass');
    expect(put.value).toBeCloseTo(0.97, 9);
    const best = t.find((x) => x.id === 'vs-best-raw/tcp')!;
    expect(best.status).toBe('fail');
    expect(best.detail).toMatch(/^worst WRITE 64K 0.81x/);
    const rw = t.find((x) => x.id === 'read-vs-write/tcp')!;
    expect(rw.status).toBe('fail'); // 4K: no READ row; 64K 1.13x; 1M 0.85x
    expect(rw.value).toBeCloseTo(0.85, 9);
  });

  it('says what it could not judge', () => {
    const sweep: SweepJson = {
      transports: [tcp],
      perftest: [],
      memcpy: [],
      cuda: [],
      rows: [row('tcp', 'write', 65536, 1, 1, null, null)],
    };
    const t = evaluateTargets(sweep, null, null).find((x) => x.id === 'write-vs-put-bw/tcp')!;
    expect(t).toMatchObject({ status: 'n/a', value: null });
    expect(t.detail).toMatch(/--baseline/);
  });

  it('judges registration of 1 GiB of device memory against 10 ms, and only of device memory', () => {
    const dist = (p50: number) => ({ avg: p50, p50, p99: p50, min: p50, max: p50 });
    const reg = (memory: 'host' | 'cuda', gibUs: number | null): RegisterJson => ({
      engine: 'ucx',
      transports: 'sm',
      memory,
      rows: [
        { bytes: 1 << 20, repeats: 20, registerUs: dist(50), deregisterUs: dist(10) },
        ...(gibUs === null ? [] : [{ bytes: 1 << 30, repeats: 3, registerUs: dist(gibUs), deregisterUs: dist(10) }]),
      ],
      many: {
        count: 1,
        regionBytes: 4096,
        registerMs: 1,
        deregisterMs: 1,
        registerUsPerRegion: 1,
        deregisterUsPerRegion: 1,
        metadataBytes: null,
        metadataMs: null,
      },
    });
    const judged = (r: RegisterJson) => evaluateTargets(null, null, null, r).find((x) => x.id === 'register-cuda-1g');
    expect(judged(reg('cuda', 420))).toMatchObject({
      status: 'pass',
      threshold: 10,
      detail: 'worst 1 GiB p50 0.42 ms; 1 GiB p50 0.42 ms',
    });
    expect(judged(reg('cuda', 12_500))).toMatchObject({ status: 'fail', value: 12.5 });
    expect(judged(reg('cuda', null))).toMatchObject({
      status: 'n/a',
      detail: expect.stringMatching(/--max-region 1G/),
    });
    expect(judged(reg('host', 12_500))).toBeUndefined();
  });

  it('judges CUDA IPC against the device-to-device copy (1 MiB+) and staging against pinned host-to-device (16 MiB)', () => {
    const ipc: TransportJson = { ...tcp, name: 'sm', category: 'sm', cudaPath: 'ipc' };
    const staging: TransportJson = { ...tcp, cudaPath: 'staging' };
    const sweep: SweepJson = {
      transports: [ipc, staging],
      perftest: [],
      memcpy: [],
      cuda: [],
      rows: [
        cudaRow('sm', 'read', 1 << 20, 95, 100, 50),
        cudaRow('sm', 'write', 1 << 20, 91, 100, 50),
        cudaRow('sm', 'write', 4096, 1, 100, 50), // below 1 MiB: not judged
        cudaRow('tcp', 'read', 16 << 20, 40, 100, 50),
        cudaRow('tcp', 'write', 16 << 20, 39, 100, 50),
      ],
    };
    const t = evaluateTargets(sweep, null, null);
    expect(t.find((x) => x.id === 'cuda-ipc-vs-d2d/sm')).toMatchObject({ status: 'pass', threshold: 0.9 });
    expect(t.find((x) => x.id === 'cuda-ipc-vs-d2d/sm')!.value).toBeCloseTo(0.91, 9);
    const st = t.find((x) => x.id === 'cuda-staging-vs-h2d/tcp')!;
    expect(st.status).toBe('fail');
    expect(st.value).toBeCloseTo(0.78, 9);
  });
});
