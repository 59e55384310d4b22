// Whether this machine can run the GPU suite, and if not, why (the suite then skips, saying so).
import { capabilities, cuda } from '../../lib/index.js';

function reason(): string | undefined {
  const c = capabilities();
  if (!c.addon.loaded) return `the native addon did not load: ${c.addon.reason ?? 'unknown'}`;
  if (!c.cuda.headers)
    return 'kvwire was built without the CUDA toolkit headers; rebuild where /usr/local/cuda/include/cuda.h exists';
  if (!c.cuda.driver) return `no CUDA driver: ${c.cuda.reason ?? 'unknown'}`;
  if (c.cuda.devices === 0) return 'the CUDA driver sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)';
  if (cuda.devices().some((d) => /fake CUDA device/.test(d.name))) {
    return 'KVWIRE_LIBCUDA points at the fake CUDA driver (a test double for CPU CI); unset it to test a real GPU';
  }
  if (!c.engines.ucx.available) return `the UCX engine is unavailable: ${c.engines.ucx.reason ?? 'unknown'}`;
  return undefined;
}

/** Why the GPU suite cannot run here, or undefined when it can. */
export const GPU_SKIP = reason();

/** The title of a GPU describe block: says why it is skipped when it is. */
export function gpuTitle(what: string): string {
  return GPU_SKIP === undefined ? what : `${what} [SKIPPED: ${GPU_SKIP}]`;
}

if (GPU_SKIP !== undefined) console.warn(`kvwire GPU tests skipped: ${GPU_SKIP}`);
else
  console.warn(
    `kvwire GPU tests on: ${cuda
      .devices()
      .map((d) => `${d.ordinal}: ${d.name} (${d.pciBusId})`)
      .join('; ')}`,
  );
