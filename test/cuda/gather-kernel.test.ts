// The gather kernel's own source (native/cuda/gather.cu) run on the host over a table built by
// the engine's own code (native/cuda/gather_table.h): test/fixtures/gather-host/harness.cc runs
// every (block, thread) of the launch in turn, which computes what the GPU computes (the kernel has
// no shared memory, barriers or atomics, and its threads write disjoint bytes), and checks every
// byte of the destination, gaps between ranges included, against memmove. Built with AddressSanitizer
// and UBSan's alignment check, so a read past a range or a misaligned 16-byte access (a fault on a
// GPU) fails too. Speed and the driver are test/gpu's.
import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildHarness } from '../fixtures/host-harness.js';

function build(): string {
  return buildHarness(
    'gather-host',
    ['test/fixtures/gather-host/harness.cc'],
    ['native/cuda/gather.cu', 'native/cuda/gather_table.h', 'native/cuda/gather_op.h', 'native/cuda/plane.h'],
    'address,alignment',
  );
}

describe('the gather kernel, run on the host', () => {
  let harness: string;
  beforeAll(() => {
    harness = build();
  }, 120_000);

  it.each([
    ['50 ranges, 64 blocks', ['1', '50']],
    ['500 ranges', ['2', '500']],
    ['1,500 ranges over 132 blocks (an H100 has 132 multiprocessors)', ['6', '1500', '1048576', '132']],
    ['more ranges than chunks allowed: one chunk per range, larger chunks', ['3', '200', '40']],
    ['a chunk limit that grows the chunk size, over 3 blocks', ['7', '64', '8', '3']],
    ['one range', ['5', '1']],
    ['seed 11, 700 ranges', ['11', '700']],
    ['seed 12, 700 ranges', ['12', '700']],
    ['seed 13, 700 ranges', ['13', '700']],
    ['seed 14, 700 ranges', ['14', '700']],
  ])('copies every range exactly: %s', (_what, args) => {
    const r = spawnSync(harness, args, { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^ok ranges=\d+ chunks=\d+ shift=\d+ grid=\d+\n$/);
    expect(r.status).toBe(0);
  });
});
