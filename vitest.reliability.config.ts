import { defineConfig } from 'vitest/config';

// The reliability suite (issue 10): `npm run test:reliability` runs its CI part (minutes),
// `npm run test:reliability:full` the full, nightly-style run (KVWIRE_RELIABILITY=full).
// Files run one at a time: each one loads the machine (soak, leaks, sanitizers, fuzzing), and the
// deadlines it checks must not be eaten by another file's load. Scenarios run in child processes
// compiled to dist/ (the scripts compile first).
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 900_000,
    hookTimeout: 900_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
