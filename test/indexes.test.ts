import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lane, type TestDb, testDb } from './helpers.js';

// Every hot read of dailies, check-ins, summaries and the score ledger is served by an index. The
// planner is told not to seq-scan, so a missing index shows as a Seq Scan whatever the table size.
let tdb: TestDb;
beforeAll(async () => {
  if (lane.services) tdb = await testDb();
});
afterAll(() => tdb?.drop());

const USER = '01930000-0000-7000-8000-000000000001';
const QUERIES: [string, string, unknown[]][] = [
  [
    'dailies of a user',
    'SELECT * FROM dailies WHERE user_id = $1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT 500',
    [USER],
  ],
  [
    'check-ins of dailies',
    'SELECT * FROM daily_check_ins WHERE daily_id = ANY($1::uuid[]) AND date >= $2',
    [[USER], '2026-01-01'],
  ],
  [
    'check-ins per day',
    'SELECT date, count(*) FROM daily_check_ins WHERE user_id = $1 AND date BETWEEN $2 AND $3 GROUP BY date',
    [USER, '2026-01-01', '2026-01-07'],
  ],
  [
    'tasks done per day',
    "SELECT completed_on, count(*) FROM tasks WHERE user_id = $1 AND status = 'done' AND completed_on BETWEEN $2 AND $3 GROUP BY completed_on",
    [USER, '2026-01-01', '2026-01-07'],
  ],
  [
    'frozen days',
    "SELECT date FROM day_summaries WHERE user_id = $1 AND outcome = 'frozen' AND date BETWEEN $2 AND $3",
    [USER, '2026-01-01', '2026-01-07'],
  ],
  ['score', 'SELECT coalesce(sum(points), 0) FROM score_events WHERE user_id = $1', [USER]],
  [
    'live sessions',
    'SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL ORDER BY last_used_at DESC LIMIT 100',
    [USER],
  ],
  ['day settings', 'SELECT * FROM day_settings WHERE user_id = $1 ORDER BY effective_on', [USER]],
  [
    'login lookup',
    'SELECT * FROM users WHERE lower(email) = lower($1) OR lower(username) = lower($1) LIMIT 1',
    ['asha'],
  ],
];

describe('indexes (PostgreSQL)', () => {
  it.runIf(lane.services)('every hot read uses an index', async () => {
    const plans = await tdb.db.tx(async (q) => {
      await q.query('SET LOCAL enable_seqscan = off');
      const out: [string, string][] = [];
      for (const [name, sql, params] of QUERIES) {
        const { rows } = await q.query<Record<string, string>>(`EXPLAIN ${sql}`, params);
        out.push([name, rows.map((r) => Object.values(r)[0]).join('\n')]);
      }
      return out;
    });
    for (const [name, plan] of plans) {
      expect(plan, name).toMatch(/Index|Bitmap/);
      expect(plan, name).not.toMatch(/Seq Scan/);
    }
    console.log(`indexes: ${plans.length} queries planned with an index`);
  });
});
