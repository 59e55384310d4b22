// Where the CUDA toolkit's headers are, as the build systems look for them.
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** Where binding.gyp and CMakeLists.txt look for cuda.h. */
export const CUDA_INCLUDE_DIRS = ['/usr/local/cuda/include', '/usr/local/cuda-13.0/include', '/usr/include'];

/** The toolkit's include directory, when the toolkit is installed. */
export function cudaInclude(): string | undefined {
  return CUDA_INCLUDE_DIRS.find((d) => existsSync(join(d, 'cuda.h')));
}
