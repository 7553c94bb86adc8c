// `npm run test:chaos`: runs the long suites (vitest.chaos.config.ts) on PostgreSQL and Redis, gathers
// the figures they record through test/figures.ts, and writes reports/chaos.json and reports/chaos.md.
// Exits non-zero when a suite fails, a figure misses its target, or an expected figure never came
// (a suite that silently did not run is a failure too). Extra arguments go to vitest.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Recorded {
  key: string;
  value: number;
  counts: Record<string, number>;
  note?: string;
}

/**
 * Every figure the run must report. Losses, leaks, mismatches and unexpected 5xx must be 0; keys ending
 * in _ms, _mb or _ratio are measurements, printed with their target where one exists.
 */
const EXPECTED: Record<string, string> = {
  'authz.mismatches': 'authorization cells answering otherwise than the table',
  'authz.5xx': 'authorization cells answered with a server error',
  'authz.without_rows': 'routes and client events with no matrix row and no stated reason',
  'fuzz.http.5xx': 'fuzzed HTTP requests answered 5xx',
  'fuzz.http.undeclared_statuses': 'fuzzed requests answered with a status the document does not declare',
  'fuzz.http.schema_mismatches': 'responses not matching their declared schema',
  'fuzz.http.leaks': 'responses carrying hashes, tokens or others’ emails',
  'fuzz.http.broken_invariants': 'invariants broken after fuzzing (and mass-assignment failures)',
  'fuzz.socket.crashes': 'socket fuzz: uncaught errors and fuzzing sockets lost',
  'fuzz.socket.invalid_broadcasts': 'socket fuzz: fuzzed events that reached other clients',
  'fuzz.socket.side_chat_lost': 'socket fuzz: messages of a chat going on beside it, lost',
  'model.mismatches': 'C2: states differing from the reference model',
  'chat.lost': 'E3: messages lost under reconnect churn',
  'chat.duplicates_shown': 'E3: messages shown twice',
  'chat.reordered': 'E3: order violations',
  'chat.stored_duplicates': 'E2: duplicates stored after lost acks',
  'chat.delivery_p50_ms': 'E3: delivery latency p50 under churn',
  'chat.delivery_p99_ms': 'E3: delivery latency p99 under churn',
  'deletion.residual_rows': 'G1: rows of a deleted user left',
  'deletion.residual_keys': 'G1: Redis keys of a deleted user left',
  'deletion.residual_files': 'G1: files of a deleted user left',
  'pg_outage.unexpected_5xx': 'F2: 5xx other than 503 during a PostgreSQL restart',
  'pg_outage.recovery_ms': 'F2: time to full recovery after PostgreSQL is back',
  'redis_outage.5xx': 'F5/F6: 5xx while Redis is down or hung',
  'redis_outage.over_timeout': 'F6: requests waiting past the Redis command timeout',
  'e5.lost': 'E5: cross-node messages lost after resync (Redis stopped)',
  'e5.stored_duplicates': 'E5: duplicates stored',
  'f7.lost': 'F7: outbox job effects missing after Redis was flushed',
  'f7.duplicate_effects': 'F7: outbox job effects applied twice after Redis was flushed',
  'f8.lost': 'F8: job effects missing after worker kills',
  'f8.duplicate_effects': 'F8: job effects applied twice',
  'f1.recompute_mismatches': 'F1: scores, streaks, boards differing from a recomputation after kill -9',
  'f1.duplicates': 'F1: completions or ledger rows stored twice',
  'g7.lost': 'G7: outbox effects lost across crash windows',
  'g7.duplicate_effects': 'G7: outbox effects applied twice',
  'g5.mismatches':
    'G5: boards, conversation seqs and cursors, unread counts and streaks differing from a recomputation after each fault and limits test',
  'shutdown.inflight_lost': 'H1: in-flight requests lost at SIGTERM',
  'h2.lost': 'H2: acked chat messages missing after a socket drain and resync',
  'h2.stored_duplicates': 'H2: chat messages stored twice after a socket drain',
  'h3.lost': 'H3: job effects missing after a worker drain (short jobs, and a long one cut off)',
  'h3.duplicate_effects': 'H3: job effects applied twice after a worker drain (a long job run again)',
  'd6.slow_clients_not_cut': 'D6: slow clients not cut off by the timeouts',
  'd6.others_failed': 'D6: other clients’ requests failing during the attack',
  'd7.others_failed': 'D7: other routes failing during a login flood',
  'd7.others_p99_ratio': 'D7: other routes’ p99 during the flood over before it',
  'd8.errors': 'D8: errors during the soak',
  'd8.leaked_handles': 'D8: handles and descriptors left over after the soak',
  'd8.heap_growth_mb': 'D8: heap growth over the soak after warm-up (fitted)',
};

/** Targets of the measured figures; every other figure's target is 0. */
const LIMITS: Record<string, number> = { 'pg_outage.recovery_ms': 5000 };
const measured = (key: string) => /_(ms|mb|ratio)$/.test(key);

function targetOf(key: string): { text: string; met: (v: number) => boolean } {
  const limit = LIMITS[key];
  if (limit !== undefined) return { text: `≤ ${limit}`, met: (v) => v <= limit };
  if (measured(key)) return { text: 'recorded', met: () => true };
  return { text: '0', met: (v) => v === 0 };
}

function main() {
  const dir = mkdtempSync(join(tmpdir(), 'taskmaa-chaos-'));
  const started = Date.now();
  const env = {
    ...process.env,
    CHAOS_FIGURES: dir,
    TEST_DATABASE_URL: process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
    TEST_REDIS_URL: process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379',
    // C1's long form: 250 requests per operation, over 20,000 in all; no time budget.
    FUZZ_RUNS: process.env.FUZZ_RUNS ?? '250',
  };
  const vitestJson = join(dir, 'vitest.json');
  const run = spawnSync(
    'npx',
    [
      'vitest',
      'run',
      '--config',
      'vitest.chaos.config.ts',
      '--reporter=default',
      '--reporter=json',
      `--outputFile=${vitestJson}`,
      ...process.argv.slice(2),
    ],
    { stdio: 'inherit', env },
  );

  const records: Recorded[] = readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .flatMap((f) =>
      readFileSync(join(dir, f), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Recorded),
    );
  let tests = { passed: 0, failed: 0, skipped: 0 };
  try {
    const r = JSON.parse(readFileSync(vitestJson, 'utf8'));
    tests = { passed: r.numPassedTests, failed: r.numFailedTests, skipped: r.numPendingTests };
  } catch {
    tests.failed = 1;
  }
  rmSync(dir, { recursive: true, force: true });

  // A key recorded more than once (a suite with several cases) keeps its worst value; counts add up.
  const figures: Record<
    string,
    { value: number; target: string; met: boolean; counts: Record<string, number>; what: string }
  > = {};
  for (const r of records) {
    const had = figures[r.key];
    const counts = { ...(had?.counts ?? {}) };
    for (const [k, n] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + n;
    const value = had ? Math.max(had.value, r.value) : r.value;
    const target = targetOf(r.key);
    figures[r.key] = {
      value,
      target: target.text,
      met: target.met(value),
      counts,
      what: EXPECTED[r.key] ?? r.note ?? '',
    };
  }
  const missing = Object.keys(EXPECTED).filter((k) => !(k in figures));
  const missed = Object.entries(figures)
    .filter(([, f]) => !f.met)
    .map(([k]) => k);
  const ok = run.status === 0 && tests.failed === 0 && missing.length === 0 && missed.length === 0;
  const report = {
    generatedAt: new Date().toISOString(),
    ok,
    seconds: Math.round((Date.now() - started) / 1000),
    tests,
    missing,
    missed,
    figures: Object.fromEntries(Object.entries(figures).sort(([a], [b]) => a.localeCompare(b))),
  };
  mkdirSync('reports', { recursive: true });
  writeFileSync('reports/chaos.json', `${JSON.stringify(report, null, 2)}\n`);
  const counts = (c: Record<string, number>) =>
    Object.entries(c)
      .map(([k, n]) => `${k} ${Number.isInteger(n) ? n : n.toFixed(1)}`)
      .join(', ');
  const md = [
    `# Chaos run ${report.generatedAt}`,
    '',
    `${ok ? 'OK' : 'NOT OK'}: tests ${tests.passed} passed, ${tests.failed} failed, ${tests.skipped} skipped in ${report.seconds} s.` +
      (missing.length ? ` Missing figures: ${missing.join(', ')}.` : '') +
      (missed.length ? ` Targets missed: ${missed.join(', ')}.` : ''),
    '',
    '| figure | value | target | met | counts behind it | what |',
    '|---|---:|---|---|---|---|',
    ...Object.entries(report.figures).map(
      ([k, f]) =>
        `| \`${k}\` | ${Number.isInteger(f.value) ? f.value : f.value.toFixed(2)} | ${f.target} | ${f.met ? 'yes' : '**no**'} | ${counts(f.counts)} | ${f.what} |`,
    ),
    '',
  ].join('\n');
  writeFileSync('reports/chaos.md', md);
  process.stdout.write(
    `\n${md}\nchaos: ${tests.passed} passed, ${tests.failed} failed, ${tests.skipped} skipped\n`,
  );
  process.exit(ok ? 0 : 1);
}

main();
