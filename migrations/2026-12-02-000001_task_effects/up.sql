-- Effects outside the database (an email, a webhook) that a task starts, by task id
-- (`keel_core::tasks::Effect`). A row is written before the effect and committed on
-- its own, so a redelivered or duplicated task finds it and doesn't start the effect
-- again, whatever happened to the first run; `finished_at` and `failed` record how it
-- ended. A row started long ago and never finished is an effect whose outcome nobody
-- saw (a crash, a cancelled run, the database lost just then): it is not repeated, and
-- the task retries until it is dead-lettered, so someone looks.
CREATE TABLE task_effects (
    task_id     uuid PRIMARY KEY,
    task        text NOT NULL CHECK (length(task) BETWEEN 1 AND 120),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- Refused for good (a permanent error): finished, but not done.
    failed      boolean NOT NULL DEFAULT false
);
CREATE INDEX task_effects_started_at_idx ON task_effects (started_at);
