import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { effectiveTone } from '../src/modules/maa/maa.engine.js';
import {
  type Facts,
  fits,
  LINE_MAX,
  LOCALES,
  type Locale,
  library,
  OCCASIONS,
  type Occasion,
  OPTIONAL_PLACEHOLDERS,
  PLACEHOLDERS,
  placeholdersIn,
  readLineFile,
  render,
  TONES,
  type Tone,
} from '../src/modules/maa/maa.lines.js';
import { sanitise } from '../src/modules/maa/maa.llm.js';
import { makeMaaService } from '../src/modules/maa/maa.service.js';
import { aUser, fakeClock, signIn, startTestApp, type TestApp } from './helpers.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
// Monday 2026-03-02, 09:00 UTC.
const clock = fakeClock(new Date('2026-03-02T09:00:00Z'));
let t: TestApp;

beforeAll(async () => {
  t = await startTestApp({ clock });
});
afterAll(() => t?.close());

/** Moves the shared clock forward to the next `hh:mm` UTC (at least one minute ahead). */
function toNext(hour: number, minute = 0) {
  const now = clock.now();
  const next = new Date(now);
  next.setUTCHours(hour, minute, 0, 0);
  while (next.getTime() <= now.getTime()) next.setTime(next.getTime() + DAY);
  clock.set(next);
}

async function person(
  opts: { tone?: Tone; locale?: Locale; goal?: number; name?: string; timezone?: string } = {},
) {
  const u = await aUser(t.deps, {
    name: opts.name ?? 'Riya',
    ...(opts.timezone ? { timezone: opts.timezone } : {}),
  });
  await t.deps.accounts.updateMe(u.id, {
    maaTone: opts.tone ?? 'balanced',
    locale: opts.locale ?? 'en',
    dailyGoal: opts.goal ?? 1,
  });
  return u.id;
}

async function complete(userId: string, n = 1) {
  for (let i = 0; i < n; i++) {
    const created = await t.deps.tasks.create(userId, { title: `task ${i}` });
    await t.deps.tasks.complete(userId, created.body.id);
  }
}

/** The message is one of the library's lines for exactly this occasion, tone and locale, filled in. */
function expectLine(
  msg: { occasion: string; tone: string; text: string },
  want: { occasion: Occasion; tone: Tone; locale: Locale; facts?: Partial<Facts> },
) {
  expect(msg.occasion).toBe(want.occasion);
  expect(msg.tone).toBe(want.tone);
  expect(msg.text).not.toMatch(/[{}]/);
  const candidates = library()[want.locale][want.occasion][want.tone].map((l) => l.text);
  const matching = candidates.filter((c) => {
    const pattern = new RegExp(
      `^${c.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_, k: string) => {
        const v = want.facts?.[k as keyof Facts];
        return v === undefined ? '(.+?)' : String(v).replace(/[.*+?^$()|[\]\\]/g, '\\$&');
      })}$`,
    );
    return pattern.test(msg.text);
  });
  expect(
    matching.length,
    `"${msg.text}" is not a ${want.locale}/${want.occasion}/${want.tone} line`,
  ).toBeGreaterThan(0);
}

describe('Maa line library (src/modules/maa/lines/*.json)', () => {
  const sample: Facts = {
    name: 'Riya',
    streak: 4,
    tasksLeft: 2,
    hoursLeft: 3,
    goal: 5,
    done: 3,
    days: 2,
    rank: 2,
  };
  const { rank: _unknown, ...withoutMoment } = sample;

  it.each(LOCALES)('%s: every occasion × tone has ≥ 8 distinct, known-placeholder, short lines', (locale) => {
    const raw = readLineFile(locale) as Record<string, Record<string, string[]>>;
    expect(Object.keys(raw).sort()).toEqual([...OCCASIONS].sort());
    let count = 0;
    for (const occasion of OCCASIONS) {
      expect(Object.keys(raw[occasion] ?? {}).sort()).toEqual([...TONES].sort());
      for (const tone of TONES) {
        const lines = raw[occasion]?.[tone] ?? [];
        expect(
          new Set(lines.map((l) => l.trim().toLowerCase())).size,
          `${occasion}.${tone}`,
        ).toBeGreaterThanOrEqual(8);
        // Asked for without an event (no rank), the occasion still has a full week of lines.
        expect(
          new Set(lines.filter((l) => fits(l, withoutMoment)).map((l) => l.trim().toLowerCase())).size,
          `${occasion}.${tone} without optional placeholders`,
        ).toBeGreaterThanOrEqual(8);
        for (const line of lines) {
          count++;
          expect(line.length, line).toBeLessThanOrEqual(LINE_MAX);
          expect(line.trim()).toBe(line);
          for (const p of placeholdersIn(line)) {
            expect(PLACEHOLDERS, `${line}: {${p}}`).toContain(p);
            // An optional placeholder only where its event supplies it ({rank}: group_rank).
            if (p in OPTIONAL_PLACEHOLDERS) {
              expect(OPTIONAL_PLACEHOLDERS[p as keyof typeof OPTIONAL_PLACEHOLDERS], line).toBe(occasion);
            }
          }
          expect(render(line, sample), line).not.toMatch(/[{}]/);
        }
      }
    }
    console.log(`maa lines: ${locale} has ${count} lines`);
  });

  it('the same line in two places is caught by key, and keys are unique per locale', () => {
    for (const locale of LOCALES) {
      const keys = OCCASIONS.flatMap((o) =>
        TONES.flatMap((tn) => library()[locale][o][tn].map((l) => l.key)),
      );
      expect(new Set(keys).size).toBe(keys.length);
    }
  });

  it('tone only softens with misses in a row, never hardens', () => {
    for (const tone of TONES) {
      let prev = TONES.indexOf(tone);
      for (let misses = 0; misses < 10; misses++) {
        const now = TONES.indexOf(effectiveTone(tone, misses));
        expect(now).toBeLessThanOrEqual(prev);
        prev = now;
      }
      expect(effectiveTone(tone, 0)).toBe(tone);
      expect(effectiveTone(tone, 3)).toBe('gentle');
    }
    expect(effectiveTone('strict', 2)).toBe('balanced');
  });
});

describe('Maa scenarios', () => {
  const say = (userId: string, occasion?: Occasion) => t.deps.maa.message(userId, occasion);

  it('1. a new user in the morning gets a welcome in their name', async () => {
    toNext(9);
    const u = await person({ name: 'Aarav', goal: 3 });
    expect(await t.deps.maa.state(u)).toMatchObject({ newUser: true, localHour: 9 });
    const msg = await say(u);
    expectLine(msg, {
      occasion: 'welcome',
      tone: 'balanced',
      locale: 'en',
      facts: { name: 'Aarav', goal: 3 },
    });
    expect(msg.source).toBe('template');
  });

  it('2. a new Hinglish user gets a Hinglish welcome', async () => {
    const u = await person({ locale: 'hi', goal: 2 });
    expectLine(await say(u), { occasion: 'welcome', tone: 'balanced', locale: 'hi', facts: { goal: 2 } });
  });

  it('3. the next morning, gentle tone: day_start, spoken gently', async () => {
    toNext(10);
    const u = await person({ tone: 'gentle' });
    await complete(u);
    toNext(9);
    expect(await t.deps.maa.state(u)).toMatchObject({ newUser: false, currentStreak: 1, done: 0 });
    expectLine(await say(u), { occasion: 'day_start', tone: 'gentle', locale: 'en', facts: { streak: 1 } });
  });

  it('4. the next morning, strict tone: day_start, spoken strictly', async () => {
    toNext(10);
    const u = await person({ tone: 'strict' });
    await complete(u);
    toNext(9);
    expectLine(await say(u), { occasion: 'day_start', tone: 'strict', locale: 'en', facts: { streak: 1 } });
  });

  it('5. one of three tasks done → task_completed with 2 left', async () => {
    const u = await person({ goal: 3 });
    await complete(u, 1);
    expectLine(await say(u), {
      occasion: 'task_completed',
      tone: 'balanced',
      locale: 'en',
      facts: { done: 1, goal: 3, tasksLeft: 2 },
    });
  });

  it('6. goal met → goal_met (streak 1 is no milestone)', async () => {
    const u = await person({ goal: 2 });
    await complete(u, 2);
    const state = await t.deps.maa.state(u);
    expect(state).toMatchObject({ done: 2, goal: 2, currentStreak: 1 });
    expectLine(await say(u), { occasion: 'goal_met', tone: 'balanced', locale: 'en', facts: { done: 2 } });
  });

  it('7. strict Hinglish goal met', async () => {
    const u = await person({ tone: 'strict', locale: 'hi' });
    await complete(u, 1);
    expectLine(await say(u), { occasion: 'goal_met', tone: 'strict', locale: 'hi' });
  });

  it('8. third day in a row met → streak_milestone with streak 3', async () => {
    toNext(10);
    const u = await person();
    await complete(u);
    toNext(10);
    await complete(u);
    toNext(10);
    await complete(u);
    expect((await t.deps.maa.state(u)).currentStreak).toBe(3);
    expectLine(await say(u), {
      occasion: 'streak_milestone',
      tone: 'balanced',
      locale: 'en',
      facts: { streak: 3 },
    });
  });

  it('9. streak at risk at 21:00 local: goal not met, 3 hours left', async () => {
    toNext(10);
    const u = await person({ goal: 2 });
    await complete(u, 2);
    toNext(9);
    toNext(21);
    await complete(u, 1);
    const state = await t.deps.maa.state(u);
    expect(state).toMatchObject({ currentStreak: 1, done: 1, goal: 2, missesInRow: 0 });
    expect(Math.round(state.hoursLeft)).toBe(3);
    expectLine(await say(u), {
      occasion: 'streak_at_risk',
      tone: 'balanced',
      locale: 'en',
      facts: { hoursLeft: 3, tasksLeft: 1, streak: 1 },
    });
  });

  it('10. streak at risk at 21:00 in Kolkata (15:30 UTC), Hinglish strict', async () => {
    toNext(10);
    const u = await person({ timezone: 'Asia/Kolkata', tone: 'strict', locale: 'hi' });
    await complete(u);
    toNext(9);
    toNext(15, 30);
    const state = await t.deps.maa.state(u);
    expect(state.localHour).toBe(21);
    expect(state.done).toBe(0);
    expectLine(await say(u), {
      occasion: 'streak_at_risk',
      tone: 'strict',
      locale: 'hi',
      facts: { hoursLeft: 3, tasksLeft: 1 },
    });
  });

  it('11. an afternoon with nothing done yet → low_motivation, not "good morning"', async () => {
    toNext(10);
    const u = await person({ tone: 'gentle' });
    await complete(u);
    toNext(9);
    toNext(15);
    const state = await t.deps.maa.state(u);
    expect(state).toMatchObject({ localHour: 15, done: 0, currentStreak: 1, missesInRow: 0 });
    expect(state.hoursLeft).toBeGreaterThan(4);
    expectLine(await say(u), { occasion: 'low_motivation', tone: 'gentle', locale: 'en' });
  });

  it('12. missed yesterday, nothing done yet → missed_day', async () => {
    toNext(10);
    const u = await person();
    await complete(u);
    toNext(9);
    toNext(9);
    const state = await t.deps.maa.state(u);
    expect(state.missesInRow).toBe(1);
    expectLine(await say(u), { occasion: 'missed_day', tone: 'balanced', locale: 'en' });
  });

  it('13. missed yesterday but already working today → task_completed, tone unchanged', async () => {
    toNext(10);
    const u = await person({ tone: 'strict', goal: 2 });
    await complete(u, 2);
    toNext(9);
    toNext(9);
    await complete(u, 1);
    expectLine(await say(u), {
      occasion: 'task_completed',
      tone: 'strict',
      locale: 'en',
      facts: { tasksLeft: 1 },
    });
  });

  it('14. two misses in a row, strict → care, softened to balanced', async () => {
    toNext(10);
    const u = await person({ tone: 'strict' });
    await complete(u);
    clock.advance(3 * DAY);
    const state = await t.deps.maa.state(u);
    expect(state.missesInRow).toBe(2);
    expectLine(await say(u), { occasion: 'care', tone: 'balanced', locale: 'en', facts: { days: 2 } });
  });

  it('15. three misses in a row, strict → care, gentle', async () => {
    toNext(10);
    const u = await person({ tone: 'strict' });
    await complete(u);
    clock.advance(4 * DAY);
    expectLine(await say(u), { occasion: 'care', tone: 'gentle', locale: 'en', facts: { days: 3 } });
  });

  it('16. three misses in a row, Hinglish balanced → gentle care', async () => {
    toNext(10);
    const u = await person({ locale: 'hi' });
    await complete(u);
    clock.advance(4 * DAY);
    expectLine(await say(u), { occasion: 'care', tone: 'gentle', locale: 'hi', facts: { days: 3 } });
  });

  it('17. a new user who never started is not "missing" days before they joined', async () => {
    toNext(9);
    const u = await person({ tone: 'strict' });
    expect((await t.deps.maa.state(u)).missesInRow).toBe(0);
    expectLine(await say(u), { occasion: 'welcome', tone: 'strict', locale: 'en' });
  });

  it('18. a signed-up user who never completed anything for 3 days → care, never harsher', async () => {
    toNext(9);
    const u = await person({ tone: 'strict' });
    clock.advance(3 * DAY);
    const msg = await say(u);
    expect(msg.occasion).toBe('care');
    expect(msg.tone).toBe('gentle');
  });

  it('19. asking for missed_day after repeated misses gives care instead', async () => {
    toNext(10);
    const u = await person({ tone: 'balanced' });
    await complete(u);
    clock.advance(4 * DAY);
    expectLine(await say(u, 'missed_day'), { occasion: 'care', tone: 'gentle', locale: 'en' });
  });

  it('20. comeback after three missed days', async () => {
    toNext(10);
    const u = await person({ goal: 2 });
    await complete(u, 2);
    clock.advance(4 * DAY);
    await complete(u, 1);
    expectLine(await say(u), {
      occasion: 'comeback',
      tone: 'gentle',
      locale: 'en',
      facts: { days: 3, done: 1, tasksLeft: 1 },
    });
  });

  it('21. comeback in Hinglish, gentle tone', async () => {
    toNext(10);
    const u = await person({ locale: 'hi', tone: 'gentle', goal: 3 });
    await complete(u, 3);
    clock.advance(3 * DAY);
    await complete(u, 1);
    expectLine(await say(u), { occasion: 'comeback', tone: 'gentle', locale: 'hi', facts: { days: 2 } });
  });

  it('22. comeback that meets the goal straight away celebrates the goal', async () => {
    toNext(10);
    const u = await person();
    await complete(u);
    clock.advance(4 * DAY);
    await complete(u);
    expect((await say(u)).occasion).toBe('goal_met');
  });

  it('23. asked for group_rank', async () => {
    const u = await person({ goal: 4 });
    await complete(u, 1);
    expectLine(await say(u, 'group_rank'), {
      occasion: 'group_rank',
      tone: 'balanced',
      locale: 'en',
      facts: { done: 1 },
    });
  });

  it('24. asked for friend_overtook, Hinglish strict', async () => {
    const u = await person({ locale: 'hi', tone: 'strict', goal: 3 });
    expectLine(await say(u, 'friend_overtook'), {
      occasion: 'friend_overtook',
      tone: 'strict',
      locale: 'hi',
    });
  });

  it('25. asked for low_motivation, gentle Hinglish', async () => {
    const u = await person({ locale: 'hi', tone: 'gentle' });
    expectLine(await say(u, 'low_motivation'), { occasion: 'low_motivation', tone: 'gentle', locale: 'hi' });
  });

  it('26. an empty display name falls back to the username', async () => {
    const u = await aUser(t.deps, { name: '' });
    const msg = await say(u.id, 'day_start');
    expect(msg.text).not.toContain('{name}');
    const state = await t.deps.maa.state(u.id);
    expect(state.name).toBe(u.username);
  });

  it('27. every occasion × tone × locale renders filled text for a real user', async () => {
    let n = 0;
    for (const locale of LOCALES) {
      for (const tone of TONES) {
        const u = await person({ locale, tone, goal: 3 });
        for (const occasion of OCCASIONS) {
          const msg = await say(u, occasion);
          expectLine(msg, { occasion, tone, locale, facts: { goal: 3, done: 0, tasksLeft: 3 } });
          n++;
        }
      }
    }
    expect(n).toBe(OCCASIONS.length * 6);
    expect(n).toBe(72);
  });

  it('28. no line repeats for one user over a simulated week (3 messages a day)', async () => {
    toNext(8);
    const u = await person({ goal: 2 });
    const texts: string[] = [];
    for (let day = 0; day < 7; day++) {
      texts.push((await say(u)).text);
      clock.advance(4 * HOUR);
      await complete(u, 1);
      texts.push((await say(u)).text);
      clock.advance(9 * HOUR);
      texts.push((await say(u)).text);
      toNext(8);
    }
    const { rows } = await t.deps.db.query<{ lineKey: string }>(
      'SELECT line_key FROM maa_messages WHERE user_id = $1',
      [u],
    );
    expect(rows).toHaveLength(21);
    expect(new Set(rows.map((r) => r.lineKey)).size).toBe(21);
    expect(texts.every((x) => !x.includes('{'))).toBe(true);
  });

  it('29. ten day_starts in one day: no repeat (softer tone lines are borrowed after 8)', async () => {
    const u = await person({ tone: 'balanced' });
    const seen = new Set<string>();
    const tones: string[] = [];
    for (let i = 0; i < 10; i++) {
      const msg = await say(u, 'day_start');
      seen.add(msg.text);
      tones.push(msg.tone);
    }
    expect(seen.size).toBe(10);
    expect(tones.slice(0, 8).every((x) => x === 'balanced')).toBe(true);
    expect(tones.slice(8).every((x) => x === 'gentle')).toBe(true);
  });

  it('30. a line shown 8 days ago may come back', async () => {
    const u = await person({ tone: 'strict' });
    const keysOf = async () =>
      (
        await t.deps.db.query<{ lineKey: string }>(
          'SELECT line_key FROM maa_messages WHERE user_id = $1 ORDER BY created_at',
          [u],
        )
      ).rows.map((r) => r.lineKey);
    for (let i = 0; i < 24; i++) await say(u, 'friend_overtook');
    expect(new Set(await keysOf()).size).toBe(24);
    clock.advance(8 * DAY);
    await say(u, 'friend_overtook');
    const keys = await keysOf();
    expect(keys.slice(0, 24)).toContain(keys[24]);
  });

  // Unprompted words go through the nudges (the maa.event job's work; this file runs no worker).
  const history = async (userId: string) =>
    (await t.deps.maa.history(userId, { limit: 50 })).items.map((m) => m.occasion).reverse();

  it("31. quiet hours from the user's own setting, in their time zone: kept quietly, not pushed", async () => {
    toNext(8, 30); // 14:00 in Kolkata
    const owl = await person({ timezone: 'Asia/Kolkata' });
    const other = await person({ timezone: 'Asia/Kolkata' });
    // A siesta from 13:30 to 15:00 local; the default (22:00 to 07:00) says nothing about 14:00.
    await t.deps.accounts.updateMe(owl, { quietHours: { start: '13:30', end: '15:00' } });
    expect(await t.deps.nudges.nudge(owl, 'friend_overtook')).toBe('quiet');
    expect(await t.deps.nudges.nudge(other, 'friend_overtook')).toBe('live');
    // Said and kept (history and a notification for later), only not pushed as maa:message.
    expect(await history(owl)).toEqual(['friend_overtook']);
    const notes = await t.deps.notifications.list(owl, {});
    expect(notes.items.map((n) => n.data.occasion)).toEqual(['friend_overtook']);
    clock.advance(HOUR); // 15:00 local: the window has ended
    expect(await t.deps.nudges.nudge(owl, 'group_rank')).toBe('live');
    // A window across midnight (23:30 to 06:00), and an empty one (no quiet hours at all).
    await t.deps.accounts.updateMe(owl, { quietHours: { start: '23:30', end: '06:00' } });
    await t.deps.accounts.updateMe(other, { quietHours: { start: '00:00', end: '00:00' } });
    toNext(17, 30); // 23:00 in Kolkata: quiet by default, not for these two
    expect(await t.deps.nudges.nudge(owl, 'goal_met')).toBe('live');
    expect(await t.deps.nudges.nudge(other, 'goal_met')).toBe('live');
    clock.advance(HOUR); // 00:00: inside the owl's window
    expect(await t.deps.nudges.nudge(owl, 'friend_overtook')).toBe('quiet');
    expect(await t.deps.nudges.nudge(other, 'friend_overtook')).toBe('live');
  });

  it('32. comeback after three misses: the first completion back queues it, Maa says it once', async () => {
    toNext(10);
    const u = await person({ tone: 'strict', goal: 2 });
    await complete(u, 2);
    clock.advance(4 * DAY);
    const queued = async (userId = u) =>
      (
        await t.deps.db.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM outbox
            WHERE job_name = 'maa.event' AND payload->>'userId' = $1 AND payload->>'occasion' = 'comeback'`,
          [userId],
        )
      ).rows[0]?.n ?? 0;
    // Only the first completion back is looked at: not the ones before the lapse.
    expect(await queued()).toBe(0);
    await complete(u, 1);
    expect(await queued()).toBe(1); // in the completion's own transaction
    expect(await t.deps.maa.state(u)).toMatchObject({ missesInRow: 3, done: 1 });
    expect(await t.deps.nudges.nudge(u, 'comeback')).toBe('live');
    const [said] = (await t.deps.maa.history(u, { limit: 1 })).items;
    // Three misses soften strict to gentle; the line names the days away.
    expectLine(said as { occasion: string; tone: string; text: string }, {
      occasion: 'comeback',
      tone: 'gentle',
      locale: 'en',
      facts: { days: 3, done: 1, tasksLeft: 1 },
    });
    // Once per comeback: not for the next completion, nor the next day while the lapse goes on.
    expect(await t.deps.nudges.nudge(u, 'comeback')).toBeUndefined();
    clock.advance(DAY);
    await complete(u, 1);
    expect(await queued()).toBe(1); // worked yesterday: not back from anywhere
    expect((await t.deps.maa.state(u)).missesInRow).toBe(4);
    expect(await t.deps.nudges.nudge(u, 'comeback')).toBeUndefined();
    // Someone who never lapsed is not "back".
    const steady = await person();
    await complete(steady);
    expect(await queued(steady)).toBe(0);
    expect(await t.deps.nudges.nudge(steady, 'comeback')).toBeUndefined();
    expect(await history(u)).toEqual(['comeback']);
  });

  it('33. a brand-new user late in the evening is welcomed, not asked if they feel low', async () => {
    toNext(21);
    const u = await person({ tone: 'gentle', locale: 'hi' });
    const state = await t.deps.maa.state(u);
    expect(state).toMatchObject({ newUser: true, localHour: 21, done: 0, currentStreak: 0 });
    expect(state.hoursLeft).toBeLessThanOrEqual(3);
    expectLine(await say(u), { occasion: 'welcome', tone: 'gentle', locale: 'hi' });
  });

  it('34. a podium finish names the rank; asked for without one, group_rank still reads whole', async () => {
    toNext(12);
    const u = await person({ tone: 'balanced' });
    expect(await t.deps.nudges.nudge(u, 'group_rank', { rank: 2 })).toBe('live');
    const [said] = (await t.deps.maa.history(u, { limit: 1 })).items;
    expect(said?.text).toMatch(/\bnumber 2\b/i);
    expectLine(said as { occasion: string; tone: string; text: string }, {
      occasion: 'group_rank',
      tone: 'balanced',
      locale: 'en',
      facts: { rank: 2 },
    });
    for (let i = 0; i < 9; i++) expect((await say(u, 'group_rank')).text).not.toMatch(/[{}]/);
  });
});

describe('Maa over HTTP', () => {
  it('35. GET /v1/maa/message answers {occasion, tone, text, source}', async () => {
    const u = await person({ tone: 'gentle', locale: 'hi' });
    const { headers } = await signIn(t.deps, u);
    const res = await t.app.inject({ method: 'GET', url: '/v1/maa/message', headers });
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(Object.keys(body).sort()).toEqual(['occasion', 'source', 'text', 'tone']);
    expect(body.source).toBe('template');
    expect(body.tone).toBe('gentle');
    const asked = await t.app.inject({ method: 'GET', url: '/v1/maa/message?occasion=comeback', headers });
    expect(asked.json().occasion).toBe('comeback');
  });

  it('36. refuses strangers and unknown occasions', async () => {
    expect((await t.app.inject({ method: 'GET', url: '/v1/maa/message' })).statusCode).toBe(401);
    expect((await t.app.inject({ method: 'GET', url: '/v1/maa/messages' })).statusCode).toBe(401);
    const { headers } = await signIn(t.deps, await person());
    const res = await t.app.inject({ method: 'GET', url: '/v1/maa/message?occasion=nagging', headers });
    expect(res.statusCode).toBe(400);
  });

  it('37. history is mine only, newest first, a page at a time', async () => {
    const me = await person();
    const other = await person();
    await t.deps.maa.message(other);
    const said: string[] = [];
    for (let i = 0; i < 5; i++) {
      said.push((await t.deps.maa.message(me, 'day_start')).text);
      clock.advance(1000);
    }
    const { headers } = await signIn(t.deps, me);
    const page1 = await t.app.inject({ method: 'GET', url: '/v1/maa/messages?limit=3', headers });
    expect(page1.statusCode).toBe(200);
    const p1 = page1.json();
    expect(p1.items).toHaveLength(3);
    expect(p1.nextCursor).toEqual(expect.any(String));
    const page2 = await t.app.inject({
      method: 'GET',
      url: `/v1/maa/messages?limit=3&cursor=${p1.nextCursor}`,
      headers,
    });
    const p2 = page2.json();
    expect(p2.items).toHaveLength(2);
    expect(p2.nextCursor).toBeNull();
    expect([...p1.items, ...p2.items].map((m: { text: string }) => m.text)).toEqual(said.reverse());
    expect(p1.items[0]).toMatchObject({
      occasion: 'day_start',
      tone: 'balanced',
      locale: 'en',
      source: 'template',
    });
    const bad = await t.app.inject({ method: 'GET', url: '/v1/maa/messages?cursor=bm9wZQ', headers });
    expect(bad.statusCode).toBe(400);
  });

  it('38. deleting the user deletes what Maa said to them', async () => {
    const u = await person();
    await t.deps.maa.message(u);
    await t.deps.db.query('DELETE FROM users WHERE id = $1', [u]);
    const { rows } = await t.deps.db.query('SELECT 1 FROM maa_messages WHERE user_id = $1', [u]);
    expect(rows).toHaveLength(0);
  });
});

describe('Maa with an LLM (stub chat-completions server)', () => {
  let server: Server;
  let url = '';
  const seen: { model: string; auth: string | undefined; system: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => {
        body += c;
      });
      req.on('end', () => {
        const parsed = JSON.parse(body) as { model: string; messages: { role: string; content: string }[] };
        seen.push({
          model: parsed.model,
          auth: req.headers.authorization,
          system: parsed.messages[0]?.content ?? '',
        });
        const reply = (content: string) =>
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] }));
        switch (parsed.model) {
          case 'normal':
            return reply('Beta Riya, **two** tasks left. Finish them! See https://evil.example/x <b>now</b>');
          case 'long':
            return reply(`Beta, ${'keep going and never give up. '.repeat(30)}`);
          case 'hang':
            return; // never answers
          case 'slow':
            return setTimeout(() => reply('too late, beta'), 3000);
          case 'garbage':
            return res.writeHead(200, { 'content-type': 'application/json' }).end('{"choices": [ nope');
          case 'empty':
            return reply('   ');
          default:
            return res.writeHead(500).end('boom');
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  const serviceFor = (model: string, multiplier = 0) =>
    makeMaaService({
      ...t.deps,
      log: t.deps.log,
      config: {
        MAA_LLM_URL: url,
        MAA_LLM_MODEL: model,
        MAA_LLM_API_KEY: 'sk-test-key',
        RATE_LIMIT_MULTIPLIER: multiplier,
      },
    });

  it('uses the model, sanitised, with persona, tone, locale and real numbers in the prompt', async () => {
    const u = await person({ name: 'Riya', tone: 'strict', locale: 'hi', goal: 3 });
    await complete(u, 1);
    const msg = await serviceFor('normal').message(u);
    expect(msg.source).toBe('llm');
    expect(msg.text).toBe('Beta Riya, two tasks left. Finish them! See now');
    const req = seen[seen.length - 1];
    expect(req?.auth).toBe('Bearer sk-test-key');
    expect(req?.system).toContain('Maa');
    expect(req?.system).toContain('firm');
    expect(req?.system).toContain('Hinglish');
    expect(req?.system).toContain('done today 1 of goal 3');
    const { rows } = await t.deps.db.query<{ source: string }>(
      'SELECT source FROM maa_messages WHERE user_id = $1',
      [u],
    );
    expect(rows.map((r) => r.source)).toEqual(['llm']);
  });

  it('caps long output', async () => {
    const u = await person();
    const msg = await serviceFor('long').message(u);
    expect(msg.source).toBe('llm');
    expect(msg.text.length).toBeLessThanOrEqual(280);
  });

  it.each(['hang', 'slow', 'garbage', 'error500', 'empty'])(
    '%s → the template line, within 2.5 s',
    async (model) => {
      const u = await person({ goal: 2 });
      const started = performance.now();
      const msg = await serviceFor(model).message(u);
      const ms = performance.now() - started;
      console.log(`maa llm ${model}: answered from ${msg.source} in ${Math.round(ms)} ms`);
      expect(ms).toBeLessThan(2500);
      expectLine(msg, { occasion: 'welcome', tone: 'balanced', locale: 'en', facts: { goal: 2 } });
      expect(msg.source).toBe('template');
    },
    10_000,
  );

  it('an unreachable endpoint falls back to templates', async () => {
    const u = await person();
    const msg = await makeMaaService({
      ...t.deps,
      config: { MAA_LLM_URL: 'http://127.0.0.1:9/v1', RATE_LIMIT_MULTIPLIER: 0 },
    }).message(u);
    expect(msg.source).toBe('template');
  });

  it('LLM calls are rate limited per user; past the budget Maa uses templates', async () => {
    const u = await person();
    const maa = serviceFor('normal', 1);
    const sources: string[] = [];
    for (let i = 0; i < 21; i++) sources.push((await maa.message(u)).source);
    expect(sources.slice(0, 20).every((s) => s === 'llm')).toBe(true);
    expect(sources[20]).toBe('template');
  });

  it('sanitise strips HTML, markdown, links and braces', () => {
    expect(sanitise('# Hi [beta](http://x.y) <script>x</script> **go** {name} www.spam.com')).toBe(
      'Hi beta x go name',
    );
    expect(sanitise('   ')).toBeNull();
  });
});
