-- Notifications: what happened to a user that they should hear about (a friend request, an
-- invitation, a rank...), kept so every device can list them and count the unread ones. A row is
-- written in the transaction of the event that causes it, so it exists exactly when the event
-- committed; the live `notification:new` push follows the commit.
--
-- data is small: ids and display names only, never the title of a personal task. The only user it
-- may name is actor_id (who caused it), so deleting an account takes every notification about that
-- person with it (G1), as well as the account's own.
--
-- The kinds are fixed here, including those later features will write, so adding their producers
-- needs no migration.
CREATE TABLE notifications (
  id          uuid PRIMARY KEY,
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind        text NOT NULL CHECK (kind IN (
                'friend_request', 'friend_accepted',
                'group_invitation', 'group_rank', 'group_member_completed', 'group_closed',
                'badge', 'maa', 'streak', 'leaderboard', 'system')),
  actor_id    uuid REFERENCES users (id) ON DELETE CASCADE,
  data        jsonb NOT NULL CHECK (jsonb_typeof(data) = 'object' AND length(data::text) <= 2000),
  created_at  timestamptz NOT NULL,
  read_at     timestamptz,
  CHECK (actor_id IS DISTINCT FROM user_id)
);
-- My notifications newest first (keyset on created_at, id), and the per-user cap of the prune.
CREATE INDEX notifications_user_created_idx ON notifications (user_id, created_at DESC, id DESC);
-- My unread ones: the unread filter of the list, the unread count and "mark all read".
CREATE INDEX notifications_unread_idx ON notifications (user_id, created_at DESC, id DESC)
  WHERE read_at IS NULL;
-- Account deletion of an actor (the cascade) and a block (what the blocked person caused me).
CREATE INDEX notifications_actor_idx ON notifications (actor_id, user_id) WHERE actor_id IS NOT NULL;
-- The prune by age.
CREATE INDEX notifications_created_idx ON notifications (created_at);
