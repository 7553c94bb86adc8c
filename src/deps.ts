import { join } from 'node:path';
import type { Redis } from 'ioredis';
import pino, { type Logger } from 'pino';
import type { Config } from './config.js';
import { type Authenticator, makeAuthenticator } from './lib/auth.js';
import { type Cache, memoryCache, redisCache } from './lib/cache.js';
import { type Clock, systemClock } from './lib/clock.js';
import { type Db, openDb } from './lib/db.js';
import { registerFormats } from './lib/formats.js';
import { bullmqJobs, type Jobs, localJobs } from './lib/jobs.js';
import { loggerOptions } from './lib/logger.js';
import { devMailbox, type Mailer, smtpMailer } from './lib/mailer.js';
import { makeOutbox, type Outbox } from './lib/outbox.js';
import { memoryRateLimiter, type RateLimiter, redisRateLimiter } from './lib/ratelimit.js';
import { bullmqConnectionOptions, connectRedis } from './lib/redis.js';
import { type FileStorage, localStorage } from './lib/storage.js';
import { type AccessTokens, makeAccessTokens } from './lib/tokens.js';
import { type AccountsService, makeAccountsService } from './modules/accounts/accounts.service.js';
import { type BadgesService, makeBadgesService } from './modules/badges/badges.service.js';
import { type ChatService, makeChatService } from './modules/chat/chat.service.js';
import { type DailiesService, makeDailiesService } from './modules/dailies/dailies.service.js';
import { type FeedService, makeFeedService } from './modules/feed/feed.service.js';
import { presenceAnnouncer, socketPresence } from './modules/friends/friends.presence.js';
import { type FriendsService, makeFriendsService } from './modules/friends/friends.service.js';
import { type GroupsService, makeGroupsService } from './modules/groups/groups.service.js';
import { redisMirror } from './modules/leaderboards/leaderboards.mirror.js';
import {
  type LeaderboardsService,
  makeLeaderboardsService,
} from './modules/leaderboards/leaderboards.service.js';
import { makeNudges, type NudgesService } from './modules/maa/maa.nudges.js';
import { type MaaService, makeMaaService } from './modules/maa/maa.service.js';
import { type MediaService, makeMediaService } from './modules/media/media.service.js';
import {
  makeNotificationsService,
  type NotificationsService,
} from './modules/notifications/notifications.service.js';
import { makeStatsService, type StatsService } from './modules/stats/stats.service.js';
import { type Lifecycle, makeSystemService } from './modules/system/system.service.js';
import { makeTasksService, type TasksService } from './modules/tasks/tasks.service.js';
import { type AccountDataService, makeAccountDataService } from './modules/users/users.data.js';
import { makeUsersService, type UsersService } from './modules/users/users.service.js';
import { type Io, makeRealtime, type Realtime } from './realtime/port.js';
import { createIo } from './realtime/server.js';

/** Everything the edges and services may use. Built once per process, here and nowhere else. */
export interface Deps {
  config: Config;
  log: Logger;
  clock: Clock;
  db: Db;
  redis: Redis | undefined;
  cache: Cache;
  rateLimiter: RateLimiter;
  jobs: Jobs;
  outbox: Outbox;
  tokens: AccessTokens;
  auth: Authenticator;
  mailer: Mailer;
  accounts: AccountsService;
  stats: StatsService;
  dailies: DailiesService;
  tasks: TasksService;
  friends: FriendsService;
  groups: GroupsService;
  users: UsersService;
  maa: MaaService;
  media: MediaService;
  chat: ChatService;
  leaderboards: LeaderboardsService;
  badges: BadgesService;
  feed: FeedService;
  nudges: NudgesService;
  notifications: NotificationsService;
  /** Tells friends when a user comes online or goes offline (the socket server calls it). */
  presenceUpdates: ReturnType<typeof presenceAnnouncer>;
  accountData: AccountDataService;
  storage: FileStorage;
  io: Io;
  realtime: Realtime;
  lifecycle: Lifecycle;
  system: ReturnType<typeof makeSystemService>;
}

export interface DepsOverrides {
  clock?: Clock;
  log?: Logger;
  /** An already migrated database (tests hand each file its own). */
  db?: Db;
}

export async function buildDeps(config: Config, overrides: DepsOverrides = {}): Promise<Deps> {
  registerFormats();
  const log = overrides.log ?? pino(loggerOptions(config.LOG_LEVEL));
  const clock = overrides.clock ?? systemClock;
  const db =
    overrides.db ??
    (await openDb({
      ...(config.DATABASE_URL ? { databaseUrl: config.DATABASE_URL } : {}),
      dataDir: config.DATA_DIR,
      poolMax: config.DATABASE_POOL_MAX,
      statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS,
      onError: (err) => log.warn({ err }, 'idle database connection failed'),
      // The transaction guard is for tests (which run every path); production keeps the promise hooks off.
      guard: !config.isProduction,
    }));

  const redisLog = log.child({ component: 'redis' });
  const onRedisError = (err: unknown) => redisLog.warn({ err }, 'redis command failed; using fallback');
  const redis = config.REDIS_URL
    ? await connectRedis({
        url: config.REDIS_URL,
        commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        name: `taskmaa-${config.ROLE}`,
        onError: (err) => redisLog.warn({ err }, 'redis connection error'),
      })
    : undefined;

  const jobsLog = log.child({ component: 'jobs' });
  const jobs = config.REDIS_URL
    ? bullmqJobs({
        connection: bullmqConnectionOptions(config.REDIS_URL, `taskmaa-${config.ROLE}-jobs`),
        prefix: `${config.REDIS_PREFIX}:bull`,
        log: jobsLog,
        concurrency: config.JOBS_CONCURRENCY,
        lockMs: config.JOBS_LOCK_MS,
        drainMs: config.JOBS_DRAIN_MS,
      })
    : localJobs({
        db,
        clock,
        log: jobsLog,
        concurrency: config.JOBS_CONCURRENCY,
        drainMs: config.JOBS_DRAIN_MS,
      });

  const tokens = makeAccessTokens({
    secret: config.ACCESS_TOKEN_SECRET,
    ttlSeconds: config.ACCESS_TOKEN_TTL_SECONDS,
    clock,
  });
  const io = createIo(config, redis);
  const realtime = makeRealtime(io);
  const lifecycle: Lifecycle = { draining: false };
  const rateLimiter = redis
    ? redisRateLimiter(redis, config.REDIS_PREFIX, onRedisError)
    : memoryRateLimiter();
  const outbox = makeOutbox({
    db,
    jobs,
    clock,
    log: log.child({ component: 'outbox' }),
    ...(config.NODE_ENV === 'test' && config.FAULT_POINT ? { faultPoint: config.FAULT_POINT } : {}),
  });
  const mailer = config.SMTP_URL
    ? smtpMailer({ url: config.SMTP_URL, from: config.MAIL_FROM })
    : devMailbox({
        dir: join(config.DATA_DIR, 'mail'),
        from: config.MAIL_FROM,
        log: log.child({ component: 'mail' }),
        logLinks: !config.isProduction,
      });
  const cache = redis ? redisCache(redis, config.REDIS_PREFIX, onRedisError) : memoryCache();
  const leaderboards = makeLeaderboardsService({
    db,
    clock,
    io,
    outbox,
    mirror: redis ? redisMirror(redis, config.REDIS_PREFIX) : undefined,
    log: log.child({ module: 'leaderboards' }),
    publicUrl: config.PUBLIC_URL,
  });
  const stats = makeStatsService({
    db,
    clock,
    cache,
    // badges and nudges are made below; a score only moves once everything is built.
    onScore: async (q, userId, points, paidOn) => {
      await leaderboards.changed(q, userId);
      await badges.queue(q, userId);
      if (points > 0 && paidOn) await nudges.scored(q, userId, points, paidOn);
    },
  });
  const storage = localStorage(join(config.DATA_DIR, 'uploads'));
  const accounts = makeAccountsService({
    stats,
    boards: leaderboards,
    db,
    clock,
    outbox,
    rateLimiter,
    realtime,
    tokens,
    log: log.child({ module: 'accounts' }),
    storage,
    config,
  });
  const tasks = makeTasksService({
    db,
    clock,
    accounts,
    stats,
    realtime,
    log: log.child({ module: 'tasks' }),
  });
  const dailies = makeDailiesService({
    db,
    clock,
    accounts,
    stats,
    taskCompletions: tasks.completedCountsByDate,
    realtime,
    outbox,
    config,
  });
  // Friends and groups notify inside their transactions, so this comes first; its block check asks
  // friends (built next) when a notification with an actor is written, never before.
  const notifications = makeNotificationsService({
    db,
    clock,
    realtime,
    blocked: (q, a, b) => friends.relation(a, b, q, { lock: 'shared' }).then((r) => r.blocked),
  });
  const feed = makeFeedService({ db, clock, realtime });
  const badges = makeBadgesService({
    db,
    clock,
    outbox,
    realtime,
    accounts,
    notifications,
    feed,
    log: log.child({ module: 'badges' }),
  });
  const presence = socketPresence(io, log.child({ module: 'friends' }));
  const friends = makeFriendsService({
    db,
    clock,
    outbox,
    realtime,
    presence,
    notifications,
    badges,
    dailies,
    // groups is made next and asks friends about friendships; friends only call it once built.
    groups: { cancelInvitationsBetween: (q, a, b) => groups.cancelInvitationsBetween(q, a, b) },
    log: log.child({ module: 'friends' }),
    publicUrl: config.PUBLIC_URL,
  });
  const groups = makeGroupsService({
    db,
    clock,
    cache,
    outbox,
    realtime,
    accounts,
    stats,
    friends,
    notifications,
    badges,
    feed,
    // nudges is made below; groups only react once everything is built.
    maa: { react: (q, userId, occasion, facts) => nudges.react(q, userId, occasion, facts) },
    log: log.child({ module: 'groups' }),
  });
  const maa = makeMaaService({
    db,
    clock,
    accounts,
    dailies,
    rateLimiter,
    realtime,
    log: log.child({ module: 'maa' }),
    config,
  });
  const nudges = makeNudges({
    db,
    clock,
    outbox,
    accounts,
    stats,
    boards: leaderboards,
    maa,
    notifications,
    log: log.child({ module: 'maa' }),
  });
  const media = makeMediaService({
    db,
    clock,
    outbox,
    storage,
    log: log.child({ module: 'media' }),
    config,
  });
  const chat = makeChatService({
    db,
    clock,
    realtime,
    rateLimiter,
    friends,
    media,
    log: log.child({ module: 'chat' }),
    publicUrl: config.PUBLIC_URL,
    rateLimitMultiplier: config.RATE_LIMIT_MULTIPLIER,
  });
  const presenceUpdates = presenceAnnouncer({
    db,
    io,
    clock,
    log: log.child({ module: 'presence' }),
    presence,
    graceMs: config.PRESENCE_OFFLINE_GRACE_MS,
  });
  const users = makeUsersService({ db, friends, stats, dailies, badges, publicUrl: config.PUBLIC_URL });
  const accountData = makeAccountDataService({
    db,
    clock,
    outbox,
    realtime,
    rateLimiter,
    accounts,
    tasks,
    dailies,
    stats,
    friends,
    groups,
    maa,
    chat,
    media,
    notifications,
    leaderboards,
    badges,
  });

  return {
    config,
    log,
    clock,
    db,
    redis,
    cache,
    rateLimiter,
    jobs,
    outbox,
    tokens,
    auth: makeAuthenticator(tokens, accounts.sessionCheck),
    mailer,
    accounts,
    stats,
    tasks,
    dailies,
    friends,
    groups,
    users,
    maa,
    media,
    chat,
    notifications,
    leaderboards,
    badges,
    feed,
    nudges,
    presenceUpdates,
    accountData,
    storage,
    io,
    realtime,
    lifecycle,
    system: makeSystemService({ db, redis, lifecycle }),
  };
}

/** Closes what buildDeps opened, in dependency order. Safe to call once everything else stopped. */
export async function closeDeps(deps: Deps) {
  deps.presenceUpdates.close();
  deps.leaderboards.stopLive();
  await deps.outbox.close();
  await deps.jobs.close();
  deps.mailer.close();
  await deps.io.close().catch(() => {});
  await deps.redis?.quit().catch(() => deps.redis?.disconnect());
  await deps.db.close();
}
