// kvwire bench with device memory: the options, the refusal without a CUDA driver (exit 2, never a
// crash), and two-process runs over the fake CUDA driver (a TEST DOUBLE, see test/cuda/fake-driver.ts:
// its numbers mean nothing; the run proves the bench's device-memory plumbing, --check included,
// and the CUDA copy baselines beside the rows). On a GPU, test/gpu/bench.test.ts runs it for real.
import { FAKE_CUDA } from '../cuda/fake-driver.js';

import { describe, expect, it } from 'vitest';
import { parseBenchArgs, UsageError } from '../../bench/transfer/options.js';
import { REGISTER_SIZES } from '../../bench/transfer/register.js';
import { benchReportErrors } from '../../bench/transfer/schema.js';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { hasUcx, runCli } from './helpers.js';

describe('kvwire bench --memory cuda', () => {
  it('parses the memory of each side and the CUDA path, and refuses what it does not know', () => {
    const o = parseBenchArgs([
      '--memory',
      'cuda',
      '--target-memory',
      'register',
      '--cuda-path',
      'staging',
      '--staging-chunk',
      '4M',
      '--staging-buffers',
      '8',
    ]);
    expect([o.initiatorMemory, o.targetMemory]).toEqual(['cuda', 'register']);
    expect(o.cuda).toEqual({ path: 'staging', stagingChunkBytes: 4 << 20, stagingBuffers: 8 });
    const d = parseBenchArgs([]);
    expect([d.memory, d.initiatorMemory, d.targetMemory, d.cuda.path]).toEqual([
      'allocate',
      'allocate',
      'allocate',
      'auto',
    ]);
    expect(() => parseBenchArgs(['--memory', 'vram'])).toThrow(UsageError);
    expect(() => parseBenchArgs(['--initiator-memory', 'gpu'])).toThrow(
      /--initiator-memory must be allocate, register or cuda/,
    );
    expect(() => parseBenchArgs(['--cuda-path', 'nvlink'])).toThrow(/--cuda-path must be auto, ipc, staging or ucx/);
    expect(() => parseBenchArgs(['--staging-buffers', '0'])).toThrow(UsageError);
  });

  it("exits 2 with the driver's reason where CUDA is unavailable", async () => {
    const r = await runCli(['--memory', 'cuda', '--quiet'], { KVWIRE_LIBCUDA: '/nonexistent/libcuda.so.1' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--memory cuda needs a CUDA GPU: the CUDA driver \(libcuda\.so\.1\) is not installed/);
    expect(r.stderr).not.toMatch(/Segmentation|Aborted/);
  });

  it.runIf(hasUcx && FAKE_CUDA.path !== undefined).each([
    ['ipc', ['--memory', 'cuda']],
    ['staging', ['--memory', 'cuda', '--cuda-path', 'staging', '--staging-chunk', '64K']],
    [
      'staging',
      ['--initiator-memory', 'cuda', '--target-memory', 'register', '--cuda-path', 'staging', '--staging-chunk', '64K'],
    ],
  ])('runs a checked two-process sweep over %s with copy baselines (fake driver)', async (path, args) => {
    const r = await runCli([
      ...args,
      '--transports',
      'sm',
      '--sizes',
      '4K,256K',
      '--batches',
      '1,3',
      '--iters',
      '3',
      '--check',
      '--json',
      '--quiet',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as BenchReportJson;
    expect(benchReportErrors(doc)).toEqual([]);
    expect(doc.sweep!.transports[0]!.cudaPath).toBe(path);
    expect(doc.sweep!.rows).toHaveLength(2 * 2 * 2);
    for (const row of doc.sweep!.rows) {
      expect(row).toMatchObject({ status: 'ok', checked: true });
      expect(row.verifiedBytes).toBe((row.iterations + row.warmup) * row.blockSize * row.batch);
      expect(row.baseline!.d2dGbps).toBeGreaterThan(0);
      expect(row.ratios!.h2d).toBeGreaterThan(0);
    }
    expect(doc.sweep!.cuda.map((c) => `${c.kind}/${c.size}`)).toEqual([
      'dtod/4096',
      'htod/4096',
      'dtod/262144',
      'htod/262144',
    ]);
  });
  it.runIf(hasUcx && FAKE_CUDA.path !== undefined)(
    'times registration of device memory: ranges of one allocation, and many small ones (fake driver)',
    async () => {
      const r = await runCli([
        '--register',
        '--memory',
        'cuda',
        '--transports',
        'sm',
        '--max-region',
        '4M',
        '--json',
        '--quiet',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout) as BenchReportJson;
      expect(benchReportErrors(doc)).toEqual([]);
      expect(doc.register!.memory).toBe('cuda');
      expect(doc.register!.rows.map((x) => x.bytes)).toEqual(REGISTER_SIZES.filter((s) => s <= 4 << 20));
      for (const row of doc.register!.rows) expect(row.registerUs.p50).toBeGreaterThan(0);
      expect(doc.register!.many).toMatchObject({ count: 10_000, regionBytes: 4096 });
      // No 1 GiB row under --max-region 4M: the target says what it needs instead of a verdict.
      expect(doc.targets.find((t) => t.id === 'register-cuda-1g')).toMatchObject({ status: 'n/a' });
    },
    120_000,
  );
});
