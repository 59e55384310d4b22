// On a GPU: kvwire bench --memory cuda over CUDA IPC and over staging, checked byte by byte, with
// the device-to-device and pinned host-to-device copy baselines of the same run. The issue's
// throughput targets are printed, not asserted (no timed assertions); read them in the output.
import { describe, expect, it } from 'vitest';
import { benchReportErrors } from '../../bench/transfer/schema.js';
import type { BenchReportJson } from '../../bench/transfer/schema.js';
import { runCli } from '../bench/helpers.js';
import { GPU_SKIP, gpuTitle } from './gpu.js';

describe.skipIf(GPU_SKIP !== undefined)(gpuTitle('GPU bench'), () => {
  it.each([
    ['ipc', ['--memory', 'cuda', '--cuda-path', 'ipc']],
    ['staging', ['--memory', 'cuda', '--cuda-path', 'staging']],
    ['staging', ['--initiator-memory', 'cuda', '--target-memory', 'allocate', '--cuda-path', 'staging']],
  ])(
    'measures device memory over %s, verified, beside the CUDA copy baselines',
    async (path, args) => {
      const r = await runCli(
        [
          ...args,
          '--transports',
          'sm',
          '--sizes',
          '1M,16M',
          '--batches',
          '1,8',
          '--iters',
          '20',
          '--check',
          '--json',
          '--quiet',
        ],
        {},
        300_000,
      );
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout) as BenchReportJson;
      expect(benchReportErrors(doc)).toEqual([]);
      expect(doc.sweep!.transports[0]!.cudaPath).toBe(path);
      for (const row of doc.sweep!.rows) expect(row).toMatchObject({ status: 'ok', checked: true });
      for (const t of doc.targets.filter((x) => x.id.startsWith('cuda-')))
        console.log(`${t.status.toUpperCase()} ${t.id}: ${t.detail}`);
    },
    600_000,
  );
});
