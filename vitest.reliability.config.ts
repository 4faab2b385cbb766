import { defineConfig } from 'vitest/config';

/** `npm run test:reliability`: the crash, concurrency, restore, fuzz and disk-full loops. */
export default defineConfig({
  test: {
    include: ['test/reliability/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    globalSetup: ['test/reliability/summary.ts'],
  },
});
