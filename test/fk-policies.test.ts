import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestDb, testDb } from './helpers.js';

// G2: every foreign key has a deliberate ON DELETE policy. A new reference fails this test until it
// is added here, which is where its author decides what deleting the parent does to it.
const REVIEWED: Record<string, string> = {
  // Everything a user owns goes with them (account deletion).
  'sessions.user_id -> users': 'CASCADE',
  'mail_tokens.user_id -> users': 'CASCADE',
  'idempotency_keys.user_id -> users': 'CASCADE',
  'score_events.user_id -> users': 'CASCADE',
  'tasks.user_id -> users': 'CASCADE',
  'day_settings.user_id -> users': 'CASCADE',
  'dailies.user_id -> users': 'CASCADE',
  'daily_check_ins.user_id -> users': 'CASCADE',
  'day_summaries.user_id -> users': 'CASCADE',
  'overall_streaks.user_id -> users': 'CASCADE',
  // Relationships end when either person leaves.
  'friend_requests.from_user_id -> users': 'CASCADE',
  'friend_requests.to_user_id -> users': 'CASCADE',
  'friendships.user_a -> users': 'CASCADE',
  'friendships.user_b -> users': 'CASCADE',
  'blocks.blocker_id -> users': 'CASCADE',
  'blocks.blocked_id -> users': 'CASCADE',
  // Children of a user's own rows.
  'refresh_tokens.session_id -> sessions': 'CASCADE',
  'daily_check_ins.daily_id -> dailies': 'CASCADE',
  // Group tasks: an owned group task is handed over (or deleted) by account deletion first.
  'group_tasks.owner_id -> users': 'RESTRICT',
  'group_members.user_id -> users': 'CASCADE',
  'group_members.group_task_id -> group_tasks': 'CASCADE',
  'group_invitations.group_task_id -> group_tasks': 'CASCADE',
  'group_invitations.from_user_id -> users': 'CASCADE',
  'group_invitations.to_user_id -> users': 'CASCADE',
  'conversations.group_task_id -> group_tasks': 'CASCADE',
  'conversation_members.conversation_id -> conversations': 'CASCADE',
  'conversation_members.user_id -> users': 'CASCADE',
  // Maa's shown lines go with their user.
  'maa_messages.user_id -> users': 'CASCADE',
  // Chat: a deleted sender's messages stay as tombstones (erased first by the chat deletion step).
  'messages.sender_id -> users': 'SET NULL',
  'messages.conversation_id -> conversations': 'CASCADE',
  'messages.media_id -> media': 'SET NULL',
  'message_hidden.user_id -> users': 'CASCADE',
  'message_hidden.message_id -> messages': 'CASCADE',
  'media.owner_id -> users': 'CASCADE',
  // Leaderboard rows, badges and activity marks are the user's own.
  'leaderboard_scores.user_id -> users': 'CASCADE',
  'user_badges.user_id -> users': 'CASCADE',
  'activity_marks.user_id -> users': 'CASCADE',
  'maa_nudges.user_id -> users': 'CASCADE',
  // Notifications go with the person told, and with the person who caused them (G1: nothing about a
  // deleted account is left in anyone's list).
  'notifications.user_id -> users': 'CASCADE',
  'notifications.actor_id -> users': 'CASCADE',
};

let tdb: TestDb;
beforeAll(async () => {
  tdb = await testDb();
});
afterAll(() => tdb?.drop());

describe('foreign keys', () => {
  it('every reference declares the reviewed ON DELETE policy', async () => {
    const { rows } = await tdb.db.query<{ child: string; column: string; parent: string; rule: string }>(
      `SELECT kcu.table_name AS child, kcu.column_name AS column, ccu.table_name AS parent, rc.delete_rule AS rule
       FROM information_schema.referential_constraints rc
       JOIN information_schema.key_column_usage kcu
         ON kcu.constraint_name = rc.constraint_name AND kcu.constraint_schema = rc.constraint_schema
       JOIN information_schema.constraint_column_usage ccu
         ON ccu.constraint_name = rc.unique_constraint_name AND ccu.constraint_schema = rc.unique_constraint_schema
       WHERE rc.constraint_schema = 'public'
       ORDER BY 1, 2`,
    );
    const found = Object.fromEntries(rows.map((r) => [`${r.child}.${r.column} -> ${r.parent}`, r.rule]));
    expect(found).toEqual(REVIEWED);
    console.log(`G2: ${rows.length} foreign keys, each with its reviewed ON DELETE policy`);
  });
});
