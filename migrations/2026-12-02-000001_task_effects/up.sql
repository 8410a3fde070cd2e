-- Effects outside the database (an email, a webhook) that a task starts, by task id
-- (`keel_core::tasks::Effect`). A row is written before the effect and committed on
-- its own, so a redelivered or duplicated task finds it and doesn't start the effect
-- again while the run that started it may be alive; `finished_at` and `failed` record
-- how it ended. A row started longer ago than the task's timeout and never finished
-- belongs to a run that died mid-way: the next run takes it over (moves `started_at`)
-- and starts the effect again, under the same id.
CREATE TABLE task_effects (
    task_id     uuid PRIMARY KEY,
    task        text NOT NULL CHECK (length(task) BETWEEN 1 AND 120),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- Refused for good (a permanent error): finished, but not done.
    failed      boolean NOT NULL DEFAULT false
);
CREATE INDEX task_effects_started_at_idx ON task_effects (started_at);
