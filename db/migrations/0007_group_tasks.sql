-- Group tasks: races among friends. A group task has an owner, members (the owner is one), pending
-- and answered invitations, and a group conversation whose members follow the group's, changed in
-- the same transactions.
--
-- Deleting an account: memberships, invitations and conversation memberships cascade. A group task
-- the account owns is handed to its earliest other member, or deleted when it has none, by the
-- account deletion itself (groups service, releaseOwned) before the user row goes; owner_id is
-- RESTRICT so that step cannot be forgotten silently.
CREATE TABLE group_tasks (
  id           uuid PRIMARY KEY,
  owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
  title        text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 200),
  description  text NOT NULL DEFAULT '',
  visibility   text NOT NULL CHECK (visibility IN ('public', 'private')),
  priority     text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
  due_at       timestamptz NOT NULL,
  status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
  closed_at    timestamptz,
  created_at   timestamptz NOT NULL,
  updated_at   timestamptz NOT NULL,
  CHECK ((status = 'closed') = (closed_at IS NOT NULL))
);
-- Public discovery (open public tasks, newest first) and the owner's deletion step.
CREATE INDEX group_tasks_public_idx ON group_tasks (created_at, id) WHERE visibility = 'public' AND status = 'open';
CREATE INDEX group_tasks_owner_idx ON group_tasks (owner_id);

-- rank is the completion order, given under the group row's lock; unique per group.
CREATE TABLE group_members (
  group_task_id  uuid NOT NULL REFERENCES group_tasks (id) ON DELETE CASCADE,
  user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role           text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
  joined_at      timestamptz NOT NULL,
  completed_at   timestamptz,
  rank           integer CHECK (rank > 0),
  PRIMARY KEY (group_task_id, user_id),
  UNIQUE (group_task_id, rank),
  CHECK ((rank IS NULL) = (completed_at IS NULL))
);
-- "My group tasks" and the socket rooms of a user.
CREATE INDEX group_members_user_idx ON group_members (user_id, group_task_id);

CREATE TABLE group_invitations (
  id             uuid PRIMARY KEY,
  group_task_id  uuid NOT NULL REFERENCES group_tasks (id) ON DELETE CASCADE,
  from_user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  to_user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  status         text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'accepted', 'declined', 'cancelled')),
  created_at     timestamptz NOT NULL,
  responded_at   timestamptz,
  CHECK (from_user_id <> to_user_id),
  CHECK ((status = 'pending') = (responded_at IS NULL))
);
-- At most one pending invitation per person per group task.
CREATE UNIQUE INDEX group_invitations_pending_key ON group_invitations (group_task_id, to_user_id)
  WHERE status = 'pending';
CREATE INDEX group_invitations_incoming_idx ON group_invitations (to_user_id, created_at, id)
  WHERE status = 'pending';
CREATE INDEX group_invitations_from_idx ON group_invitations (from_user_id);

-- Conversations (chat builds on them). For now only the group kind, one per group task.
CREATE TABLE conversations (
  id             uuid PRIMARY KEY,
  kind           text NOT NULL CHECK (kind IN ('group')),
  group_task_id  uuid UNIQUE REFERENCES group_tasks (id) ON DELETE CASCADE,
  created_at     timestamptz NOT NULL,
  CHECK ((kind = 'group') = (group_task_id IS NOT NULL))
);

CREATE TABLE conversation_members (
  conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
  user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  joined_at        timestamptz NOT NULL,
  PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user_idx ON conversation_members (user_id, conversation_id);
