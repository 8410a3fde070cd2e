-- The audit trail (keel-activity): append-only, enforced here, and chained by seals.

CREATE TABLE activity_entries (
    -- Order of insertion; pages and seals follow it (see tx_id for commit finality).
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The inserting transaction. Once every transaction older than the oldest one still
    -- running has ended, no entry can appear below that point: the sealer seals up to it.
    tx_id       bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- Null for anonymous or system actions; the email is a snapshot, kept when the
    -- account changes or goes.
    actor_id    uuid,
    actor_email text CHECK (length(actor_email) <= 254),
    action      text NOT NULL CHECK (action ~ '^[a-z][a-z_]*\.[a-z][a-z_]*$'),
    entity_type text NOT NULL CHECK (entity_type ~ '^[a-z][a-z_]*$'),
    entity_id   text CHECK (length(entity_id) <= 200),
    summary     text NOT NULL CHECK (length(summary) <= 1000),
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    request_id  text CHECK (length(request_id) <= 128),
    ip          text CHECK (length(ip) <= 45),
    user_agent  text CHECK (length(user_agent) <= 512),
    -- The summary's words, for `search` (derived, so not part of the sealed content).
    summary_words tsvector GENERATED ALWAYS AS (to_tsvector('simple', summary)) STORED
);
-- Readers page newest first by (occurred_at, id); each filter has an index ending in
-- those two, so a page at any depth, with or without a time window, is a range scan.
CREATE INDEX activity_entries_occurred_idx ON activity_entries (occurred_at, id);
CREATE INDEX activity_entries_actor_idx ON activity_entries (actor_id, occurred_at, id);
CREATE INDEX activity_entries_action_idx ON activity_entries (action, occurred_at, id);
CREATE INDEX activity_entries_entity_idx
    ON activity_entries (entity_type, entity_id, occurred_at, id);
-- The sealer's frontier scan.
CREATE INDEX activity_entries_tx_idx ON activity_entries (tx_id, id);
CREATE INDEX activity_entries_summary_words ON activity_entries USING gin (summary_words);

-- The hash chain: seal N covers entry `entry_id` and seal N-1, so changing or removing
-- any sealed entry or seal breaks every later link. Its own table, so sealing never
-- needs the UPDATE the entries table refuses.
CREATE TABLE activity_seals (
    position  bigint PRIMARY KEY CHECK (position >= 1),
    entry_id  bigint NOT NULL UNIQUE REFERENCES activity_entries (id),
    hash      bytea NOT NULL CHECK (length(hash) = 32),
    sealed_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION keel_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The audit trail is never changed; see docs/activity.md for retention.';
END;
$$;

CREATE TRIGGER activity_entries_append_only
    BEFORE UPDATE OR DELETE ON activity_entries
    FOR EACH ROW EXECUTE FUNCTION keel_refuse_change();
CREATE TRIGGER activity_entries_no_truncate
    BEFORE TRUNCATE ON activity_entries
    FOR EACH STATEMENT EXECUTE FUNCTION keel_refuse_change();
CREATE TRIGGER activity_seals_append_only
    BEFORE UPDATE OR DELETE ON activity_seals
    FOR EACH ROW EXECUTE FUNCTION keel_refuse_change();
CREATE TRIGGER activity_seals_no_truncate
    BEFORE TRUNCATE ON activity_seals
    FOR EACH STATEMENT EXECUTE FUNCTION keel_refuse_change();
