import { isDeepStrictEqual } from 'node:util';
import { addDays, type LocalDate } from '../../src/lib/days.js';
import { emptyOverallState, type OverallState, overallFold } from '../../src/modules/dailies/streaks.js';
import { figure } from '../figures.js';
import type { World } from './kit.js';

// G5 (RELIABILITY.md): whatever a chaos test did, what it leaves must add up. Each figure is
// recomputed here from the raw rows, written apart from the code that maintains it:
// - every board row equals the ledger it sums (all-time, and per ISO week in UTC);
// - every conversation holds seq 1..last_seq once each, and its members' cursors stay within it;
// - every member's unread count, as the API reads it, equals a count of the messages;
// - every stored overall streak equals a fold of the days the rollover closed.

/** Comparisons that collect what differs instead of stopping at the first, and count themselves. */
export function comparisons() {
  const mismatches: string[] = [];
  let count = 0;
  return {
    mismatches,
    checked: () => count,
    expectEq(what: string, actual: unknown, expected: unknown) {
      count++;
      if (!isDeepStrictEqual(actual, expected))
        mismatches.push(`${what}: ${JSON.stringify(actual)} ≠ ${JSON.stringify(expected)}`);
    },
  };
}

const ISO_WEEK = `to_char(created_at AT TIME ZONE 'UTC', 'IYYY-"W"IW')`;

export async function invariants(w: World, test: string): Promise<string[]> {
  const q = w.deps.db;
  const { mismatches, expectEq, checked } = comparisons();

  // Boards against the ledger. A board row whose points were all taken back reads 0.
  const { rows: boards } = await q.query<{ userId: string; period: string; ledger: number; board: number }>(
    `WITH ledger AS (
       SELECT user_id, 'all' AS period, sum(points)::int AS score FROM score_events GROUP BY 1
       UNION ALL
       SELECT user_id, ${ISO_WEEK}, sum(points)::int FROM score_events GROUP BY 1, 2)
     SELECT coalesce(l.user_id, b.user_id) AS user_id, coalesce(l.period, b.period) AS period,
            coalesce(l.score, 0) AS ledger, coalesce(b.score, 0) AS board
       FROM ledger l FULL JOIN leaderboard_scores b ON b.user_id = l.user_id AND b.period = l.period`,
  );
  for (const r of boards) expectEq(`board ${r.userId} ${r.period}`, r.board, r.ledger);

  // Conversations: seq 1..last_seq, each once; cursors never past the last message.
  const { rows: conversations } = await q.query<{ id: string; lastSeq: number; seqs: number[] }>(
    `SELECT c.id, c.last_seq, ARRAY(SELECT seq::int FROM messages m WHERE m.conversation_id = c.id ORDER BY seq) AS seqs
       FROM conversations c`,
  );
  const lastSeq = new Map<string, number>();
  for (const c of conversations) {
    lastSeq.set(c.id, c.lastSeq);
    expectEq(
      `seqs of conversation ${c.id}`,
      c.seqs,
      Array.from({ length: c.lastSeq }, (_, i) => i + 1),
    );
  }
  const { rows: members } = await q.query<{
    userId: string;
    conversationId: string;
    fromSeq: number;
    deliveredSeq: number;
    readSeq: number;
  }>('SELECT user_id, conversation_id, from_seq, delivered_seq, read_seq FROM conversation_members');
  const { rows: messages } = await q.query<{
    id: string;
    conversationId: string;
    seq: number;
    senderId: string | null;
    deleted: boolean;
  }>('SELECT id, conversation_id, seq, sender_id, deleted_at IS NOT NULL AS deleted FROM messages');
  const { rows: hidden } = await q.query<{ userId: string; messageId: string }>(
    'SELECT user_id, message_id FROM message_hidden',
  );
  const hiddenFrom = new Set(hidden.map((h) => `${h.userId}:${h.messageId}`));
  const byConversation = new Map<string, typeof messages>();
  for (const m of messages) {
    const list = byConversation.get(m.conversationId);
    if (list) list.push(m);
    else byConversation.set(m.conversationId, [m]);
  }
  const expectedUnread = new Map<string, number>();
  for (const m of members) {
    const last = lastSeq.get(m.conversationId) ?? 0;
    expectEq(
      `cursors of ${m.userId} in ${m.conversationId}`,
      m.readSeq <= m.deliveredSeq && m.deliveredSeq <= last,
      true,
    );
    // Others' messages after my read cursor, from my joining on, neither deleted nor hidden by me.
    const unread = (byConversation.get(m.conversationId) ?? []).filter(
      (x) =>
        x.seq > m.readSeq &&
        x.seq >= m.fromSeq &&
        !x.deleted &&
        x.senderId !== m.userId &&
        !hiddenFrom.has(`${m.userId}:${x.id}`),
    ).length;
    expectedUnread.set(`${m.userId}:${m.conversationId}`, unread);
  }
  for (const userId of new Set(members.map((m) => m.userId))) {
    let cursor: string | undefined;
    do {
      const page = await w.deps.chat.list(userId, { limit: 100, ...(cursor ? { cursor } : {}) });
      for (const c of page.items)
        expectEq(`unread of ${userId} in ${c.id}`, c.unreadCount, expectedUnread.get(`${userId}:${c.id}`));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  // Stored streaks: the closed days folded again. A day without a summary was a plain miss.
  const { rows: streaks } = await q.query<{ userId: string; state: OverallState; firstDay: LocalDate }>(
    `SELECT o.user_id, o.state, (SELECT min(effective_on) FROM day_settings d WHERE d.user_id = o.user_id) AS first_day
       FROM overall_streaks o WHERE o.state <> 'null'::jsonb AND o.state->>'lastClosedDate' IS NOT NULL`,
  );
  const { rows: summaries } = await q.query<{
    userId: string;
    date: LocalDate;
    completed: number;
    goal: number;
    outcome: string;
  }>('SELECT user_id, date, completed, goal, outcome FROM day_summaries');
  const summaryOf = new Map(summaries.map((s) => [`${s.userId}:${s.date}`, s]));
  for (const s of streaks) {
    const last = s.state.lastClosedDate as LocalDate;
    let state: OverallState = { ...emptyOverallState(), lastClosedDate: addDays(s.firstDay, -1) };
    for (let date = s.firstDay; date <= last; date = addDays(date, 1)) {
      const day = summaryOf.get(`${s.userId}:${date}`);
      const folded = overallFold(state, { date, completed: day?.completed ?? 0, goal: day?.goal ?? 1 });
      expectEq(`day ${date} of ${s.userId}`, folded.outcome, day?.outcome ?? 'missed');
      state = folded.state;
    }
    expectEq(`streak of ${s.userId}`, s.state, state);
  }

  figure('g5.mismatches', mismatches.length, {
    tests: 1,
    checks: checked(),
    board_rows: boards.length,
    conversations: conversations.length,
    members: members.length,
    streaks: streaks.length,
  });
  if (mismatches.length)
    console.log(`G5 after ${test}: ${mismatches.length} mismatches`, mismatches.slice(0, 20));
  else
    console.log(
      `G5 after ${test}: 0 mismatches in ${checked()} checks (${boards.length} board rows, ${conversations.length} conversations, ${members.length} memberships, ${streaks.length} streaks)`,
    );
  return mismatches;
}
