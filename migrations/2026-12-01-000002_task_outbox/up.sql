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
