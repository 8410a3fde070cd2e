-- The last tick each periodic job was enqueued for. Schedulers (one per worker) lock a
-- job's row while they enqueue its due ticks into the outbox in the same transaction,
-- so each tick is enqueued once however many schedulers run.
CREATE TABLE periodic_ticks (
    job       text PRIMARY KEY CHECK (length(job) BETWEEN 1 AND 120),
    last_tick timestamptz NOT NULL
);
