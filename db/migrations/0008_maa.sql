-- Maa's words: every line shown to a user, so she never repeats one within a week and the user can
-- read her history. Deleting an account takes its lines with it.
CREATE TABLE maa_messages (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  occasion    text NOT NULL,
  tone        text NOT NULL CHECK (tone IN ('gentle', 'balanced', 'strict')),
  locale      text NOT NULL CHECK (locale IN ('en', 'hi')),
  line_key    text NOT NULL,
  text        text NOT NULL,
  source      text NOT NULL CHECK (source IN ('template', 'llm')),
  created_at  timestamptz NOT NULL
);
-- History newest first (keyset on created_at, id) and "shown in the last 7 days" range scans.
CREATE INDEX maa_messages_user_created_idx ON maa_messages (user_id, created_at DESC, id DESC);
