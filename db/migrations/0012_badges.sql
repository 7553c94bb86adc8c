-- Badges: one row per badge a user earned, awarded once by the badges job (the primary key makes a
-- retried or racing award a no-op). The catalogue itself lives in code (badges.catalogue.ts).
CREATE TABLE user_badges (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code        text NOT NULL CHECK (code ~ '^[a-z0-9_]{1,40}$'),
  awarded_at  timestamptz NOT NULL,
  PRIMARY KEY (user_id, code)
);

-- Activity friends were told about, so each is told once however often the job that noticed it runs
-- (e.g. 'goal:2026-11-27'). Kept a week; deleting the account takes them.
CREATE TABLE activity_marks (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  mark        text NOT NULL CHECK (char_length(mark) <= 100),
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (user_id, mark)
);
CREATE INDEX activity_marks_created_idx ON activity_marks (created_at);
