import { defineConfig } from 'vitest/config';

// Two-process tests spawn compiled fixtures from dist/ (npm test compiles first).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/gpu/**', 'node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
