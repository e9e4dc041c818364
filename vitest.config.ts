import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Two cores on CI: more workers than that only adds contention for the wasm kernels.
    maxWorkers: 2,
  },
});
