// The bench's data, written straight into the database in a few set-based statements (seconds, not
// minutes of HTTP): members of the leaderboard, the task owners among them with their sessions,
// their tasks, the score ledger and the board rows the ledger implies. Ids are derived from a seed
// string, so the PostgreSQL and PGlite copies hold the very same rows and the same tokens work on both.
import { createHash } from 'node:crypto';
import type { Db } from '../src/lib/db.js';
import { emptyOverallState } from '../src/modules/dailies/streaks.js';

export interface SeedSizes {
  /** Users on the leaderboard (all public, verified). */
  members: number;
  /** The first `owners` members own tasks and are signed in. */
  owners: number;
  /** Of the owners, this many own `heavyTasks` tasks each (tasks.list reads their pages). */
  heavy: number;
  heavyTasks: number;
  tasks: number;
}

export const FULL: SeedSizes = { members: 10_000, owners: 1000, heavy: 10, heavyTasks: 1000, tasks: 100_000 };
export const QUICK: SeedSizes = { members: 2000, owners: 100, heavy: 2, heavyTasks: 1000, tasks: 10_000 };

export interface SeedPlan {
  sizes: SeedSizes;
  salt: string;
  members: string[];
  owners: { userId: string; sessionId: string }[];
  heavy: string[];
  /** Owners whose open tasks tasks.complete and jobs.throughput use up (not the heavy ones). */
  pool: string[];
  now: Date;
}

/** A UUID-shaped digest: the same input gives the same id in every database. */
function uuidOf(text: string): string {
  const h = createHash('md5').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export function seedPlan(sizes: SeedSizes, salt: string, now = new Date()): SeedPlan {
  const members = Array.from({ length: sizes.members }, (_, i) => uuidOf(`${salt}:user:${i}`));
  const owners = members
    .slice(0, sizes.owners)
    .map((userId, i) => ({ userId, sessionId: uuidOf(`${salt}:session:${i}`) }));
  return {
    sizes,
    salt,
    members,
    owners,
    heavy: members.slice(0, sizes.heavy),
    pool: members.slice(sizes.heavy, sizes.owners),
    now,
  };
}

/** Tasks per owner: the heavy ones their fixed count, the rest share what is left evenly. */
function taskCounts(plan: SeedPlan): number[] {
  const { heavy, heavyTasks, owners, tasks } = plan.sizes;
  const rest = Math.max(0, tasks - heavy * heavyTasks);
  const light = owners - heavy;
  return plan.owners.map((_, i) =>
    i < heavy ? heavyTasks : Math.floor(rest / light) + (i - heavy < rest % light ? 1 : 0),
  );
}

const DAY_MS = 86400_000;

export async function seed(db: Db, plan: SeedPlan, passwordHash: string): Promise<void> {
  const now = plan.now;
  const joined = new Date(now.getTime() - 30 * DAY_MS);
  const today = now.toISOString().slice(0, 10);
  await db.query(
    `INSERT INTO users (id, username, email, email_verified_at, password_hash, name, timezone,
                        profile_visibility, created_at, updated_at)
     SELECT u.id, 'bench_' || u.n, 'bench_' || u.n || '@example.test', $2, $3, 'Bench ' || u.n, 'UTC',
            'public', $2, $2
       FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)`,
    [plan.members, joined, passwordHash],
  );
  await db.query(
    `INSERT INTO day_settings (user_id, effective_on, timezone, day_start_hour)
     SELECT id, (created_at AT TIME ZONE 'UTC')::date, 'UTC', 0 FROM users WHERE id = ANY($1::uuid[])`,
    [plan.members],
  );
  // Days closed through yesterday, as the rollover leaves them; otherwise the app's first rollover
  // catches up a month for every member while the scenarios run.
  const yesterday = new Date(now.getTime() - DAY_MS).toISOString().slice(0, 10);
  await db.query(
    `INSERT INTO overall_streaks (user_id, state, last_closed_date, updated_at)
     SELECT id, $2::jsonb, $3, $4 FROM unnest($1::uuid[]) AS id`,
    [plan.members, JSON.stringify({ ...emptyOverallState(), lastClosedDate: yesterday }), yesterday, now],
  );
  await db.query(
    `INSERT INTO sessions (id, user_id, user_agent, ip, created_at, last_used_at, expires_at)
     SELECT s.id, s.user_id, 'bench', '127.0.0.1', $3, $3, $4
       FROM unnest($1::uuid[], $2::uuid[]) AS s(id, user_id)`,
    [
      plan.owners.map((o) => o.sessionId),
      plan.owners.map((o) => o.userId),
      now,
      new Date(now.getTime() + DAY_MS),
    ],
  );
  // A mix like real lists: a fifth done, a third each priority, most with a due date, some tagged.
  const counts = taskCounts(plan);
  const BATCH = 100;
  for (let i = 0; i < plan.owners.length; i += BATCH) {
    const owners = plan.owners.slice(i, i + BATCH);
    await db.query(
      `INSERT INTO tasks (id, user_id, title, description, priority, due_at, tags, status, completed_at,
                          completed_on, created_at, updated_at)
       SELECT md5($3 || ':task:' || o.id || ':' || g)::uuid, o.id, 'Task ' || g, '',
              (ARRAY['high', 'medium', 'low'])[1 + g % 3],
              CASE WHEN g % 4 = 0 THEN NULL ELSE $4::timestamptz + (g % 60) * interval '1 day' END,
              CASE WHEN g % 5 = 0 THEN ARRAY['work'] WHEN g % 7 = 0 THEN ARRAY['home', 'errand'] ELSE '{}' END,
              CASE WHEN g % 5 = 1 THEN 'done' ELSE 'open' END,
              CASE WHEN g % 5 = 1 THEN $4::timestamptz END,
              CASE WHEN g % 5 = 1 THEN $5::date END,
              $6::timestamptz + g * interval '1 minute', $6::timestamptz + g * interval '1 minute'
         FROM unnest($1::uuid[], $2::int[]) AS o(id, n), generate_series(1, o.n) AS g`,
      [owners.map((o) => o.userId), counts.slice(i, i + BATCH), plan.salt, now, today, joined],
    );
  }
  // The ledger: every done task paid, and each member some days of dailies, so all of them score.
  await db.query(
    `INSERT INTO score_events (id, user_id, source, source_key, points, local_date, created_at)
     SELECT md5('done:' || id)::uuid, user_id, 'task_done', id::text, 10, completed_on, $1
       FROM tasks WHERE status = 'done'`,
    [now],
  );
  await db.query(
    `INSERT INTO score_events (id, user_id, source, source_key, points, local_date, created_at)
     SELECT md5('daily:' || u.id || ':' || d)::uuid, u.id, 'daily_done', 'bench-' || d, 10, $2, $3
       FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n), generate_series(1, 1 + (u.n % 20)::int) AS d`,
    [plan.members, today, now],
  );
  // Board rows as the ledger implies them: the expressions of migration 0011's backfill.
  await db.query(
    `INSERT INTO leaderboard_scores (period, user_id, score)
       SELECT 'all', user_id, sum(points) FROM score_events GROUP BY user_id`,
  );
  await db.query(
    `INSERT INTO leaderboard_scores (period, user_id, score)
       SELECT to_char(created_at AT TIME ZONE 'UTC', 'IYYY-"W"IW'), user_id, sum(points)
         FROM score_events GROUP BY 1, 2`,
  );
  // Maa's morning word of today, said: her sweep (at start, then every 15 minutes) would otherwise speak
  // to 9,000 members in the middle of the measures, or not, by the hour the bench runs at. Evenings
  // are quiet by themselves: nobody has a streak at risk.
  await db.query(
    `INSERT INTO maa_nudges (user_id, local_date, occasion, created_at)
     SELECT id, $2, 'day_start', $3 FROM unnest($1::uuid[]) AS id`,
    [plan.members, today, now],
  );
  // Fresh statistics and visibility maps now, or autovacuum does it in the middle of a measurement.
  await db.exec('VACUUM ANALYZE');
}

export interface TaskRef {
  id: string;
  userId: string;
}

/** Tasks of any owner, spread over all of them, for the reads of one task. */
export async function sampleTasks(db: Db, n: number): Promise<TaskRef[]> {
  const { rows } = await db.query<TaskRef>('SELECT id, user_id FROM tasks ORDER BY md5(id::text) LIMIT $1', [
    n,
  ]);
  return rows;
}

/**
 * Open tasks of the pool owners, handed out once each, in id order from where the last call ended.
 * When they run out, more are written (outside any measured run) and the walk starts over.
 */
export function openTasks(db: Db, plan: SeedPlan) {
  let after = '00000000-0000-0000-0000-000000000000';
  let refills = 0;
  const next = (n: number) =>
    db.query<TaskRef>(
      `SELECT id, user_id FROM tasks WHERE user_id = ANY($1::uuid[]) AND status = 'open' AND id > $2
        ORDER BY id LIMIT $3`,
      [plan.pool, after, n],
    );
  return {
    async take(n: number): Promise<TaskRef[]> {
      let { rows } = await next(n);
      if (rows.length < n) {
        refills++;
        const perOwner = Math.ceil((2 * n) / plan.pool.length);
        await db.query(
          `INSERT INTO tasks (id, user_id, title, priority, created_at, updated_at)
           SELECT md5($2 || ':refill:' || $3 || ':' || o || ':' || g)::uuid, o, 'Refill ' || g, 'medium', $4, $4
             FROM unnest($1::uuid[]) AS o, generate_series(1, $5::int) AS g`,
          [plan.pool, plan.salt, refills, new Date(), perOwner],
        );
        after = '00000000-0000-0000-0000-000000000000';
        ({ rows } = await next(n));
      }
      const last = rows[rows.length - 1];
      if (last) after = last.id;
      return rows;
    },
  };
}
