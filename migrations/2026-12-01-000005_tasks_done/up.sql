-- Tasks whose effects are committed, by task id. A handler that writes to the database
-- claims its task id in the same transaction (`TaskContext::claim`): a redelivered or
-- duplicated task then finds it claimed and does nothing. `system.purge_tasks_done`
-- deletes rows older than a week (redeliveries come within hours).
CREATE TABLE tasks_done (
    task_id uuid PRIMARY KEY,
    task    text NOT NULL,
    done_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_done_done_at_idx ON tasks_done (done_at);
