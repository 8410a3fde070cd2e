-- keel_activity_search walks a word's postings with a static query, planned once per
-- connection: it was built and planned afresh for every page, and planning cost more
-- than the walk itself.

CREATE OR REPLACE FUNCTION keel_activity_search(
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

    IF driver = 'word' THEN
        -- The word's postings, newest first, and each entry they name checked against
        -- the rest. Always this walk, so the query is static: planned once per
        -- connection, not once per page. `ts_match_vq` is `@@` in a form no index
        -- answers, so no plan leaves the walk for the full-text index; `since` bounds
        -- the walk itself.
        RETURN QUERY
            SELECT e.* FROM activity_words w JOIN activity_entries e ON e.id = w.entry_id
            WHERE w.word = sparsest
              AND (w.occurred_at, w.entry_id) < (before_at, before_id)
              AND w.occurred_at >= coalesce(since, '-infinity')
              AND ts_match_vq(e.summary_words, matching)
              AND (actor IS NULL OR e.actor_id = actor)
              AND (act IS NULL OR e.action = act)
              AND (etype IS NULL OR e.entity_type = etype)
              AND (eid IS NULL OR e.entity_id = eid)
            ORDER BY w.occurred_at DESC, w.entry_id DESC LIMIT wanted;
        RETURN;
    END IF;

    -- An actor, action or entity drives: the page is planned for these values
    -- (EXECUTE: a cached generic plan can't know which index is the short walk), with
    -- only the conditions that are set.
    filters := ' AND e.summary_words @@ $2'
        || CASE WHEN actor IS NOT NULL THEN ' AND e.actor_id = $3' ELSE '' END
        || CASE WHEN act IS NOT NULL THEN ' AND e.action = $4' ELSE '' END
        || CASE WHEN etype IS NOT NULL THEN ' AND e.entity_type = $5' ELSE '' END
        || CASE WHEN eid IS NOT NULL THEN ' AND e.entity_id = $6' ELSE '' END
        || CASE WHEN since IS NOT NULL THEN ' AND e.occurred_at >= $7' ELSE '' END;
    RETURN QUERY EXECUTE
        'SELECT e.* FROM activity_entries e WHERE (e.occurred_at, e.id) < ($8, $9)'
        || filters || ' ORDER BY e.occurred_at DESC, e.id DESC LIMIT $10'
    USING sparsest, matching, actor, act, etype, eid, since, before_at, before_id, wanted;
END;
$$;
