-- People: friend requests, friendships and blocks, and the indexes behind user search. Every
-- reference to a user cascades: deleting an account takes its requests, friendships and blocks
-- (both the blocks it made and those made against it) with it.

-- A request lives on after it is answered (accepted, declined, or cancelled by its sender or by a
-- block), so answering twice is harmless. At most one is pending per pair of people, whichever of the
-- two sent it: two people asking each other at once cannot both succeed (the second one accepts).
CREATE TABLE friend_requests (
  id            uuid PRIMARY KEY,
  from_user_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  to_user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  status        text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'declined', 'cancelled')),
  created_at    timestamptz NOT NULL,
  responded_at  timestamptz,
  CHECK (from_user_id <> to_user_id),
  CHECK ((status = 'pending') = (responded_at IS NULL))
);
CREATE UNIQUE INDEX friend_requests_pending_pair_key
  ON friend_requests (least(from_user_id, to_user_id), greatest(from_user_id, to_user_id))
  WHERE status = 'pending';
-- Incoming and outgoing lists, newest first, one index range each.
CREATE INDEX friend_requests_incoming_idx ON friend_requests (to_user_id, created_at, id) WHERE status = 'pending';
CREATE INDEX friend_requests_outgoing_idx ON friend_requests (from_user_id, created_at, id) WHERE status = 'pending';

-- A friendship is one row per pair, the smaller id first, so a pair cannot be friends twice.
CREATE TABLE friendships (
  user_a      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  user_b      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (user_a, user_b),
  CHECK (user_a < user_b)
);
-- The primary key serves "friends of X" through user_a; this serves it through user_b.
CREATE INDEX friendships_user_b_idx ON friendships (user_b, user_a);

-- One row per direction: two people may block each other, and each block is undone separately.
CREATE TABLE blocks (
  blocker_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  blocked_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL,
  PRIMARY KEY (blocker_id, blocked_id),
  CHECK (blocker_id <> blocked_id)
);
-- "Who blocked me" (search and profile filters) and my block list, newest first.
CREATE INDEX blocks_blocked_idx ON blocks (blocked_id, blocker_id);
CREATE INDEX blocks_blocker_created_idx ON blocks (blocker_id, created_at, blocked_id);

-- Search: prefix matches on username and name ignoring case, over discoverable users only. The
-- expressions are in the "C" collation, whatever the database's: a btree in "C" serves both a LIKE
-- 'prefix%' (as a range) and the keyset order of the results, which a text_pattern_ops index could
-- not do for the order. Queries must repeat exactly these expressions and the WHERE.
CREATE INDEX users_search_username_idx ON users ((lower(username) COLLATE "C")) WHERE discoverable;
CREATE INDEX users_search_name_idx ON users ((lower(name) COLLATE "C"), id) WHERE discoverable;
