-- When the welcome email went out: the welcome task checks it first, so a redelivered
-- task doesn't greet the same person twice.
ALTER TABLE users ADD COLUMN welcome_sent_at timestamptz;
