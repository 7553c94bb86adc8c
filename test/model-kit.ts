// The in-memory reference model of C2 (RELIABILITY.md): PRODUCT.md's rules for tasks, dailies, days,
// streaks, score, friends, blocks, group tasks, chat and account deletion, written from the
// specification as plainly as possible and without any code from src/. The model test drives the
// real API and this model with the same actions and compares what the API shows with what the model
// says it must show. Each action returns the answer the API must give; each view returns what a
// read must show, in the shape the test projects the API's answers to.
//
// Where PRODUCT.md leaves a choice open, the model encodes the choice the API documents, and says so:
// - Days close when the rollover runs (the job, every few minutes in production), and only once their
//   grace window is over, so a late check-in or an undo always counts (C2 found the rollover closing
//   yesterday inside its window; fixed). A read folds the days not closed yet, through yesterday,
//   with what they hold now ("reads stay correct even when the job is late"), frozen days included.
// - A rank is one past the highest rank among the current members (gapless while nobody who finished
//   leaves; a finisher who leaves or is deleted takes their rank with them).
// - A leaderboard lists the people who have a row for the period: anyone awarded points in it, even
//   when an undone check-in took them back to 0.
// - Group invitations go to friends only: an unfriend or a block cancels the pending ones between the
//   two, and answering one then is a 409 (C2 found blocks left them answerable; fixed).

export const HOUR = 3600_000;
export const DAY = 24 * HOUR;
/** GRACE_HOURS: yesterday's dailies may be checked in (late) or undone this long into today. */
export const GRACE_HOURS = 3;
const DELETE_FOR_EVERYONE_MS = DAY;

export type LocalDate = string;

// ---------------------------------------------------------------------------------------------------
// Calendar: a user's logical day is the local date in their time zone (day start 00:00 here).
// ---------------------------------------------------------------------------------------------------

const formats = new Map<string, Intl.DateTimeFormat>();
export function dateIn(timezone: string, at: number): LocalDate {
  let f = formats.get(timezone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: timezone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
    });
    formats.set(timezone, f);
  }
  const part = (type: string) => f.formatToParts(at).find((p) => p.type === type)?.value;
  return `${part('year')}-${part('month')}-${part('day')}`;
}

export function addDays(date: LocalDate, n: number): LocalDate {
  const [y, m, d] = date.split('-').map(Number) as [number, number, number];
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

/** ISO weekday, 1 = Monday … 7 = Sunday. */
export const weekdayOf = (date: LocalDate) => new Date(`${date}T00:00:00Z`).getUTCDay() || 7;

export function* dates(from: LocalDate, to: LocalDate) {
  for (let d = from; d <= to; d = addDays(d, 1)) yield d;
}

/** The ISO week of an instant in UTC, 'YYYY-Www': weekly boards count points by when they were paid. */
export function isoWeek(at: number): string {
  const day = new Date(at);
  const thursday = new Date(Date.UTC(day.getUTCFullYear(), day.getUTCMonth(), day.getUTCDate()));
  thursday.setUTCDate(thursday.getUTCDate() + 4 - (thursday.getUTCDay() || 7));
  const year = thursday.getUTCFullYear();
  const week = Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / DAY / 7) + 1;
  return `${year}-W${String(week).padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------------
// Points and streaks (PRODUCT.md "Dailies, days and streaks", "Group tasks"; the amounts are the API's).
// ---------------------------------------------------------------------------------------------------

export const POINTS = { task_done: 10, daily_done: 10, perfect_day: 20 } as const;
/** Overall streak lengths that pay once ever each. */
export const MILESTONES: Record<number, number> = { 7: 50, 30: 100, 60: 150, 100: 200, 180: 300, 365: 500 };
/** With more than 3 members the podium earns 30/20/10 and later finishers 5; otherwise 5 each. */
export const groupPoints = (rank: number, members: number) =>
  members > 3 ? ([30, 20, 10][rank - 1] ?? 5) : 5;

export interface Streak {
  current: number;
  longest: number;
  freezes: number;
}
export type Outcome = 'met' | 'frozen' | 'missed';

/**
 * One day of the overall streak. Met: the goal (at least 1) reached; every 7th day in a row earns a
 * freeze (at most 2 held). Not met: a freeze, when one is held and there is a streak to keep, makes
 * the day frozen (kept, not counted); otherwise the streak is over.
 */
export function closeDay(s: Streak, completed: number, goal: number): { streak: Streak; outcome: Outcome } {
  if (completed >= Math.max(1, goal)) {
    const current = s.current + 1;
    return {
      outcome: 'met',
      streak: {
        current,
        longest: Math.max(s.longest, current),
        freezes: current % 7 === 0 ? Math.min(2, s.freezes + 1) : s.freezes,
      },
    };
  }
  if (s.freezes > 0 && s.current > 0) return { outcome: 'frozen', streak: { ...s, freezes: s.freezes - 1 } };
  return { outcome: 'missed', streak: { ...s, current: 0 } };
}

// ---------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------

export interface MTask {
  id: string;
  createdAt: number;
  status: 'open' | 'done';
  completedOn: LocalDate | null;
}

export interface MDaily {
  id: string;
  createdAt: number;
  createdOn: LocalDate;
  weekdays: number[];
  deleted: boolean;
  /** date → late */
  checkIns: Map<LocalDate, boolean>;
}

export interface MUser {
  i: number;
  id: string;
  username: string;
  timezone: string;
  alive: boolean;
  firstDay: LocalDate;
  goal: number;
  visibility: 'public' | 'friends' | 'private';
  tasks: MTask[];
  dailies: MDaily[];
  /** `${source}:${key}` → points and when they were paid; once per key, ever. */
  ledger: Map<string, { points: number; at: number }>;
  /** Leaderboard periods ('all', 'YYYY-Www') in which the user was ever paid. */
  boardPeriods: Set<string>;
  /** The last day the rollover closed, and the streak through it; null before the first run. */
  closedThrough: LocalDate | null;
  streak: Streak;
  /** Outcomes of the days the rollover closed. */
  closedDays: Map<LocalDate, Outcome>;
}

export interface MRequest {
  id: string;
  from: string;
  to: string;
  status: 'pending' | 'accepted' | 'declined' | 'cancelled';
  createdAt: number;
}

export interface MMember {
  userId: string;
  role: 'owner' | 'member';
  joinedAt: number;
  completedAt: number | null;
  rank: number | null;
}

export interface MGroup {
  id: string;
  title: string;
  ownerId: string;
  visibility: 'public' | 'private';
  dueAt: number;
  status: 'open' | 'closed';
  createdAt: number;
  members: MMember[];
  conversationId: string;
}

export interface MInvitation {
  id: string;
  groupId: string;
  from: string;
  to: string;
  status: 'pending' | 'accepted' | 'declined' | 'cancelled';
  createdAt: number;
}

export interface MMessage {
  id: string;
  seq: number;
  senderId: string | null;
  clientMessageId: string | null;
  body: string;
  createdAt: number;
  deletedAt: number | null;
}

export interface MConversation {
  id: string;
  kind: 'direct' | 'group';
  groupId: string | null;
  /** The pair of a direct conversation (the same pair always gets the same one). */
  pairKey: string | null;
  updatedAt: number;
  lastSeq: number;
  members: Map<string, { joinedAt: number; fromSeq: number; deliveredSeq: number; readSeq: number }>;
  messages: MMessage[];
}

/** What the API must answer: the status, and the problem code or a part of the body. */
export interface Expect {
  status: number;
  code?: string;
  body?: Record<string, unknown>;
  /** With an Idempotency-Key: whether this is the stored answer to an earlier request. */
  replayed?: boolean;
}

const ok = (status: number, body?: Record<string, unknown>): Expect => (body ? { status, body } : { status });
const problem = (status: number, code: string): Expect => ({ status, code });
const pair = (a: string, b: string) => (a < b ? `${a}:${b}` : `${b}:${a}`);
const byTimeThenId =
  <T extends { id: string }>(at: (x: T) => number) =>
  (x: T, y: T) =>
    at(x) - at(y) || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);
const newestFirst =
  <T extends { id: string }>(at: (x: T) => number) =>
  (x: T, y: T) =>
    byTimeThenId(at)(y, x);
const iso = (at: number | null) => (at === null ? null : new Date(at).toISOString());

export class Model {
  users: MUser[] = [];
  requests: MRequest[] = [];
  friendships = new Set<string>();
  /** `${blocker}>${blocked}` → since */
  blocks = new Map<string, number>();
  groups: MGroup[] = [];
  invitations: MInvitation[] = [];
  conversations: MConversation[] = [];
  /** `${userId}:${messageId}`: hidden for that user only. */
  hidden = new Set<string>();
  /** Every id the API handed out in this sequence, kept after the thing is gone (for 404s). */
  ever = {
    tasks: [] as string[],
    dailies: [] as string[],
    requests: [] as string[],
    groups: [] as string[],
    invitations: [] as string[],
    messages: [] as { conversationId: string; id: string }[],
  };

  /** `${userId}:${key}` → what the first request with that Idempotency-Key asked and got. */
  keys = new Map<string, { request: string; at: number; answer: Expect }>();

  constructor(readonly now: () => number) {}

  /**
   * Idempotency-Key (DESIGN.md, G6): a successful answer is kept a day under the caller's key; the
   * same request with the key gets it again without doing anything, another request with it is 422.
   * A failure keeps nothing, so the key may be used again.
   */
  keyed(u: MUser, key: string, request: string, run: () => Expect): Expect {
    const k = `${u.id}:${key}`;
    const kept = this.keys.get(k);
    if (kept && kept.at < this.now() - DAY) this.keys.delete(k);
    else if (kept)
      return kept.request === request
        ? { ...kept.answer, replayed: true }
        : problem(422, 'idempotency_key_mismatch');
    const answer = run();
    if (answer.status < 400) this.keys.set(k, { request, at: this.now(), answer });
    return { ...answer, replayed: false };
  }

  addUser(u: { id: string; username: string; timezone: string }): MUser {
    const user: MUser = {
      ...u,
      i: this.users.length,
      alive: true,
      firstDay: dateIn(u.timezone, this.now()),
      goal: 1,
      visibility: 'friends',
      tasks: [],
      dailies: [],
      ledger: new Map(),
      boardPeriods: new Set(),
      closedThrough: null,
      streak: { current: 0, longest: 0, freezes: 0 },
      closedDays: new Map(),
    };
    this.users.push(user);
    return user;
  }

  user(id: string | null): MUser | undefined {
    return this.users.find((u) => u.id === id);
  }
  alive = () => this.users.filter((u) => u.alive);
  today = (u: MUser) => dateIn(u.timezone, this.now());

  // ------------------------------------------------------------------------------------------------
  // Score ledger: each source pays once ever; an undone check-in takes its points back.
  // ------------------------------------------------------------------------------------------------

  private award(u: MUser, source: string, key: string, points: number) {
    const k = `${source}:${key}`;
    if (u.ledger.has(k)) return;
    u.ledger.set(k, { points, at: this.now() });
    u.boardPeriods.add('all');
    u.boardPeriods.add(isoWeek(this.now()));
  }

  score(u: MUser, period: 'all' | 'week' = 'all'): number {
    const week = isoWeek(this.now());
    let sum = 0;
    for (const e of u.ledger.values()) if (period === 'all' || isoWeek(e.at) === week) sum += e.points;
    return sum;
  }

  // ------------------------------------------------------------------------------------------------
  // Tasks
  // ------------------------------------------------------------------------------------------------

  addTask(u: MUser, id: string) {
    u.tasks.push({ id, createdAt: this.now(), status: 'open', completedOn: null });
    this.ever.tasks.push(id);
  }

  /** Done on the owner's logical date; 10 points the first time only (complete ⇄ reopen pays once). */
  completeTask(u: MUser, id: string): Expect {
    const task = u.tasks.find((x) => x.id === id);
    if (!task) return problem(404, 'not_found');
    if (task.status === 'open') {
      task.status = 'done';
      task.completedOn = this.today(u);
      this.award(u, 'task_done', id, POINTS.task_done);
    }
    return ok(200, { id, status: 'done', completedOn: task.completedOn });
  }

  reopenTask(u: MUser, id: string): Expect {
    const task = u.tasks.find((x) => x.id === id);
    if (!task) return problem(404, 'not_found');
    task.status = 'open';
    task.completedOn = null;
    return ok(200, { id, status: 'open', completedOn: null });
  }

  deleteTask(u: MUser, id: string): Expect {
    const before = u.tasks.length;
    u.tasks = u.tasks.filter((x) => x.id !== id);
    return u.tasks.length < before ? ok(204) : problem(404, 'not_found');
  }

  // ------------------------------------------------------------------------------------------------
  // Dailies and check-ins
  // ------------------------------------------------------------------------------------------------

  addDaily(u: MUser, id: string, weekdays: number[]) {
    u.dailies.push({
      id,
      createdAt: this.now(),
      createdOn: this.today(u),
      weekdays: [...new Set(weekdays)].sort((a, b) => a - b),
      deleted: false,
      checkIns: new Map(),
    });
    this.ever.dailies.push(id);
  }

  private liveDaily = (u: MUser, id: string) => u.dailies.find((d) => d.id === id && !d.deleted);

  /**
   * Today, or yesterday until GRACE_HOURS after today's start (marked late); anything else is out of
   * range. `now - grace` still falling on yesterday is the same as "before today's start + grace".
   */
  private window(u: MUser, which: 'today' | 'yesterday'): { date: LocalDate; late: boolean } | undefined {
    const today = this.today(u);
    if (which === 'today') return { date: today, late: false };
    const yesterday = addDays(today, -1);
    return dateIn(u.timezone, this.now() - GRACE_HOURS * HOUR) === yesterday
      ? { date: yesterday, late: true }
      : undefined;
  }

  checkIn(u: MUser, id: string, which: 'today' | 'yesterday'): Expect {
    const daily = this.liveDaily(u, id);
    if (!daily) return problem(404, 'not_found');
    const day = this.window(u, which);
    if (!day) return problem(400, 'date_out_of_range');
    if (day.date < daily.createdOn || !daily.weekdays.includes(weekdayOf(day.date)))
      return problem(400, 'not_due');
    const existing = daily.checkIns.get(day.date);
    if (existing !== undefined) return ok(200, { dailyId: id, date: day.date, late: existing });
    daily.checkIns.set(day.date, day.late);
    this.award(u, 'daily_done', `${id}:${day.date}`, POINTS.daily_done);
    return ok(201, { dailyId: id, date: day.date, late: day.late });
  }

  undoCheckIn(u: MUser, id: string, which: 'today' | 'yesterday'): Expect {
    const daily = this.liveDaily(u, id);
    if (!daily) return problem(404, 'not_found');
    const day = this.window(u, which);
    if (!day) return problem(400, 'date_out_of_range');
    if (!daily.checkIns.delete(day.date)) return problem(404, 'not_found');
    u.ledger.delete(`daily_done:${id}:${day.date}`);
    return ok(204);
  }

  /** Hidden from lists; its check-ins still count for their days and its points stay. */
  deleteDaily(u: MUser, id: string): Expect {
    const daily = this.liveDaily(u, id);
    if (!daily) return problem(404, 'not_found');
    daily.deleted = true;
    return ok(204);
  }

  /** Tasks still done on that date, and check-ins of every daily (deleted ones too). */
  completed(u: MUser, date: LocalDate): number {
    let n = u.tasks.filter((x) => x.status === 'done' && x.completedOn === date).length;
    for (const d of u.dailies) if (d.checkIns.has(date)) n++;
    return n;
  }

  /** The days after the last closed one up to yesterday (or `through`), folded with what they hold now. */
  private openDays(u: MUser, through = addDays(this.today(u), -1)) {
    const from = u.closedThrough ? addDays(u.closedThrough, 1) : u.firstDay;
    let streak = u.streak;
    const days: { date: LocalDate; outcome: Outcome; streak: Streak }[] = [];
    for (const date of dates(from, through)) {
      const r = closeDay(streak, this.completed(u, date), u.goal);
      streak = r.streak;
      days.push({ date, outcome: r.outcome, streak });
    }
    return { streak, days };
  }

  /**
   * The rollover for one user: closes every day whose grace window is over, pays a perfect day (goal met and no live
   * daily due that day left undone) and each streak milestone once ever. Returns the days closed.
   */
  rollover(u: MUser): number {
    // The last day whose grace window is over: the day before the one `now - grace` falls on.
    const through = addDays(dateIn(u.timezone, this.now() - GRACE_HOURS * HOUR), -1);
    const { streak, days } = this.openDays(u, through);
    for (const day of days) {
      u.closedDays.set(day.date, day.outcome);
      if (day.outcome !== 'met') continue;
      const undone = u.dailies.filter(
        (d) =>
          !d.deleted &&
          d.createdOn <= day.date &&
          d.weekdays.includes(weekdayOf(day.date)) &&
          !d.checkIns.has(day.date),
      );
      if (undone.length === 0) this.award(u, 'perfect_day', day.date, POINTS.perfect_day);
      const bonus = MILESTONES[day.streak.current];
      if (bonus) this.award(u, 'streak_milestone', String(day.streak.current), bonus);
    }
    u.streak = streak;
    const last = days[days.length - 1];
    if (last) u.closedThrough = last.date;
    return days.length;
  }

  setGoal(u: MUser, goal: number) {
    u.goal = goal;
  }

  // ------------------------------------------------------------------------------------------------
  // Friends and blocks
  // ------------------------------------------------------------------------------------------------

  areFriends = (a: string, b: string) => this.friendships.has(pair(a, b));
  blocked = (a: string, b: string) => this.blocks.has(`${a}>${b}`) || this.blocks.has(`${b}>${a}`);
  private pendingBetween = (a: string, b: string) =>
    this.requests.find((r) => r.status === 'pending' && pair(r.from, r.to) === pair(a, b));

  /** Asking someone who already asked me accepts theirs; blocked either way, they are not there. */
  sendRequest(me: MUser, other: MUser): Expect & { accepts?: MRequest } {
    if (!other.alive || this.blocked(me.id, other.id)) return problem(404, 'not_found');
    if (this.areFriends(me.id, other.id)) return problem(409, 'already_friends');
    const pending = this.pendingBetween(me.id, other.id);
    if (pending?.from === me.id) return problem(409, 'request_pending');
    if (pending) {
      pending.status = 'accepted';
      this.friendships.add(pair(me.id, other.id));
      return { ...ok(201, { id: pending.id, status: 'accepted' }), accepts: pending };
    }
    return ok(201, { fromUserId: me.id, toUserId: other.id, status: 'pending' });
  }

  addRequest(id: string, from: string, to: string) {
    this.requests.push({ id, from, to, status: 'pending', createdAt: this.now() });
    this.ever.requests.push(id);
  }

  /** The recipient answers; answering the same way again is harmless; anyone else gets 404. */
  answerRequest(me: MUser, id: string, answer: 'accepted' | 'declined'): Expect {
    const r = this.requests.find((x) => x.id === id);
    if (!r || r.to !== me.id || r.status === 'cancelled') return problem(404, 'not_found');
    if (r.status === answer) return ok(200, { id, status: answer });
    if (r.status !== 'pending') return problem(409, 'request_not_pending');
    r.status = answer;
    if (answer === 'accepted') this.friendships.add(pair(r.from, r.to));
    return ok(200, { id, status: answer });
  }

  cancelRequest(me: MUser, id: string): Expect {
    const r = this.requests.find((x) => x.id === id);
    if (!r || r.from !== me.id || r.status !== 'pending') return problem(404, 'not_found');
    r.status = 'cancelled';
    return ok(204);
  }

  unfriend(me: MUser, other: MUser): Expect {
    if (!this.friendships.delete(pair(me.id, other.id))) return problem(404, 'not_found');
    this.cancelInvitationsBetween(me.id, other.id);
    return ok(204);
  }

  private cancelInvitationsBetween(a: string, b: string) {
    for (const i of this.invitations)
      if (i.status === 'pending' && pair(i.from, i.to) === pair(a, b)) i.status = 'cancelled';
  }

  /** Ends the friendship and whatever is pending between them (requests, invitations); blocking twice is the first block. */
  block(me: MUser, other: MUser): Expect {
    if (!other.alive) return problem(404, 'not_found');
    const key = `${me.id}>${other.id}`;
    const created = !this.blocks.has(key);
    if (created) this.blocks.set(key, this.now());
    this.friendships.delete(pair(me.id, other.id));
    for (const r of this.requests)
      if (r.status === 'pending' && pair(r.from, r.to) === pair(me.id, other.id)) r.status = 'cancelled';
    this.cancelInvitationsBetween(me.id, other.id);
    return ok(created ? 201 : 200, { id: other.id });
  }

  unblock(me: MUser, other: MUser): Expect {
    return this.blocks.delete(`${me.id}>${other.id}`) ? ok(204) : problem(404, 'not_found');
  }

  // ------------------------------------------------------------------------------------------------
  // Group tasks
  // ------------------------------------------------------------------------------------------------

  group = (id: string) => this.groups.find((g) => g.id === id);
  member = (g: MGroup, userId: string) => g.members.find((m) => m.userId === userId);

  /** Private group tasks do not exist for non-members (404); public ones do, without rights (403). */
  private access(me: MUser, id: string): Expect | { g: MGroup; m: MMember | undefined } {
    const g = this.group(id);
    if (!g) return problem(404, 'not_found');
    const m = this.member(g, me.id);
    if (!m && g.visibility === 'private') return problem(404, 'not_found');
    return { g, m };
  }

  groupView(g: MGroup, viewer: string) {
    return {
      id: g.id,
      ownerId: g.ownerId,
      status: g.status,
      memberCount: g.members.length,
      myRole: this.member(g, viewer)?.role ?? null,
    };
  }

  /** Invitations go to friends only, or nothing is created. */
  createGroup(me: MUser, invitees: MUser[]): Expect {
    if (invitees.some((v) => !this.areFriends(me.id, v.id))) return problem(403, 'not_friends');
    return ok(201, { ownerId: me.id, status: 'open', memberCount: 1, myRole: 'owner' });
  }

  addGroup(
    me: MUser,
    g: { id: string; title: string; visibility: 'public' | 'private'; dueAt: number; conversationId: string },
  ): MGroup {
    const group: MGroup = {
      ...g,
      ownerId: me.id,
      status: 'open',
      createdAt: this.now(),
      members: [],
    };
    this.groups.push(group);
    this.ever.groups.push(g.id);
    this.conversations.push({
      id: g.conversationId,
      kind: 'group',
      groupId: g.id,
      pairKey: null,
      updatedAt: this.now(),
      lastSeq: 0,
      members: new Map(),
      messages: [],
    });
    this.join(group, me.id, 'owner');
    return group;
  }

  addInvitation(id: string, groupId: string, from: string, to: string) {
    this.invitations.push({ id, groupId, from, to, status: 'pending', createdAt: this.now() });
    this.ever.invitations.push(id);
  }

  /** The owner invites friends; members are skipped and a pending invitation is not repeated. */
  invite(me: MUser, id: string, other: MUser): Expect & { g?: MGroup } {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (a.m?.role !== 'owner') return problem(403, 'not_group_admin');
    if (a.g.status === 'closed') return problem(409, 'group_closed');
    // Past its due time, before the close job runs, nobody new comes in.
    if (a.g.dueAt <= this.now()) return problem(409, 'group_past_due');
    if (!this.areFriends(me.id, other.id)) return problem(403, 'not_friends');
    return { ...ok(201), g: a.g };
  }

  answerInvitation(me: MUser, id: string, answer: 'accepted' | 'declined'): Expect {
    const inv = this.invitations.find((i) => i.id === id && i.to === me.id);
    const g = inv && this.group(inv.groupId);
    if (!inv || !g) return problem(404, 'not_found');
    if (inv.status === answer) return ok(200, { id, status: answer });
    if (inv.status !== 'pending') return problem(409, 'invitation_answered');
    if (answer === 'accepted') {
      if (g.status === 'closed') return problem(409, 'group_closed');
      if (g.dueAt <= this.now()) return problem(409, 'group_past_due');
      inv.status = 'accepted';
      this.join(g, me.id, 'member');
    } else inv.status = 'declined';
    return ok(200, { id, status: answer, groupTaskId: g.id });
  }

  /** Joining settles my pending invitations to it and gives me its conversation from now on. */
  private join(g: MGroup, userId: string, role: 'owner' | 'member') {
    g.members.push({ userId, role, joinedAt: this.now(), completedAt: null, rank: null });
    for (const i of this.invitations)
      if (i.groupId === g.id && i.to === userId && i.status === 'pending') i.status = 'accepted';
    const c = this.conversationOfGroup(g);
    c.members.set(userId, {
      joinedAt: this.now(),
      fromSeq: c.lastSeq + 1,
      deliveredSeq: c.lastSeq,
      readSeq: c.lastSeq,
    });
  }

  joinGroup(me: MUser, id: string): Expect {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (!a.m) {
      if (a.g.status === 'closed') return problem(409, 'group_closed');
      if (a.g.dueAt <= this.now()) return problem(409, 'group_past_due');
      this.join(a.g, me.id, 'member');
    }
    return ok(200, this.groupView(a.g, me.id));
  }

  /** The owner leaving hands the group to the earliest member, or deletes it when nobody is left. */
  private drop(g: MGroup, userId: string) {
    g.members = g.members.filter((m) => m.userId !== userId);
    this.conversationOfGroup(g).members.delete(userId);
    if (g.ownerId !== userId) return;
    const next = [...g.members].sort((x, y) => x.joinedAt - y.joinedAt || (x.userId < y.userId ? -1 : 1))[0];
    if (next) {
      next.role = 'owner';
      g.ownerId = next.userId;
    } else this.deleteGroupRows(g);
  }

  private deleteGroupRows(g: MGroup) {
    this.groups = this.groups.filter((x) => x !== g);
    this.invitations = this.invitations.filter((i) => i.groupId !== g.id);
    this.conversations = this.conversations.filter((c) => c.id !== g.conversationId);
  }

  leaveGroup(me: MUser, id: string): Expect {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (!a.m) return problem(403, 'not_member');
    this.drop(a.g, me.id);
    return ok(204);
  }

  removeMember(me: MUser, id: string, other: MUser): Expect {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (a.m?.role !== 'owner') return problem(403, 'not_group_admin');
    const target = this.member(a.g, other.id);
    if (!target) return problem(404, 'not_found');
    if (target.role === 'owner') return problem(403, 'cannot_remove_member');
    this.drop(a.g, other.id);
    return ok(204);
  }

  /** Ranks follow completion order; asking again answers the same rank. */
  completeGroup(me: MUser, id: string): Expect {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (!a.m) return problem(403, 'not_member');
    if (a.m.rank !== null) return ok(200, { rank: a.m.rank, completedAt: iso(a.m.completedAt) });
    if (a.g.status === 'closed') return problem(409, 'group_closed');
    if (a.g.dueAt <= this.now()) return problem(409, 'group_past_due');
    a.m.rank = Math.max(0, ...a.g.members.map((m) => m.rank ?? 0)) + 1;
    a.m.completedAt = this.now();
    return ok(200, { rank: a.m.rank, completedAt: iso(this.now()) });
  }

  /** Closing pays each finisher by rank and member count, once. */
  private close(g: MGroup) {
    if (g.status === 'closed') return;
    g.status = 'closed';
    for (const m of g.members) {
      if (m.rank === null) continue;
      const u = this.user(m.userId) as MUser;
      this.award(u, 'group_rank', g.id, groupPoints(m.rank, g.members.length));
    }
  }

  closeGroup(me: MUser, id: string): Expect {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (a.m?.role !== 'owner') return problem(403, 'not_group_owner');
    this.close(a.g);
    return ok(200, this.groupView(a.g, me.id));
  }

  /** The job at dueAt; harmless early or twice. */
  closeIfDue(g: MGroup) {
    if (g.dueAt <= this.now()) this.close(g);
  }

  deleteGroup(me: MUser, id: string): Expect {
    const a = this.access(me, id);
    if ('status' in a) return a;
    if (a.m?.role !== 'owner') return problem(403, 'not_group_owner');
    this.deleteGroupRows(a.g);
    return ok(204);
  }

  // ------------------------------------------------------------------------------------------------
  // Chat
  // ------------------------------------------------------------------------------------------------

  conversation = (id: string) => this.conversations.find((c) => c.id === id);
  conversationOfGroup = (g: MGroup) => this.conversation(g.conversationId) as MConversation;
  directOf = (a: string, b: string) => this.conversations.find((c) => c.pairKey === pair(a, b));

  /** The one direct conversation of two friends: made by the first open, the same one after. */
  openDirect(me: MUser, other: MUser): Expect {
    if (!this.areFriends(me.id, other.id)) return problem(403, 'not_friends');
    const existing = this.directOf(me.id, other.id);
    return existing ? ok(200, { id: existing.id }) : ok(201, { kind: 'direct', lastSeq: 0 });
  }

  addDirect(id: string, a: string, b: string) {
    const member = () => ({ joinedAt: this.now(), fromSeq: 1, deliveredSeq: 0, readSeq: 0 });
    this.conversations.push({
      id,
      kind: 'direct',
      groupId: null,
      pairKey: pair(a, b),
      updatedAt: this.now(),
      lastSeq: 0,
      members: new Map([
        [a, member()],
        [b, member()],
      ]),
      messages: [],
    });
  }

  /**
   * Stored once per clientMessageId (a retry gets the stored message back); a direct conversation
   * carries messages only while the two are friends. Sending reads the conversation up to it.
   */
  send(me: MUser, id: string, clientMessageId: string, body: string): Expect & { store?: MConversation } {
    const c = this.conversation(id);
    if (!c?.members.has(me.id)) return problem(404, 'not_found');
    const earlier = c.messages.find((m) => m.senderId === me.id && m.clientMessageId === clientMessageId);
    if (earlier) {
      if (earlier.deletedAt === null && earlier.body !== body)
        return problem(409, 'client_message_id_reused');
      return ok(200, { id: earlier.id, seq: earlier.seq, body: earlier.body });
    }
    if (c.kind === 'direct') {
      const other = [...c.members.keys()].find((m) => m !== me.id);
      if (!other || !this.areFriends(me.id, other)) return problem(403, 'not_friends');
    }
    return { ...ok(201, { seq: c.lastSeq + 1, senderId: me.id, body, deletedAt: null }), store: c };
  }

  addMessage(c: MConversation, m: { id: string; senderId: string; clientMessageId: string; body: string }) {
    c.lastSeq += 1;
    c.updatedAt = this.now();
    c.messages.push({ ...m, seq: c.lastSeq, createdAt: this.now(), deletedAt: null });
    this.ever.messages.push({ conversationId: c.id, id: m.id });
    this.moveCursor(c, m.senderId, c.lastSeq);
  }

  /** Read implies delivered; cursors never move back and stop at the newest message. */
  private moveCursor(c: MConversation, userId: string, seq: number) {
    const cursor = c.members.get(userId);
    if (!cursor) return;
    const target = Math.min(seq, c.lastSeq);
    cursor.deliveredSeq = Math.max(cursor.deliveredSeq, target);
    cursor.readSeq = Math.max(cursor.readSeq, target);
  }

  read(me: MUser, id: string, seq: number): Expect {
    const c = this.conversation(id);
    const cursor = c?.members.get(me.id);
    if (!c || !cursor) return problem(404, 'not_found');
    this.moveCursor(c, me.id, seq);
    return ok(200, {
      conversationId: id,
      userId: me.id,
      deliveredSeq: cursor.deliveredSeq,
      readSeq: cursor.readSeq,
      unreadCount: this.unread(c, me.id),
    });
  }

  /** me: hidden for me only. everyone: the sender, within 24 h, leaves a tombstone for all. */
  deleteMessage(me: MUser, id: string, messageId: string, scope: 'me' | 'everyone'): Expect {
    const c = this.conversation(id);
    const cursor = c?.members.get(me.id);
    if (!c || !cursor) return problem(404, 'not_found');
    const m = c.messages.find((x) => x.id === messageId);
    if (!m || m.seq < cursor.fromSeq) return problem(404, 'not_found');
    if (scope === 'me') {
      this.hidden.add(`${me.id}:${m.id}`);
      return ok(204);
    }
    if (m.senderId !== me.id) return problem(403, 'not_sender');
    if (m.deletedAt !== null) return ok(204);
    if (this.now() - m.createdAt > DELETE_FOR_EVERYONE_MS) return problem(409, 'delete_window_passed');
    m.body = '';
    m.deletedAt = this.now();
    return ok(204);
  }

  private visibleTo(c: MConversation, userId: string) {
    const from = c.members.get(userId)?.fromSeq ?? Number.POSITIVE_INFINITY;
    return c.messages.filter((m) => m.seq >= from && !this.hidden.has(`${userId}:${m.id}`));
  }

  /** Others' messages after my read cursor that are neither deleted nor hidden by me. */
  unread(c: MConversation, userId: string): number {
    const readSeq = c.members.get(userId)?.readSeq ?? 0;
    return this.visibleTo(c, userId).filter(
      (m) => m.seq > readSeq && m.deletedAt === null && m.senderId !== userId,
    ).length;
  }

  // ------------------------------------------------------------------------------------------------
  // Account deletion
  // ------------------------------------------------------------------------------------------------

  /**
   * Everything of theirs goes: tasks, dailies, ledger, friendships, requests, blocks, invitations,
   * memberships (owned group tasks pass on or go); their messages stay as tombstones without a sender.
   */
  deleteAccount(u: MUser) {
    for (const g of this.groups.filter((x) => x.ownerId === u.id).sort((x, y) => (x.id < y.id ? -1 : 1)))
      this.drop(g, u.id);
    for (const g of this.groups) {
      g.members = g.members.filter((m) => m.userId !== u.id);
    }
    for (const c of this.conversations) {
      c.members.delete(u.id);
      for (const m of c.messages) {
        if (m.senderId !== u.id) continue;
        m.senderId = null;
        m.clientMessageId = null;
        m.body = '';
        m.deletedAt ??= this.now();
      }
      if (c.kind === 'direct' && c.pairKey?.includes(u.id)) c.pairKey = null;
    }
    this.requests = this.requests.filter((r) => r.from !== u.id && r.to !== u.id);
    for (const f of [...this.friendships]) if (f.includes(u.id)) this.friendships.delete(f);
    for (const b of [...this.blocks.keys()]) if (b.includes(u.id)) this.blocks.delete(b);
    this.invitations = this.invitations.filter((i) => i.from !== u.id && i.to !== u.id);
    u.alive = false;
    u.tasks = [];
    u.dailies = [];
    u.ledger.clear();
    u.boardPeriods.clear();
  }

  // ------------------------------------------------------------------------------------------------
  // Views: what each read must show, in the test's projection of the API's answer.
  // ------------------------------------------------------------------------------------------------

  tasksView(u: MUser) {
    return [...u.tasks]
      .sort(byTimeThenId((x) => x.createdAt))
      .map((x) => ({ id: x.id, status: x.status, completedOn: x.completedOn }));
  }

  /** Dates the user's overall streak spent a freeze on: closed ones, and open ones as a read folds them. */
  private frozenDates(u: MUser): Set<LocalDate> {
    const frozen = new Set([...u.closedDays].filter(([, o]) => o === 'frozen').map(([d]) => d));
    for (const day of this.openDays(u).days) if (day.outcome === 'frozen') frozen.add(day.date);
    return frozen;
  }

  /** A daily's streak: due days done (late counts) in a row; not due, frozen and today are neutral. */
  dailyStreak(u: MUser, d: MDaily) {
    const today = this.today(u);
    const frozen = this.frozenDates(u);
    let current = 0;
    let longest = 0;
    for (const date of dates(d.createdOn, today)) {
      if (!d.weekdays.includes(weekdayOf(date))) continue;
      if (d.checkIns.has(date)) longest = Math.max(longest, ++current);
      else if (date !== today && !frozen.has(date)) current = 0;
    }
    return { current, longest };
  }

  /** Each day of a daily from its first to today: done, late, missed, not_due, frozen or pending. */
  historyView(u: MUser, d: MDaily) {
    const today = this.today(u);
    const frozen = this.frozenDates(u);
    return [...dates(d.createdOn, today)].map((date) => ({
      date,
      state: !d.weekdays.includes(weekdayOf(date))
        ? 'not_due'
        : d.checkIns.has(date)
          ? d.checkIns.get(date)
            ? 'late'
            : 'done'
          : date === today
            ? 'pending'
            : frozen.has(date)
              ? 'frozen'
              : 'missed',
    }));
  }

  dailiesView(u: MUser) {
    const today = this.today(u);
    return u.dailies
      .filter((d) => !d.deleted)
      .sort(byTimeThenId((d) => d.createdAt))
      .map((d) => ({
        id: d.id,
        weekdays: d.weekdays,
        createdOn: d.createdOn,
        dueToday: d.weekdays.includes(weekdayOf(today)) && d.createdOn <= today,
        doneToday: d.checkIns.has(today),
        streak: this.dailyStreak(u, d),
      }));
  }

  statsView(u: MUser) {
    const today = this.today(u);
    const { streak, days } = this.openDays(u);
    const done = this.completed(u, today);
    const todayMet = done >= Math.max(1, u.goal);
    const shown = todayMet ? closeDay(streak, done, u.goal).streak : streak;
    const count = (source: string) => [...u.ledger.keys()].filter((k) => k.startsWith(`${source}:`)).length;
    return {
      currentStreak: shown.current,
      longestStreak: shown.longest,
      streakFreezes: shown.freezes,
      score: this.score(u),
      today: { date: today, done, goal: u.goal },
      weeklyProgress: [6, 5, 4, 3, 2, 1, 0].map((n) => {
        const date = addDays(today, -n);
        return { date, completed: this.completed(u, date) };
      }),
      totals: {
        tasksCompleted: u.tasks.filter(
          (x) =>
            x.status === 'done' &&
            (x.completedOn as string) >= u.firstDay &&
            (x.completedOn as string) <= today,
        ).length,
        dailyCheckIns: u.dailies.reduce((n, d) => n + d.checkIns.size, 0),
        perfectDays: count('perfect_day'),
        daysMet:
          [...u.closedDays.values()].filter((o) => o === 'met').length +
          days.filter((d) => d.outcome === 'met').length +
          (todayMet ? 1 : 0),
      },
    };
  }

  friendsOf = (u: MUser) => this.alive().filter((v) => v !== u && this.areFriends(u.id, v.id));

  friendsView(u: MUser) {
    return this.friendsOf(u)
      .sort((x, y) => (x.username.toLowerCase() < y.username.toLowerCase() ? -1 : 1))
      .map((v) => ({ id: v.id, online: false, currentStreak: this.statsView(v).currentStreak }));
  }

  requestsView(u: MUser, direction: 'incoming' | 'outgoing') {
    return this.requests
      .filter((r) => r.status === 'pending' && (direction === 'incoming' ? r.to : r.from) === u.id)
      .sort(newestFirst((r) => r.createdAt))
      .map((r) => ({ id: r.id, fromUserId: r.from, toUserId: r.to, status: r.status }));
  }

  blocksView(u: MUser) {
    return [...this.blocks]
      .filter(([k]) => k.startsWith(`${u.id}>`))
      .map(([k, at]) => ({ id: k.slice(u.id.length + 1), at }))
      .sort(newestFirst((b) => b.at))
      .map((b) => b.id);
  }

  groupsView(u: MUser) {
    return this.groups
      .filter((g) => this.member(g, u.id))
      .sort(newestFirst((g) => g.createdAt))
      .map((g) => this.groupView(g, u.id));
  }

  invitationsView(u: MUser) {
    return this.invitations
      .filter((i) => i.to === u.id && i.status === 'pending')
      .sort(newestFirst((i) => i.createdAt))
      .map((i) => ({ id: i.id, groupTaskId: i.groupId, fromUserId: i.from, status: i.status }));
  }

  /** Joined order, or ranks first (in rank order) then those not done, each by joining. */
  membersView(g: MGroup, order: 'joined' | 'rank') {
    const joined = (x: MMember, y: MMember) => x.joinedAt - y.joinedAt || (x.userId < y.userId ? -1 : 1);
    const byRank = (x: MMember, y: MMember) =>
      (x.rank ?? Number.POSITIVE_INFINITY) - (y.rank ?? Number.POSITIVE_INFINITY) || joined(x, y);
    return [...g.members]
      .sort(order === 'joined' ? joined : byRank)
      .map((m) => ({ userId: m.userId, role: m.role, rank: m.rank, completedAt: iso(m.completedAt) }));
  }

  /** Me and my friends whose profile is not private, best first; equal scores share a rank. */
  boardView(u: MUser, period: 'all' | 'week') {
    const key = period === 'all' ? 'all' : isoWeek(this.now());
    const people = [u, ...this.friendsOf(u).filter((v) => v.visibility !== 'private')].filter((v) =>
      v.boardPeriods.has(key),
    );
    const rows = people
      .map((v) => ({ userId: v.id, score: this.score(v, period) }))
      .sort((x, y) => y.score - x.score || (x.userId < y.userId ? 1 : -1));
    const entries = rows.map((r) => ({
      rank: rows.findIndex((x) => x.score === r.score) + 1,
      userId: r.userId,
      score: r.score,
    }));
    const mine = entries.find((e) => e.userId === u.id);
    return { entries, me: { rank: mine?.rank ?? null, score: mine?.score ?? 0 } };
  }

  /** My conversations, newest activity first, with my unread count and the newest message I can see. */
  conversationsView(u: MUser) {
    return this.conversations
      .filter((c) => c.members.has(u.id))
      .sort(newestFirst((c) => c.updatedAt))
      .map((c) => {
        const visible = this.visibleTo(c, u.id);
        const other = [...c.members.keys()].find((m) => m !== u.id);
        return {
          id: c.id,
          kind: c.kind,
          groupTaskId: c.groupId,
          members: [...c.members]
            .sort(([a, x], [b, y]) => x.joinedAt - y.joinedAt || (a < b ? -1 : 1))
            .map(([userId, m]) => ({ userId, deliveredSeq: m.deliveredSeq, readSeq: m.readSeq })),
          memberCount: c.members.size,
          lastSeq: c.lastSeq,
          lastMessageId: visible[visible.length - 1]?.id ?? null,
          unreadCount: this.unread(c, u.id),
          canSend: c.kind === 'group' || (other !== undefined && this.areFriends(u.id, other)),
        };
      });
  }

  messagesView(c: MConversation, u: MUser) {
    return this.visibleTo(c, u.id).map((m) => ({
      id: m.id,
      seq: m.seq,
      senderId: m.senderId,
      clientMessageId: m.clientMessageId,
      body: m.body,
      deleted: m.deletedAt !== null,
    }));
  }

  /** A profile: 404 across a block; the full part to the owner, or by visibility. */
  profileView(viewer: MUser, u: MUser) {
    if (!u.alive || (viewer !== u && this.blocked(viewer.id, u.id))) return { status: 404 };
    const own = viewer === u;
    const isFriend = this.areFriends(viewer.id, u.id);
    const pending = this.pendingBetween(viewer.id, u.id);
    const full = own || u.visibility === 'public' || (u.visibility === 'friends' && isFriend);
    const stats = full ? this.statsView(u) : undefined;
    return {
      status: 200,
      id: u.id,
      relationship: own
        ? null
        : { isFriend, request: pending ? (pending.from === viewer.id ? 'outgoing' : 'incoming') : null },
      score: stats?.score ?? null,
      currentStreak: stats?.currentStreak ?? null,
      longestStreak: stats?.longestStreak ?? null,
    };
  }
}
