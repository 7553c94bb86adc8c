-- Accounts: users, sessions (one per sign-in, the family of its refresh tokens), refresh tokens and
-- single-use mail tokens (email verification, password reset). Tokens are stored only as hashes.

CREATE TABLE users (
  id                 uuid PRIMARY KEY,
  username           text NOT NULL CHECK (username ~ '^[A-Za-z0-9_.]{3,30}$'),
  email              text NOT NULL CHECK (length(email) <= 254),
  email_verified_at  timestamptz,
  password_hash      text NOT NULL,
  name               text NOT NULL DEFAULT '' CHECK (length(name) <= 60),
  about              text NOT NULL DEFAULT '' CHECK (length(about) <= 500),
  timezone           text NOT NULL DEFAULT 'UTC',
  day_start_hour     smallint NOT NULL DEFAULT 0 CHECK (day_start_hour BETWEEN 0 AND 23),
  daily_goal         smallint NOT NULL DEFAULT 1 CHECK (daily_goal BETWEEN 1 AND 50),
  profile_visibility text NOT NULL DEFAULT 'friends' CHECK (profile_visibility IN ('public', 'friends', 'private')),
  discoverable       boolean NOT NULL DEFAULT true,
  maa_tone           text NOT NULL DEFAULT 'balanced' CHECK (maa_tone IN ('gentle', 'balanced', 'strict')),
  locale             text NOT NULL DEFAULT 'en' CHECK (locale IN ('en', 'hi')),
  quiet_hours        jsonb,
  avatar_key         text,
  created_at         timestamptz NOT NULL,
  updated_at         timestamptz NOT NULL
);
-- Usernames and emails are unique ignoring case; lookups use the same expressions.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));

CREATE TABLE sessions (
  id             uuid PRIMARY KEY,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  user_agent     text NOT NULL DEFAULT '',
  ip             text NOT NULL DEFAULT '',
  created_at     timestamptz NOT NULL,
  last_used_at   timestamptz NOT NULL,
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  revoked_reason text
);
CREATE INDEX sessions_user_active_idx ON sessions (user_id, created_at DESC) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
  token_hash  text PRIMARY KEY,
  session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL,
  rotated_at  timestamptz
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE mail_tokens (
  token_hash  text PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose     text NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  used_at     timestamptz
);
CREATE INDEX mail_tokens_user_idx ON mail_tokens (user_id, purpose);
