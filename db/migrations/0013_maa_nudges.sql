-- Maa speaking unprompted: one row per nudge claimed, per user, logical day and occasion. The
-- primary key makes each occasion at most once a day; the daily cap counts these rows under a
-- per-user lock. Kept two weeks; deleting the account takes them.
CREATE TABLE maa_nudges (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  local_date  date NOT NULL,
  occasion    text NOT NULL,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (user_id, local_date, occasion)
);
CREATE INDEX maa_nudges_created_idx ON maa_nudges (created_at);
