// Builds kvwire's fake CUDA driver (test/fixtures/fake-cuda: a TEST DOUBLE for CPU-only CI, not
// CUDA) and points this process, and the children it forks, at it through KVWIRE_LIBCUDA.
//
// Import this module first in a test file: the driver is loaded once per process, at the first
// CUDA call, and must find KVWIRE_LIBCUDA set by then. What the fake proves is that kvwire's own
// CUDA code paths are right (validation, IPC metadata, copy completion, staging, error mapping);
// only test/gpu, run on a GPU, proves the real driver and hardware.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../lib/native.js';
import { CUDA_INCLUDE_DIRS, cudaInclude } from './toolkit.js';

const SOURCES = join(packageRoot(), 'test', 'fixtures', 'fake-cuda');

function build(): { path?: string; reason?: string } {
  const include = cudaInclude();
  if (include === undefined)
    return { reason: `the CUDA toolkit headers (cuda.h) are not installed in ${CUDA_INCLUDE_DIRS.join(', ')}` };
  const files = readdirSync(SOURCES)
    .filter((f) => f.endsWith('.c') || f.endsWith('.h'))
    .sort();
  const hash = createHash('sha256');
  for (const f of files) hash.update(f).update(readFileSync(join(SOURCES, f)));
  const dir = join(tmpdir(), `kvwire-fake-cuda-${hash.digest('hex').slice(0, 16)}`);
  const out = join(dir, 'libfakecuda.so');
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${out}.${process.pid}.tmp`;
    try {
      execFileSync(
        'gcc',
        [
          '-shared',
          '-fPIC',
          '-O1',
          '-Wall',
          '-Wextra',
          '-Werror',
          `-I${include}`,
          '-o',
          tmp,
          ...files.filter((f) => f.endsWith('.c')).map((f) => join(SOURCES, f)),
          '-lpthread',
        ],
        { stdio: 'pipe' },
      );
    } catch (e) {
      // The toolkit is here, so the fake must build: a failure fails the tests, never skips them.
      throw new Error(
        `building the fake CUDA driver failed: ${(e as { stderr?: Buffer }).stderr?.toString() ?? (e as Error).message}`,
        { cause: e },
      );
    }
    renameSync(tmp, out); // atomic: test files building it at once never load half a library
  }
  return { path: out };
}

/** The fake driver's path, or why it could not be built (then the fake-driver tests skip). */
export const FAKE_CUDA = build();

if (FAKE_CUDA.path !== undefined) process.env.KVWIRE_LIBCUDA = FAKE_CUDA.path;
if (FAKE_CUDA.reason !== undefined) console.warn(`kvwire: fake-CUDA-driver tests skipped: ${FAKE_CUDA.reason}`);
