import type { Deps } from '../../deps.js';
import { defineSocketHandler } from '../../realtime/handlers.js';
import type { BoardName } from './leaderboards.schemas.js';
import { WatchPayload } from './leaderboards.schemas.js';

const roomOf = (deps: Pick<Deps, 'leaderboards'>, userId: string, board: BoardName) => {
  const [kind, period] = board.split(':') as ['global' | 'friends', 'week' | 'all'];
  return kind === 'global'
    ? deps.leaderboards.rooms.global(period)
    : deps.leaderboards.rooms.friends(period, userId);
};

/** Watching a board joins its room on this node; its updates come from this node's ticker. */
export const leaderboardsSocketHandlers = (deps: Pick<Deps, 'leaderboards'>) => [
  defineSocketHandler({
    event: 'leaderboard:watch',
    payload: WatchPayload,
    verified: true,
    rateLimit: { max: 30, windowMs: 60_000 },
    async handle(ctx, { board }) {
      await ctx.socket.join(roomOf(deps, ctx.userId, board));
      return deps.leaderboards.board(ctx.userId, board);
    },
  }),
  defineSocketHandler({
    event: 'leaderboard:unwatch',
    payload: WatchPayload,
    async handle(ctx, { board }) {
      await ctx.socket.leave(roomOf(deps, ctx.userId, board));
      return { board };
    },
  }),
];
