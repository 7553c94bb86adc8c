-- Leaderboards: each user's score per period, kept in step with the score ledger in the same
-- transactions ('all', and each ISO week in UTC as 'IYYY-Www', the week of the ledger row's
-- created_at). The truth for every board: friends boards and embedded-mode global boards read it
-- directly; in production Redis sorted sets mirror the global boards. `version` grows with every
-- change (score or visibility), so mirror writes that arrive out of order cannot go backwards.
CREATE TABLE leaderboard_scores (
  period   text NOT NULL CHECK (period = 'all' OR period ~ '^[0-9]{4}-W[0-9]{2}$'),
  user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  score    integer NOT NULL,
  version  bigint NOT NULL DEFAULT 1,
  PRIMARY KEY (period, user_id)
);
-- Top of a board and "how many are above me", in the boards' order.
CREATE INDEX leaderboard_scores_rank_idx ON leaderboard_scores (period, score DESC, user_id DESC);
-- A user's rows (mirror sync, visibility changes).
CREATE INDEX leaderboard_scores_user_idx ON leaderboard_scores (user_id);

INSERT INTO leaderboard_scores (period, user_id, score)
  SELECT 'all', user_id, sum(points) FROM score_events GROUP BY user_id;
INSERT INTO leaderboard_scores (period, user_id, score)
  SELECT to_char(created_at AT TIME ZONE 'UTC', 'IYYY-"W"IW'), user_id, sum(points)
    FROM score_events GROUP BY 1, 2;
