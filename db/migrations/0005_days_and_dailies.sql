-- Day settings over time: a change of time zone or day start applies from the next logical day, so
-- every past day keeps the boundaries it had (see src/lib/day-history.ts).
CREATE TABLE day_settings (
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  effective_on   date NOT NULL,
  timezone       text NOT NULL,
  day_start_hour smallint NOT NULL CHECK (day_start_hour BETWEEN 0 AND 23),
  PRIMARY KEY (user_id, effective_on)
);
INSERT INTO day_settings (user_id, effective_on, timezone, day_start_hour)
  SELECT id, (created_at AT TIME ZONE timezone)::date, timezone, day_start_hour FROM users;

-- Dailies repeat on ISO weekdays; deleting one hides it (deleted_at) but keeps its history and points.
CREATE TABLE dailies (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title       text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  description text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
  priority    text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
  weekdays    smallint[] NOT NULL CHECK (cardinality(weekdays) BETWEEN 1 AND 7 AND weekdays <@ ARRAY[1,2,3,4,5,6,7]::smallint[]),
  created_on  date NOT NULL,
  created_at  timestamptz NOT NULL,
  updated_at  timestamptz NOT NULL,
  deleted_at  timestamptz
);
CREATE INDEX dailies_user_idx ON dailies (user_id, created_at, id) WHERE deleted_at IS NULL;

-- One check-in per daily and logical day: the primary key makes concurrent check-ins collapse to one.
CREATE TABLE daily_check_ins (
  daily_id   uuid NOT NULL REFERENCES dailies (id) ON DELETE CASCADE,
  user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  date       date NOT NULL,
  late       boolean NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (daily_id, date)
);
CREATE INDEX daily_check_ins_user_date_idx ON daily_check_ins (user_id, date);

-- Closed days as the rollover saw them, and the overall streak state after the last closed day, so
-- closing a day costs O(1) however long the user was away.
CREATE TABLE day_summaries (
  user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  date      date NOT NULL,
  completed integer NOT NULL CHECK (completed >= 0),
  goal      integer NOT NULL CHECK (goal >= 1),
  outcome   text NOT NULL CHECK (outcome IN ('met', 'frozen', 'missed')),
  PRIMARY KEY (user_id, date)
);

CREATE TABLE overall_streaks (
  user_id          uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  state            jsonb NOT NULL,
  last_closed_date date,
  updated_at       timestamptz NOT NULL
);
