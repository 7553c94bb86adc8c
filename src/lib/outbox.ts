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
  /** Relays at an interval, for rows whose writer died before relaying them (worker role). */
  startSweeper(everyMs: number): void;
  close(): Promise<void>;
}

const BATCH = 100;
const KEEP_SENT_MS = 7 * 24 * 3600_000;

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
      const errors = await jobs.enqueueBatch(
        rows.map((row) => ({
          name: row.jobName,
          payload: row.payload,
          opts: {
            jobId: `outbox-${row.id}`,
            delayMs: Math.max(0, row.availableAt.getTime() - now.getTime()),
          },
        })),
        tx,
      );
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
    startSweeper(everyMs) {
      if (sweeper || closed) return;
      sweeper = setInterval(relaySoon, everyMs);
      relaySoon();
    },
    async close() {
      closed = true;
      clearInterval(sweeper);
      await relaying?.catch(() => 0);
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
