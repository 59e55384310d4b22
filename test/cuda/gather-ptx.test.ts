// native/cuda/gather_ptx.h is generated from native/cuda/gather.cu (tools/gen-gather-ptx.sh): the
// committed PTX must be what the committed source compiles to. Needs nvcc of the release that
// generated it (PTX text differs between releases); skipped, saying so, elsewhere.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../lib/native.js';

const RELEASE = 'release 13.0,';

function nvccSkip(): string | undefined {
  for (const nvcc of ['nvcc', '/usr/local/cuda/bin/nvcc']) {
    const r = spawnSync(nvcc, ['--version'], { encoding: 'utf8' });
    if (r.status === 0) return r.stdout.includes(RELEASE) ? undefined : `nvcc is not CUDA 13.0: ${r.stdout.trim()}`;
  }
  return 'no nvcc';
}
const SKIP = nvccSkip();

describe('the gather kernel PTX', () => {
  it.skipIf(SKIP !== undefined)(`matches its source${SKIP !== undefined ? ` [SKIPPED: ${SKIP}]` : ''}`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'kvwire-ptx-'));
    try {
      const out = join(dir, 'gather_ptx.h');
      execFileSync('bash', [join(packageRoot(), 'tools', 'gen-gather-ptx.sh'), out], { stdio: 'pipe' });
      expect(readFileSync(out, 'utf8')).toBe(
        readFileSync(join(packageRoot(), 'native', 'cuda', 'gather_ptx.h'), 'utf8'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is the kernel the engine loads: one entry, kvwire_gather, with its four parameters', () => {
    const h = readFileSync(join(packageRoot(), 'native', 'cuda', 'gather_ptx.h'), 'utf8');
    expect(h.match(/\.entry (\w+)\(/g)).toEqual(['.entry kvwire_gather(']);
    expect(h.match(/\.param \.u(64|32) kvwire_gather_param_\d/g)).toEqual([
      '.param .u64 kvwire_gather_param_0',
      '.param .u64 kvwire_gather_param_1',
      '.param .u64 kvwire_gather_param_2',
      '.param .u32 kvwire_gather_param_3',
    ]);
  });
});
