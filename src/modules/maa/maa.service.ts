import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Config } from '../../config.js';
import type { Clock } from '../../lib/clock.js';
import { wallClock } from '../../lib/days.js';
import type { Db } from '../../lib/db.js';
import { invalid } from '../../lib/errors.js';
import { UUID } from '../../lib/formats.js';
import type { RateLimiter } from '../../lib/ratelimit.js';
import type { Realtime } from '../../realtime/port.js';
import type { AccountsService } from '../accounts/accounts.service.js';
import type { DailiesService } from '../dailies/dailies.service.js';
import {
  adjustOccasion,
  chooseOccasion,
  effectiveTone,
  factsOf,
  type MaaState,
  pickLine,
} from './maa.engine.js';
import { type Facts, type Library, library, type Occasion, type OptionalPlaceholder } from './maa.lines.js';
import { askLlm, LLM_TIMEOUT_MS } from './maa.llm.js';
import * as repo from './maa.repo.js';
import type { MaaHistory, MaaHistoryQuery, MaaMessage } from './maa.schemas.js';

const WEEK_MS = 7 * 86_400_000;
const HOUR_MS = 3_600_000;
/** LLM calls per user per hour; beyond it Maa speaks from templates. */
export const LLM_CALLS_PER_HOUR = 20;

export interface MaaDeps {
  db: Db;
  clock: Clock;
  accounts: Pick<AccountsService, 'getMe' | 'dayCalendar'>;
  dailies: Pick<DailiesService, 'stats'>;
  rateLimiter: RateLimiter;
  realtime: Realtime;
  log: Logger;
  config: Pick<Config, 'MAA_LLM_URL' | 'MAA_LLM_MODEL' | 'MAA_LLM_API_KEY' | 'RATE_LIMIT_MULTIPLIER'>;
  /** Tests pin the line choice. */
  random?: () => number;
  lines?: Library;
  llmTimeoutMs?: number;
}

export type MaaService = ReturnType<typeof makeMaaService>;

/** What the event behind a message knows beyond the user's day (a podium finish's rank). */
export type MomentFacts = Partial<Record<OptionalPlaceholder, number>>;

export function makeMaaService(deps: MaaDeps) {
  const { db, clock } = deps;
  const lines = deps.lines ?? library();

  async function stateOf(userId: string) {
    const [me, calendar, stats] = await Promise.all([
      deps.accounts.getMe(userId),
      deps.accounts.dayCalendar(userId),
      deps.dailies.stats(userId),
    ]);
    const now = clock.now();
    const today = stats.today.date;
    let missesInRow = 0;
    for (const day of [...stats.weeklyProgress].reverse()) {
      if (day.date >= today) continue;
      if (day.date < calendar.firstDay || day.completed >= stats.today.goal) break;
      missesInRow++;
    }
    const state: MaaState = {
      name: me.name.trim() || me.username,
      currentStreak: stats.currentStreak,
      done: stats.today.done,
      goal: stats.today.goal,
      hoursLeft: Math.max(0, (calendar.end(today).getTime() - now.getTime()) / HOUR_MS),
      localHour: wallClock(now, me.timezone).hour,
      missesInRow,
      newUser: calendar.firstDay >= today,
    };
    return { me, state };
  }

  async function llmAllowed(userId: string): Promise<boolean> {
    if (deps.config.RATE_LIMIT_MULTIPLIER === 0) return true;
    const max = Math.max(1, Math.floor(LLM_CALLS_PER_HOUR * deps.config.RATE_LIMIT_MULTIPLIER));
    const r = await deps.rateLimiter.hit(`maa:llm:${userId}`, max, HOUR_MS, { onStoreFailure: 0.5 });
    return r.allowed;
  }

  return {
    /** The user's situation as Maa sees it (the nudges schedule and check comebacks with it). */
    state: async (userId: string) => (await stateOf(userId)).state,

    /**
     * A line for this moment, stored in the history and sent to the user's devices as `maa:message`
     * unless `live` is false (an event-driven word in quiet hours waits in the history instead).
     */
    async message(
      userId: string,
      asked?: Occasion,
      opts: { live?: boolean; facts?: MomentFacts } = {},
    ): Promise<MaaMessage> {
      const { me, state } = await stateOf(userId);
      const occasion = asked ? adjustOccasion(asked, state) : chooseOccasion(state);
      const tone = effectiveTone(me.maaTone, state.missesInRow);
      const locale = me.locale;
      const facts: Facts = { ...factsOf(state), ...opts.facts };
      const now = clock.now();
      const recent = await repo.recentLineKeys(db, userId, new Date(now.getTime() - WEEK_MS));
      const picked = pickLine(lines, {
        occasion,
        tone,
        locale,
        facts,
        recent,
        ...(deps.random ? { random: deps.random } : {}),
      });
      let text = picked.text;
      let source: 'template' | 'llm' = 'template';
      const url = deps.config.MAA_LLM_URL;
      if (url && (await llmAllowed(userId))) {
        const said = await askLlm(
          {
            url,
            model: deps.config.MAA_LLM_MODEL ?? 'gpt-4o-mini',
            apiKey: deps.config.MAA_LLM_API_KEY,
            timeoutMs: deps.llmTimeoutMs ?? LLM_TIMEOUT_MS,
          },
          { occasion, tone: picked.tone, locale, facts, example: picked.text },
        );
        if (said) {
          text = said;
          source = 'llm';
        } else {
          deps.log.debug({ userId, occasion }, 'maa llm unavailable; template used');
        }
      }
      const row: repo.MaaMessageRow = {
        id: uuidv7(),
        userId,
        occasion,
        tone: picked.tone,
        locale,
        lineKey: picked.line.key,
        text,
        source,
        createdAt: now,
      };
      await repo.insertMessage(db, row);
      const message: MaaMessage = { occasion, tone: picked.tone, text, source };
      if (opts.live !== false) deps.realtime.toUser(userId, 'maa:message', message);
      return message;
    },

    exportFor: (userId: string) => repo.exportMessages(deps.db, userId),

    async history(userId: string, query: MaaHistoryQuery): Promise<MaaHistory> {
      const limit = query.limit ?? 20;
      const after = query.cursor ? decodeCursor(query.cursor) : undefined;
      const rows = await repo.listMessages(db, userId, limit + 1, after);
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return {
        items: page.map((r) => ({
          id: r.id,
          occasion: r.occasion,
          tone: r.tone,
          locale: r.locale,
          text: r.text,
          source: r.source,
          createdAt: new Date(r.createdAt).toISOString(),
        })),
        nextCursor:
          rows.length > limit && last
            ? Buffer.from(JSON.stringify({ c: new Date(last.createdAt).toISOString(), i: last.id })).toString(
                'base64url',
              )
            : null,
      };
    },
  };
}

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const bad = () =>
    invalid('invalid_cursor', 'The cursor is not one this list handed out.', [
      { field: 'query/cursor', message: 'is invalid' },
    ]);
  let p: { c?: unknown; i?: unknown };
  try {
    p = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw bad();
  }
  if (!p || typeof p !== 'object' || typeof p.c !== 'string' || typeof p.i !== 'string' || !UUID.test(p.i)) {
    throw bad();
  }
  const createdAt = new Date(p.c);
  if (Number.isNaN(createdAt.getTime())) throw bad();
  return { createdAt, id: p.i };
}
