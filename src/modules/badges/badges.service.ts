import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.js';
import type { LocalDate } from '../../lib/days.js';
import type { Db, Queryable } from '../../lib/db.js';
import { AppError } from '../../lib/errors.js';
import type { Outbox } from '../../lib/outbox.js';
import type { Realtime } from '../../realtime/port.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import type { FeedService } from '../feed/feed.service.js';
import type { NotificationsService } from '../notifications/notifications.service.js';
import type { Badge } from '../users/users.schemas.js';
import { BY_CODE, CATALOGUE } from './badges.catalogue.js';
import * as repo from './badges.repo.js';
import { earned } from './badges.rules.js';

export const EVALUATE_JOB = 'badges.evaluate';

export type BadgesService = ReturnType<typeof makeBadgesService>;

/**
 * Badges are decided by a job, from the user's history as stored (never from what a request says):
 * anything that may earn one queues an evaluation in its own transaction, through the outbox. An award
 * is a primary-key insert, so evaluating twice, or two evaluations racing, awards once.
 */
export function makeBadgesService(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  realtime: Realtime;
  accounts: Pick<AccountsService, 'dayCalendar'>;
  notifications: Pick<NotificationsService, 'notify'>;
  feed: Pick<FeedService, 'share'>;
  log: Logger;
}) {
  const { db, clock, outbox, realtime, notifications, feed, log } = deps;

  const toBadge = (r: repo.AwardRow): Badge | undefined => {
    const def = BY_CODE.get(r.code);
    return def && { code: r.code, name: def.name, awardedAt: r.awardedAt.toISOString() };
  };

  /** Friends hear once a day that the user met their goal (counted from the ledger's paid completions). */
  async function goalMet(tx: Queryable, userId: string, today: LocalDate, day: repo.Today) {
    if (day.done >= day.goal)
      await feed.share(
        tx,
        userId,
        { kind: 'goal_met', data: { date: today, goal: day.goal } },
        `goal:${today}`,
      );
  }

  return {
    catalogue: () => CATALOGUE,

    /** In the transaction of anything that may earn a badge. */
    queue: (q: Queryable, userId: string) => outbox.add(q, EVALUATE_JOB, { userId }),

    /** The job: awards what the user's history has earned and they do not have yet. */
    async evaluate(userId: string): Promise<string[]> {
      const now = clock.now();
      return db.tx(async (tx) => {
        // A deleted account has nothing left to earn (and no calendar: a 404, not an SQL error).
        const calendar = await deps.accounts.dayCalendar(userId, tx).catch((err: unknown) => {
          if (err instanceof AppError && err.status === 404) return undefined;
          throw err;
        });
        if (!calendar) return [];
        const today = calendar.dateOf(now);
        const known = await repo.facts(tx, userId, today);
        if (!known) return [];
        const awarded: string[] = [];
        for (const code of earned(known.facts)) {
          // The insert still decides: a job for the same user may have awarded it meanwhile.
          if (known.held.has(code) || !(await repo.award(tx, userId, code, now))) continue;
          const def = BY_CODE.get(code);
          if (!def) continue;
          awarded.push(code);
          await notifications.notify(tx, { userId, kind: 'badge', data: { code, name: def.name } });
          await feed.share(tx, userId, { kind: 'badge', data: { code, name: def.name } });
          const badge = { code, name: def.name, awardedAt: now.toISOString() };
          tx.afterCommit(() => realtime.toUser(userId, 'badge:awarded', badge));
        }
        await goalMet(tx, userId, today, known.today);
        if (awarded.length) tx.afterCommit(() => log.info({ userId, awarded }, 'badges awarded'));
        return awarded;
      });
    },

    async of(userId: string, q: Queryable = db): Promise<Badge[]> {
      return (await repo.awardsOf(q, userId)).flatMap((r) => toBadge(r) ?? []);
    },

    exportFor: async (userId: string) =>
      (await repo.awardsOf(db, userId)).map((r) => ({ code: r.code, awardedAt: r.awardedAt.toISOString() })),
  };
}
