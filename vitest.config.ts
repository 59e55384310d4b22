import { defineConfig } from 'vitest/config';

// Two-process tests spawn compiled fixtures from dist/ (npm test compiles first). The reliability
// suite has its own config and scripts (vitest.reliability.config.ts, `npm run test:reliability`).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/gpu/**', 'test/reliability/**', 'node_modules/**', 'dist/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
  },
});
