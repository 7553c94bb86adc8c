-- When the mail carrying this token went out. A mail job runs again when its completion was lost (a
-- worker stopped after sending, or Redis lost the queue and the outbox relayed it again): the mark
-- makes that run send nothing, instead of a second copy of the mail.
ALTER TABLE mail_tokens ADD COLUMN mailed_at timestamptz;
