-- Platform tables: the outbox (side effects written in the same transaction as the change) and the
-- embedded job queue (used when REDIS_URL is unset; BullMQ replaces it otherwise).

CREATE TABLE outbox (
  id           uuid PRIMARY KEY,
  job_name     text NOT NULL,
  payload      jsonb NOT NULL,
  available_at timestamptz NOT NULL,
  created_at   timestamptz NOT NULL,
  sent_at      timestamptz
);
-- The relay only ever scans what is still to be sent.
CREATE INDEX outbox_pending_idx ON outbox (available_at) WHERE sent_at IS NULL;

CREATE TABLE local_jobs (
  id            text PRIMARY KEY,
  name          text NOT NULL,
  payload       jsonb NOT NULL,
  state         text NOT NULL CHECK (state IN ('waiting', 'active', 'done', 'failed')),
  run_at        timestamptz NOT NULL,
  attempts_made integer NOT NULL DEFAULT 0,
  max_attempts  integer NOT NULL,
  backoff_ms    integer NOT NULL,
  last_error    text,
  created_at    timestamptz NOT NULL,
  finished_at   timestamptz
);
CREATE INDEX local_jobs_due_idx ON local_jobs (run_at) WHERE state = 'waiting';
CREATE INDEX local_jobs_finished_idx ON local_jobs (finished_at) WHERE state IN ('done', 'failed');
