import type { Logger } from 'pino';
import { uuidv7 } from 'uuidv7';
import type { Clock } from './clock.js';
import type { Db, Queryable } from './db.js';
import type { Jobs } from './jobs.js';

/**
 * Jobs that must not be lost are written as outbox rows in the same transaction as the change that
 * causes them, then relayed to the job queue. Each row becomes the job `outbox-<id>`, so relaying a
 * row twice (a crash between enqueue and marking it sent) is deduplicated by the queue.
 */
export interface Outbox {
  add(q: Queryable, jobName: string, payload: unknown, opts?: { delayMs?: number }): Promise<void>;
  /** Moves every unsent row to the queue; returns how many it moved. */
  relay(): Promise<number>;
  /**
   * When the queue lost its data (Redis flushed, restarted without persistence, failed over to an
   * empty replica; or never marked yet), relays again the rows it may have lost, then marks it.
   * Returns how many rows it relayed again, 0 when the queue is intact or another process repairs it.
   */
  redeliverIfLost(): Promise<number>;
  /**
   * Relays at an interval, for rows whose writer died before relaying them, and checks on each sweep
   * that the queue did not lose its data (worker role).
   */
  startSweeper(everyMs: number): void;
  close(): Promise<void>;
}

const BATCH = 100;
const KEEP_SENT_MS = 7 * 24 * 3600_000;

/**
 * F7: when the queue lost its data (see QueueEpoch), rows relayed this recently are relayed again,
 * with every row still due in the future (delayed jobs). Long enough for any job to have left the
 * queue: the longest retry chain (mail: 11 runs, 2 s doubling) takes about 35 minutes. No longer than
 * the queue keeps finished jobs (KEEP_DONE_MS in jobs.ts, 24 h): when the queue did not lose anything
 * after all (the first start of this code on a queue that kept its data, the mark deleted alone), every
 * job re-added is still known and deduplicated, so nothing runs twice. Well inside KEEP_SENT_MS, so pruning never takes a row the
 * repair may need.
 */
const REDELIVER_WINDOW_MS = 24 * 3600_000;
const REDELIVER_BATCH = 500;
/** A repairer that dies lets its claim run out after this; renewed after every batch. */
const REPAIR_LEASE_MS = 60_000;
const FIRST_ID = '00000000-0000-0000-0000-000000000000';

/** Outbox rows as the jobs they become: the row's id is the job's, so the queue adds each once. */
function asJobs(rows: { id: string; jobName: string; payload: unknown; availableAt: Date }[], now: Date) {
  return rows.map((row) => ({
    name: row.jobName,
    payload: row.payload,
    opts: {
      jobId: `outbox-${row.id}`,
      delayMs: Math.max(0, row.availableAt.getTime() - now.getTime()),
    },
  }));
}

/** The crash windows the fault tests hit (FAULT_POINT): after a writer's commit, after an enqueue. */
export type OutboxFaultPoint = 'outbox.after_commit' | 'outbox.after_enqueue';

export function makeOutbox(opts: {
  db: Db;
  jobs: Jobs;
  clock: Clock;
  log: Logger;
  faultPoint?: OutboxFaultPoint;
}): Outbox {
  const { db, jobs, clock, log } = opts;
  // A crash gives no chance to clean up, so the fault tests die here the way a power cut would.
  const crashAt = (point: OutboxFaultPoint) => {
    if (opts.faultPoint === point) process.kill(process.pid, 'SIGKILL');
  };
  let sweeper: NodeJS.Timeout | undefined;
  let relaying: Promise<number> | undefined;
  let again = false;
  let closed = false;

  /** `refused` collects, across one pass, the rows the queue will not take, so later batches skip them. */
  const relayBatch = (refused: Set<string>) =>
    db.tx(async (tx) => {
      const { rows } = await tx.query<{ id: string; jobName: string; payload: unknown; availableAt: Date }>(
        `SELECT id, job_name, payload, available_at FROM outbox
         WHERE sent_at IS NULL AND NOT (id = ANY($1::uuid[]))
         ORDER BY available_at, id LIMIT ${BATCH} FOR UPDATE SKIP LOCKED`,
        [[...refused]],
      );
      const now = clock.now();
      const sent: string[] = [];
      // A queue that is down fails the batch (it stays unsent). One row this process cannot enqueue
      // (a job another version defines, a bad payload) must not hold up the others; it stays unsent
      // too, for a process that knows the job, or for a person.
      const errors = await jobs.enqueueBatch(asJobs(rows, now), tx);
      for (const [i, row] of rows.entries()) {
        const err = errors[i];
        if (!err) {
          sent.push(row.id);
          continue;
        }
        refused.add(row.id);
        log.error(
          { err, outboxId: row.id, job: row.jobName },
          'outbox row refused by the job queue; left unsent',
        );
      }
      if (sent.length > 0) {
        crashAt('outbox.after_enqueue');
        await tx.query('UPDATE outbox SET sent_at = $2 WHERE id = ANY($1::uuid[])', [sent, now]);
      }
      return { seen: rows.length, sent: sent.length };
    });

  /**
   * One batch of the repair, in id order after `after`: rows relayed since `since` and rows due after
   * `dueAfter` go into the queue again (jobId dedup: a job the queue still has is left alone).
   * Unsent rows are locked too, FOR UPDATE without SKIP LOCKED: one a relay holds may have gone into
   * the queue just before the queue lost its data, and the relay marks it sent after this scan; so the
   * repair waits for that relay to commit and sees the row sent. Unsent rows are left to the relay
   * (it skips them while the repair holds them, and takes them on its next pass).
   */
  const redeliverBatch = (after: string, since: Date, dueAfter: Date) =>
    db.tx(async (tx) => {
      const { rows } = await tx.query<{
        id: string;
        jobName: string;
        payload: unknown;
        availableAt: Date;
        sentAt: Date | null;
      }>(
        `SELECT id, job_name, payload, available_at, sent_at FROM outbox
         WHERE id > $1 AND (sent_at IS NULL OR sent_at >= $2 OR available_at > $3)
         ORDER BY id LIMIT ${REDELIVER_BATCH} FOR UPDATE`,
        [after, since, dueAfter],
      );
      const sent = rows.filter((row) => row.sentAt);
      const now = clock.now();
      const errors = await jobs.enqueueBatch(asJobs(sent, now), tx);
      const refused = errors.filter(Boolean).length;
      if (refused > 0)
        log.warn({ refused }, 'outbox rows refused by the job queue while relaying them again');
      return { last: rows.at(-1)?.id, relayed: sent.length - refused };
    });

  const redeliver = async (token: string) => {
    const startedAt = clock.now();
    const since = new Date(startedAt.getTime() - REDELIVER_WINDOW_MS);
    log.warn(
      { since },
      'job queue has no outbox mark (first start, or Redis lost its data): relaying recent outbox rows again',
    );
    let after = FIRST_ID;
    let total = 0;
    for (;;) {
      // Stopping leaves the claim to run out; another worker then repairs from the start.
      if (closed) return total;
      const { last, relayed } = await redeliverBatch(after, since, startedAt);
      if (!last) break;
      after = last;
      total += relayed;
      if (!(await jobs.epoch.renew(token, REPAIR_LEASE_MS))) {
        log.warn(
          { relayed: total },
          'lost the outbox repair claim (Redis lost its data again?); repairing anew',
        );
        return total;
      }
    }
    const marked = await jobs.epoch.mark(token);
    log.info({ relayed: total, marked }, 'outbox rows relayed again after the job queue lost its data');
    return total;
  };

  let repairing: Promise<number> | undefined;
  let repairFailing = false;
  const redeliverIfLost = (): Promise<number> => {
    repairing ??= (async () => {
      if (closed) return 0;
      const token = await jobs.epoch.claim(REPAIR_LEASE_MS);
      return token ? await redeliver(token) : 0;
    })().finally(() => {
      repairing = undefined;
    });
    return repairing;
  };

  const relayAll = async () => {
    const refused = new Set<string>();
    let total = 0;
    for (;;) {
      const { seen, sent } = await relayBatch(refused);
      total += sent;
      if (seen < BATCH) return total;
    }
  };

  // One relay at a time per process; a kick during a relay runs one more pass afterwards.
  const relay = (): Promise<number> => {
    if (relaying) {
      again = true;
      return relaying;
    }
    relaying = (async () => {
      let total = 0;
      do {
        again = false;
        total += await relayAll();
      } while (again && !closed);
      return total;
    })().finally(() => {
      relaying = undefined;
    });
    return relaying;
  };

  /** Rows added in a transaction and not written yet, by transaction. */
  const unwritten = new WeakMap<Queryable, unknown[][]>();
  const insertRows = (q: Queryable, rows: unknown[][]) =>
    q.query(
      `INSERT INTO outbox (id, job_name, payload, available_at, created_at)
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::timestamptz[], $5::timestamptz[])`,
      [0, 1, 2, 3, 4].map((column) => rows.map((row) => row[column])),
    );

  const relaySoon = () => {
    if (closed) return;
    relay().catch((err) => log.warn({ err }, 'outbox relay failed; the sweeper will retry'));
  };

  const sweep = () => {
    if (closed) return;
    relaySoon();
    if (repairing) return;
    redeliverIfLost().then(
      () => {
        repairFailing = false;
      },
      // Once per outage: while Redis is down every sweep would say the same.
      (err) => {
        if (!repairFailing)
          log.warn({ err }, 'could not check the job queue for lost jobs; the sweeper will retry');
        repairFailing = true;
      },
    );
  };

  return {
    async add(q, jobName, payload, o = {}) {
      const now = clock.now();
      const row = [
        uuidv7(),
        jobName,
        JSON.stringify(payload),
        new Date(now.getTime() + (o.delayMs ?? 0)),
        now,
      ];
      // A transaction's rows (a completion adds several) go in one INSERT just before it commits.
      const pending = unwritten.get(q);
      if (pending) pending.push(row);
      else {
        unwritten.set(q, [row]);
        await q.beforeCommit(() => {
          const rows = unwritten.get(q) ?? [];
          unwritten.delete(q);
          return insertRows(q, rows);
        });
      }
      q.afterCommit(() => {
        crashAt('outbox.after_commit');
        relaySoon();
      });
    },
    relay,
    redeliverIfLost,
    startSweeper(everyMs) {
      if (sweeper || closed) return;
      sweeper = setInterval(sweep, everyMs);
      sweep();
    },
    async close() {
      closed = true;
      clearInterval(sweeper);
      await Promise.all([relaying?.catch(() => 0), repairing?.catch(() => 0)]);
    },
  };
}

/** Deletes relayed rows past keeping. */
export async function pruneOutbox(db: Queryable, now: Date): Promise<number> {
  const { rowCount } = await db.query('DELETE FROM outbox WHERE sent_at < $1', [
    new Date(now.getTime() - KEEP_SENT_MS),
  ]);
  return rowCount;
}
