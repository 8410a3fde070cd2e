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

-- Word search over the audit trail in page order.
--
-- The GIN index on `summary_words` finds an entry's words in no particular order, so a
-- page of a search would read and sort every match older than its cursor. This table
-- holds the same words as postings sorted by (word, occurred_at, entry_id): each word's
-- entries, newest first, seekable at any cursor, so `keel_activity_search` can walk the
-- sparsest of the searched lists in page order and stop when the page is full.

CREATE TABLE activity_words (
    word        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    -- No foreign key: postings are written with their entry by the trigger below, and a
    -- key check per posting would lock each new entry once per word.
    entry_id    bigint NOT NULL,
    PRIMARY KEY (word, occurred_at, entry_id)
);

-- Filled in the inserting statement, so the postings commit or roll back with their
-- entries; one statement-level trigger per INSERT, not one call per row.
CREATE FUNCTION keel_activity_index_words() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO activity_words (word, occurred_at, entry_id)
    SELECT DISTINCT unnest(tsvector_to_array(n.summary_words)), n.occurred_at, n.id
    FROM new_entries n;
    RETURN NULL;
END;
$$;

CREATE TRIGGER activity_entries_index_words
    AFTER INSERT ON activity_entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION keel_activity_index_words();

-- Every table of the trail is append-only: no row is changed or removed, no table
-- truncated. (activity_words is derived from the entries, and append-only like them:
-- removing a posting would hide an entry from search.)
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['activity_entries', 'activity_seals', 'activity_words'] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I '
            'FOR EACH ROW EXECUTE FUNCTION keel_refuse_change()', t || '_append_only', t);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE TRUNCATE ON %I '
            'FOR EACH STATEMENT EXECUTE FUNCTION keel_refuse_change()', t || '_no_truncate', t);
    END LOOP;
END;
$$;

-- The audit trail's insert side, for a runtime role that may only INSERT (see
-- DATABASE_OWNER_URL in docs/activity.md).
--
-- `id`, `tx_id` and `occurred_at` are the database's to say: an entry claiming an old
-- transaction would land inside the sealed part of the chain (and break verification
-- for good), one claiming a future transaction would never be sealed, a backdated
-- `occurred_at` would rewrite the trail's order, and an id taken ahead of the sequence
-- (`OVERRIDING SYSTEM VALUE`) would make later inserts fail. Whatever an INSERT
-- supplies, the times are set here, and an id the sequence didn't just hand out for
-- this row is refused.
CREATE FUNCTION keel_activity_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS DISTINCT FROM currval(
        pg_get_serial_sequence(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME), 'id')
    ) THEN
        RAISE EXCEPTION 'activity_entries ids come from its sequence: % refused', NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    NEW.tx_id := pg_current_xact_id()::text::bigint;
    NEW.occurred_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER activity_entries_stamp
    BEFORE INSERT ON activity_entries
    FOR EACH ROW EXECUTE FUNCTION keel_activity_stamp();

-- The postings trigger names its table unqualified: a session could shadow it with a
-- temporary table of the same name (pg_temp is searched first) and keep its entries out
-- of word search. Resolve it in the schema the trail lives in, temporary tables last.
DO $$
BEGIN
    EXECUTE format(
        'ALTER FUNCTION keel_activity_index_words() SET search_path = %I, pg_temp',
        current_schema()
    );
END;
$$;

-- Up to `wanted` entries, newest first, strictly before (`before_at`, `before_id`)
-- and from `since` on, that hold every whole word of `words` (split and lowercased as the
-- summaries are), match `matching` (the full query, prefixes included) and the given
-- actor/action/entity (NULL: any).
--
-- One ordered list drives: the postings of one word, or the actor/action/entity index,
-- whichever is sparsest just below the cursor (its 64th entry lies furthest back). The
-- driver is walked newest first and each entry it yields is checked against the rest,
-- so a page reads about as many entries as the sparsest list holds between its cursor
-- and its last match.
CREATE FUNCTION keel_activity_search(
    words text, matching tsquery,
    actor uuid, act text, etype text, eid text,
    since timestamptz, before_at timestamptz, before_id bigint, wanted integer
) RETURNS SETOF activity_entries
LANGUAGE plpgsql STABLE ROWS 20 AS $$
DECLARE
    lexemes    text[] := tsvector_to_array(to_tsvector('simple', words));
    lexeme     text;
    driver     text;
    sparsest   text;
    best_at    timestamptz;
    best_id    bigint;
    at         timestamptz;
    at_id      bigint;
    entity_set boolean := etype IS NOT NULL AND eid IS NOT NULL;
    filters    text;
BEGIN
    IF wanted <= 0 THEN
        RETURN;
    END IF;
    -- How far back each list's 64th entry lies; no 64th means sparsest of all.
    FOREACH lexeme IN ARRAY coalesce(lexemes, ARRAY[]::text[]) LOOP
        SELECT w.occurred_at, w.entry_id INTO at, at_id FROM activity_words w
        WHERE w.word = lexeme AND (w.occurred_at, w.entry_id) < (before_at, before_id)
        ORDER BY w.occurred_at DESC, w.entry_id DESC OFFSET 63 LIMIT 1;
        IF driver IS NULL OR at IS NULL OR (best_at IS NOT NULL AND (at, at_id) < (best_at, best_id)) THEN
            driver := 'word'; sparsest := lexeme; best_at := at; best_id := at_id;
        END IF;
        EXIT WHEN best_at IS NULL;
    END LOOP;
    IF actor IS NOT NULL AND (driver IS NULL OR best_at IS NOT NULL) THEN
        SELECT e.occurred_at, e.id INTO at, at_id FROM activity_entries e
        WHERE e.actor_id = actor AND (e.occurred_at, e.id) < (before_at, before_id)
        ORDER BY e.occurred_at DESC, e.id DESC OFFSET 63 LIMIT 1;
        IF driver IS NULL OR at IS NULL OR (at, at_id) < (best_at, best_id) THEN
            driver := 'actor'; best_at := at; best_id := at_id;
        END IF;
    END IF;
    IF entity_set AND (driver IS NULL OR best_at IS NOT NULL) THEN
        SELECT e.occurred_at, e.id INTO at, at_id FROM activity_entries e
        WHERE e.entity_type = etype AND e.entity_id = eid
          AND (e.occurred_at, e.id) < (before_at, before_id)
        ORDER BY e.occurred_at DESC, e.id DESC OFFSET 63 LIMIT 1;
        IF driver IS NULL OR at IS NULL OR (at, at_id) < (best_at, best_id) THEN
            driver := 'entity'; best_at := at; best_id := at_id;
        END IF;
    END IF;
    IF act IS NOT NULL AND (driver IS NULL OR best_at IS NOT NULL) THEN
        SELECT e.occurred_at, e.id INTO at, at_id FROM activity_entries e
        WHERE e.action = act AND (e.occurred_at, e.id) < (before_at, before_id)
        ORDER BY e.occurred_at DESC, e.id DESC OFFSET 63 LIMIT 1;
        IF driver IS NULL OR at IS NULL OR (at, at_id) < (best_at, best_id) THEN
            driver := 'action';
        END IF;
    END IF;
    IF driver IS NULL THEN
        RETURN; -- nothing to drive by: the caller uses the full-text index instead
    END IF;

    -- The page, planned for these values (EXECUTE: a cached generic plan can't know
    -- which index is the short walk) with only the conditions that are set.
    filters := ' AND e.summary_words @@ $2'
        || CASE WHEN actor IS NOT NULL THEN ' AND e.actor_id = $3' ELSE '' END
        || CASE WHEN act IS NOT NULL THEN ' AND e.action = $4' ELSE '' END
        || CASE WHEN etype IS NOT NULL THEN ' AND e.entity_type = $5' ELSE '' END
        || CASE WHEN eid IS NOT NULL THEN ' AND e.entity_id = $6' ELSE '' END
        || CASE WHEN since IS NOT NULL THEN ' AND e.occurred_at >= $7' ELSE '' END;
    IF driver = 'word' THEN
        RETURN QUERY EXECUTE
            'SELECT e.* FROM activity_words w JOIN activity_entries e ON e.id = w.entry_id'
            ' WHERE w.word = $1 AND (w.occurred_at, w.entry_id) < ($8, $9)'
            || CASE WHEN since IS NOT NULL THEN ' AND w.occurred_at >= $7' ELSE '' END
            || filters || ' ORDER BY w.occurred_at DESC, w.entry_id DESC LIMIT $10'
        USING sparsest, matching, actor, act, etype, eid, since, before_at, before_id, wanted;
    ELSE
        -- An actor, action or entity is sparser than every word: its index, which the
        -- planner picks from the values, walks the page.
        RETURN QUERY EXECUTE
            'SELECT e.* FROM activity_entries e WHERE (e.occurred_at, e.id) < ($8, $9)'
            || filters || ' ORDER BY e.occurred_at DESC, e.id DESC LIMIT $10'
        USING sparsest, matching, actor, act, etype, eid, since, before_at, before_id, wanted;
    END IF;
END;
$$;
