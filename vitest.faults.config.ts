import { defineConfig } from 'vitest/config';

// The fault suite (`npm run test:faults`): real child processes, a private redis-server per test and a
// TCP proxy in front of PostgreSQL. Services lane only. One fork, one file at a time, one test at a
// time: the faults are timed, and two suites stopping things at once would measure each other.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.fault.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 120_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    reporters: ['default'],
  },
});
