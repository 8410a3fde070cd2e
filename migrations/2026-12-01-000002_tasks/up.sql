-- keel-core's task pipeline: the outbox, the periodic scheduler's ticks and the done list.

-- Tasks enqueued in a business transaction, waiting for the relay to hand them to the
-- broker (or to this process's runner without one). A row commits or rolls back with
-- the change that enqueued it; the relay deletes it once the broker has confirmed it.
CREATE TABLE task_outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     uuid NOT NULL UNIQUE,
    task        text NOT NULL CHECK (length(task) BETWEEN 1 AND 120),
    queue       text NOT NULL CHECK (length(queue) BETWEEN 1 AND 120),
    payload     jsonb NOT NULL,
    enqueued_at timestamptz NOT NULL DEFAULT now()
);

-- The relay wakes on the change feed (`keel_notify_change`, sent at commit) instead of
-- waiting for its next poll.
CREATE TRIGGER task_outbox_notify_change
    AFTER INSERT ON task_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION keel_notify_change();

-- The last tick each periodic job was enqueued for. Schedulers (one per worker) lock a
-- job's row while they enqueue its due ticks into the outbox in the same transaction,
-- so each tick is enqueued once however many schedulers run.
CREATE TABLE periodic_ticks (
    job       text PRIMARY KEY CHECK (length(job) BETWEEN 1 AND 120),
    last_tick timestamptz NOT NULL
);

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
