import { defineConfig } from 'vitest/config';
import faults from './vitest.faults.config.js';

// `npm run test:chaos` (scripts/chaos.ts): the long suites of RELIABILITY.md, services mode, run as the
// fault suite is (one file and one test at a time: the faults are timed, and a soak must measure the
// app, not its neighbours). Suites that also run in `npm test` run here in their long form:
// test/figures.ts `chaos()` is true.
export default defineConfig({
  test: {
    ...faults.test,
    include: [
      'test/authz-matrix.test.ts',
      'test/fuzz-http.test.ts',
      'test/socket-fuzz.test.ts',
      'test/model.test.ts',
      'test/chat-delivery.test.ts',
      'test/account-deletion.test.ts',
      'test/faults/**/*.fault.ts',
      'test/chaos/**/*.chaos.ts',
    ],
  },
});
