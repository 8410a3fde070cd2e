-- An outbox row the broker keeps refusing (a queue declared elsewhere with other
-- arguments, a message it won't route) is set aside after a few failed publishes
-- instead of holding up every row behind it: recorded here, with the last error, and
-- counted in `task_outbox_dead_lettered_total`. Re-insert a row into `task_outbox` to
-- publish it again once the cause is fixed.
ALTER TABLE task_outbox
    ADD COLUMN publish_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text;

CREATE TABLE task_outbox_dead (
    id               bigint PRIMARY KEY,
    task_id          uuid NOT NULL UNIQUE,
    task             text NOT NULL,
    queue            text NOT NULL,
    payload          jsonb NOT NULL,
    enqueued_at      timestamptz NOT NULL,
    publish_failures integer NOT NULL,
    last_error       text NOT NULL,
    dead_at          timestamptz NOT NULL DEFAULT now()
);
