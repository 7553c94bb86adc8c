-- Chat: direct conversations next to the group ones, messages with a gapless per-conversation seq,
-- per-member cursors (receipts, unread), "delete for me", media uploads and last-seen presence.
--
-- Deleting an account: the chat step (chat service, forgetUser) first erases the body, media and
-- client id of every message the user sent and marks it deleted, and clears the direct key of their
-- direct conversations; the user row then goes, sender_id becomes NULL (a "Deleted user" tombstone),
-- and memberships, hidden marks and media rows cascade (the files are purged by a job).

ALTER TABLE conversations DROP CONSTRAINT conversations_kind_check;
ALTER TABLE conversations DROP CONSTRAINT conversations_check;
ALTER TABLE conversations
  -- The two user ids, smaller first ('<a>:<b>'): one direct conversation per pair, by construction.
  ADD COLUMN direct_key  text UNIQUE,
  -- The seq of the newest message; the next one takes last_seq + 1 under this row's lock.
  ADD COLUMN last_seq    bigint NOT NULL DEFAULT 0,
  -- Newest activity (a message, or creation): the conversation list's order.
  ADD COLUMN updated_at  timestamptz;
UPDATE conversations SET updated_at = created_at;
ALTER TABLE conversations ALTER COLUMN updated_at SET NOT NULL;
ALTER TABLE conversations
  ADD CONSTRAINT conversations_kind_check CHECK (kind IN ('direct', 'group')),
  ADD CONSTRAINT conversations_group_check CHECK ((kind = 'group') = (group_task_id IS NOT NULL)),
  ADD CONSTRAINT conversations_direct_check CHECK (kind = 'direct' OR direct_key IS NULL),
  ADD CONSTRAINT conversations_last_seq_check CHECK (last_seq >= 0);

-- from_seq: the first message a member may see (someone joining a group sees it from their join on).
-- delivered_seq and read_seq only ever move forward; read implies delivered.
ALTER TABLE conversation_members
  ADD COLUMN from_seq       bigint NOT NULL DEFAULT 1,
  ADD COLUMN delivered_seq  bigint NOT NULL DEFAULT 0,
  ADD COLUMN read_seq       bigint NOT NULL DEFAULT 0,
  ADD CONSTRAINT conversation_members_cursors_check CHECK (0 <= read_seq AND read_seq <= delivered_seq);

-- An uploaded file. Ids are random (v4), never derived from time; the file lives under a
-- server-chosen storage key outside any public folder.
CREATE TABLE media (
  id           uuid PRIMARY KEY,
  owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  storage_key  text NOT NULL UNIQUE,
  mime         text NOT NULL CHECK (mime IN ('image/webp', 'image/gif', 'application/pdf')),
  bytes        integer NOT NULL CHECK (bytes > 0),
  width        integer,
  height       integer,
  created_at   timestamptz NOT NULL
);
-- Quota sums and the prune of files never attached, per owner and by age.
CREATE INDEX media_owner_idx ON media (owner_id, created_at);
CREATE INDEX media_created_idx ON media (created_at);

CREATE TABLE messages (
  id                 uuid PRIMARY KEY,
  conversation_id    uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  seq                bigint NOT NULL CHECK (seq > 0),
  sender_id          uuid REFERENCES users (id) ON DELETE SET NULL,
  client_message_id  text CHECK (char_length(client_message_id) BETWEEN 1 AND 64),
  body               text NOT NULL DEFAULT '' CHECK (char_length(body) <= 4000),
  media_id           uuid REFERENCES media (id) ON DELETE SET NULL,
  created_at         timestamptz NOT NULL,
  deleted_at         timestamptz,
  UNIQUE (conversation_id, seq),
  -- Exactly-once storage: a retried send finds the message it already stored.
  UNIQUE (conversation_id, sender_id, client_message_id),
  CHECK (deleted_at IS NOT NULL OR body <> '' OR media_id IS NOT NULL)
);
-- A file is attached to one message at most.
CREATE UNIQUE INDEX messages_media_key ON messages (media_id) WHERE media_id IS NOT NULL;
-- Account deletion's tombstoning and the export.
CREATE INDEX messages_sender_idx ON messages (sender_id) WHERE sender_id IS NOT NULL;

-- "Delete for me": the message stays for everyone else.
CREATE TABLE message_hidden (
  user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
  PRIMARY KEY (user_id, message_id)
);
CREATE INDEX message_hidden_message_idx ON message_hidden (message_id);

-- When a user's last connection closed (presence "last seen"); NULL while never seen.
ALTER TABLE users ADD COLUMN last_seen_at timestamptz;
