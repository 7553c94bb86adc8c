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
    'chat history page',
    `SELECT * FROM messages m WHERE m.conversation_id = $1 AND m.seq >= $2 AND m.seq < $3
      AND NOT EXISTS (SELECT 1 FROM message_hidden h WHERE h.user_id = $4 AND h.message_id = m.id)
      ORDER BY m.seq DESC LIMIT 51`,
    [USER, 1, 1000, USER],
  ],
  [
    'chat unread count',
    `SELECT count(*) FROM messages m WHERE m.conversation_id = $1 AND m.seq > $2 AND m.deleted_at IS NULL
      AND m.sender_id IS DISTINCT FROM $3`,
    [USER, 10, USER],
  ],
  [
    'my conversations',
    `SELECT c.* FROM conversation_members cm JOIN conversations c ON c.id = cm.conversation_id
      WHERE cm.user_id = $1 ORDER BY c.updated_at DESC, c.id DESC LIMIT 21`,
    [USER],
  ],
  ["a sender's messages (account deletion)", 'SELECT id FROM messages WHERE sender_id = $1', [USER]],
  ['media quota', 'SELECT coalesce(sum(bytes), 0) FROM media WHERE owner_id = $1', [USER]],
  [
    'notifications page',
    `SELECT id, kind, data, created_at, read_at FROM notifications
      WHERE user_id = $1 AND (created_at, id) < ($2, $3) ORDER BY created_at DESC, id DESC LIMIT 21`,
    [USER, '2026-01-01T00:00:00Z', USER],
  ],
  [
    'unread notifications page',
    `SELECT id FROM notifications WHERE user_id = $1 AND read_at IS NULL
      ORDER BY created_at DESC, id DESC LIMIT 21`,
    [USER],
  ],
  [
    'notifications unread count',
    'SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL',
    [USER],
  ],
  [
    'notifications mark read by ids',
    'SELECT id FROM notifications WHERE user_id = $1 AND id = ANY($2::uuid[]) AND read_at IS NULL',
    [USER, [USER]],
  ],
  [
    'notifications by actor (block, account deletion)',
    'SELECT id FROM notifications WHERE actor_id = $1',
    [USER],
  ],
  [
    'notifications prune by age',
    `SELECT id FROM notifications WHERE created_at < $1 AND (read_at IS NOT NULL OR created_at < $2) LIMIT 5000`,
    ['2026-01-01T00:00:00Z', '2025-10-01T00:00:00Z'],
  ],
  [
    'global board top',
    `SELECT s.user_id, s.score FROM leaderboard_scores s JOIN users u ON u.id = s.user_id
      WHERE s.period = $1 AND u.profile_visibility = 'public' ORDER BY s.score DESC, s.user_id DESC LIMIT 20`,
    ['all'],
  ],
  [
    'board rows of a user',
    'SELECT period, score, version FROM leaderboard_scores WHERE user_id = $1',
    [USER],
  ],
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
