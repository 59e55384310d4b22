import { defineConfig } from 'vitest/config';

// GPU tests: `npm run test:gpu`. Each file skips with a clear message where no GPU is present.
export default defineConfig({
  test: {
    include: ['test/gpu/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
