-- Idempotency keys: a retried mutation with the same key returns the first response. Written in the
-- same transaction as the change it protects, scoped per user, kept 24 hours.
CREATE TABLE idempotency_keys (
  user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key          text NOT NULL,
  request_hash text NOT NULL,
  status_code  integer NOT NULL,
  response     jsonb NOT NULL,
  created_at   timestamptz NOT NULL,
  PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- The score is a ledger: one row per thing that earned points, unique per source, so nothing can be
-- paid twice; the score is the sum and can never go negative.
CREATE TABLE score_events (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  source      text NOT NULL CHECK (source IN ('task_done', 'daily_done', 'perfect_day', 'group_rank', 'streak_milestone')),
  source_key  text NOT NULL,
  points      integer NOT NULL CHECK (points > 0),
  local_date  date NOT NULL,
  created_at  timestamptz NOT NULL,
  UNIQUE (user_id, source, source_key)
);
CREATE INDEX score_events_user_date_idx ON score_events (user_id, local_date);
