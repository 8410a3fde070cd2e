-- An outbox row that can never be published (larger than a message may be, or refused
-- by the broker for what it is, 5 times) is set aside instead of holding up every row
-- behind it: recorded here with the reason, and counted in
-- `task_outbox_dead_lettered_total`. To publish it again once the cause is fixed, move
-- it back (docs/tasks.md). A queue the broker won't declare is no row's fault: nothing
-- is set aside for it, and the relay retries.
ALTER TABLE task_outbox
    ADD COLUMN publish_failures integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text;

CREATE TABLE task_outbox_dead (
    task_id          uuid PRIMARY KEY,
    id               bigint NOT NULL,
    task             text NOT NULL,
    queue            text NOT NULL,
    payload          jsonb NOT NULL,
    enqueued_at      timestamptz NOT NULL,
    publish_failures integer NOT NULL,
    last_error       text NOT NULL,
    dead_at          timestamptz NOT NULL DEFAULT now()
);
