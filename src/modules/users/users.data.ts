import { Type as T } from '@sinclair/typebox';
import type { Clock } from '../../lib/clock.js';
import type { Db } from '../../lib/db.js';
import { defineJob } from '../../lib/jobs.js';
import type { Outbox } from '../../lib/outbox.js';
import type { RateLimiter } from '../../lib/ratelimit.js';
import type { FileStorage } from '../../lib/storage.js';
import type { Principal } from '../../lib/tokens.js';
import type { Realtime } from '../../realtime/port.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import type { BadgesService } from '../badges/badges.service.js';
import type { ChatService } from '../chat/chat.service.js';
import type { DailiesService } from '../dailies/dailies.service.js';
import type { FriendsService } from '../friends/friends.service.js';
import type { GroupsService } from '../groups/groups.service.js';
import type { LeaderboardsService } from '../leaderboards/leaderboards.service.js';
import type { MaaService } from '../maa/maa.service.js';
import type { MediaService } from '../media/media.service.js';
import type { NotificationsService } from '../notifications/notifications.service.js';
import type { StatsService } from '../stats/stats.service.js';
import type { TasksService } from '../tasks/tasks.service.js';

export const PURGE_FILES_JOB = 'users.purge_files';
const PURGE_BATCH = 1000;

export type AccountDataService = ReturnType<typeof makeAccountDataService>;

/**
 * A person's data as a whole: export it, or delete it. Each module contributes its part here,
 * listed explicitly, so a new module's data cannot be forgotten silently (the foreign-key catalogue
 * test makes every reference to users declare what deletion does to it).
 */
export function makeAccountDataService(deps: {
  db: Db;
  clock: Clock;
  outbox: Outbox;
  realtime: Realtime;
  rateLimiter: RateLimiter;
  accounts: Pick<AccountsService, 'confirmPassword' | 'deleteUserRow' | 'exportFor'>;
  tasks: Pick<TasksService, 'exportFor'>;
  dailies: Pick<DailiesService, 'exportFor'>;
  stats: Pick<StatsService, 'exportFor' | 'forget'>;
  friends: Pick<FriendsService, 'exportFor'>;
  groups: Pick<GroupsService, 'releaseOwned' | 'exportFor'>;
  maa: Pick<MaaService, 'exportFor'>;
  chat: Pick<ChatService, 'forgetUser' | 'exportFor'>;
  media: Pick<MediaService, 'exportFor'>;
  notifications: Pick<NotificationsService, 'exportFor'>;
  leaderboards: Pick<LeaderboardsService, 'changed'>;
  badges: Pick<BadgesService, 'exportFor'>;
}) {
  return {
    async exportAccount(userId: string) {
      const [
        account,
        tasks,
        dailies,
        scoreEvents,
        relations,
        groups,
        maaMessages,
        chat,
        media,
        notifications,
        badges,
      ] = await Promise.all([
        deps.accounts.exportFor(userId),
        deps.tasks.exportFor(userId),
        deps.dailies.exportFor(userId),
        deps.stats.exportFor(userId),
        deps.friends.exportFor(userId),
        deps.groups.exportFor(userId),
        deps.maa.exportFor(userId),
        deps.chat.exportFor(userId),
        deps.media.exportFor(userId),
        deps.notifications.exportFor(userId),
        deps.badges.exportFor(userId),
      ]);
      return {
        format: 'taskmaa-export-v1' as const,
        exportedAt: deps.clock.now().toISOString(),
        ...account,
        tasks,
        ...dailies,
        scoreEvents,
        ...relations,
        ...groups,
        maaMessages,
        ...chat,
        media,
        notifications,
        badges,
      };
    },

    /**
     * Deletes the account and everything that is theirs, in one transaction: the user row goes and
     * every reference cascades. Files are purged by a job (retried until gone); sessions vanish with
     * the row, so the token fails at once; open sockets are closed on every node; rate-limit counters
     * that name the user are dropped.
     */
    async deleteAccount(principal: Principal, password: string) {
      const user = await deps.accounts.confirmPassword(principal, password);
      await deps.db.tx(async (tx) => {
        // Their messages stay as tombstones; their uploads go (rows with the user, files by the job).
        const keys = [
          ...(user.avatarKey ? [user.avatarKey] : []),
          ...(await deps.chat.forgetUser(tx, user.id)),
        ];
        for (let i = 0; i < keys.length; i += PURGE_BATCH)
          await deps.outbox.add(tx, PURGE_FILES_JOB, { keys: keys.slice(i, i + PURGE_BATCH) });
        // Group tasks they own pass to the earliest other member, or go when nobody else is in.
        await deps.groups.releaseOwned(tx, user.id);
        await deps.accounts.deleteUserRow(tx, user.id);
        // Off the Redis boards too (the SQL rows went with the user).
        await deps.leaderboards.changed(tx, user.id);
        deps.stats.forget(tx, user.id);
        tx.afterCommit(() => deps.realtime.endUser(user.id));
        tx.afterCommit(() =>
          deps.rateLimiter.forget([user.id, user.username.toLowerCase(), user.email.toLowerCase()]),
        );
      });
    },
  };
}

export const accountDataJobs = (deps: { storage: FileStorage }) => [
  defineJob({
    name: PURGE_FILES_JOB,
    payload: T.Object(
      { keys: T.Array(T.String({ maxLength: 200 }), { minItems: 1, maxItems: PURGE_BATCH }) },
      { additionalProperties: false },
    ),
    attempts: 8,
    backoffMs: 5000,
    async handler(payload) {
      for (const key of payload.keys) await deps.storage.delete(key);
    },
  }),
];
