-- Personal tasks. A task belongs to one user and is private to them; deleting the user deletes their
-- tasks. Points earned by completing a task live in score_events and outlive the task.
CREATE TABLE tasks (
  id            uuid PRIMARY KEY,
  user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  description   text NOT NULL DEFAULT '' CHECK (length(description) <= 5000),
  priority      text NOT NULL DEFAULT 'medium' CHECK (priority IN ('low', 'medium', 'high')),
  -- 1 = high, 2 = medium, 3 = low: ascending order is the priority sort.
  priority_rank smallint GENERATED ALWAYS AS (
                  CASE priority WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END
                ) STORED,
  due_at        timestamptz,
  tags          text[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 10),
  status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'done')),
  completed_at  timestamptz,
  -- The owner's logical date at completion.
  completed_on  date,
  created_at    timestamptz NOT NULL,
  updated_at    timestamptz NOT NULL,
  CHECK ((status = 'done') = (completed_at IS NOT NULL)),
  CHECK ((completed_at IS NULL) = (completed_on IS NULL))
);

-- One index per list order, each led by (user_id, status) so a page of open (or done) tasks is a
-- range scan in the requested order with the cursor as its start key. status=all reads the user's
-- range of the same index and sorts it. Tasks without a due date sort last in both due orders, hence
-- one index per direction over the coalesced key. The leading user_id also serves the foreign key.
CREATE INDEX tasks_user_created_idx ON tasks (user_id, status, created_at, id);
CREATE INDEX tasks_user_due_asc_idx ON tasks (user_id, status, (coalesce(due_at, 'infinity'::timestamptz)), id);
CREATE INDEX tasks_user_due_desc_idx ON tasks (user_id, status, (coalesce(due_at, '-infinity'::timestamptz)), id);
CREATE INDEX tasks_user_priority_idx ON tasks (user_id, status, priority_rank, created_at, id);
-- Completions per logical day (the daily goal, weekly progress) read done tasks by date.
CREATE INDEX tasks_user_completed_on_idx ON tasks (user_id, completed_on) WHERE status = 'done';
