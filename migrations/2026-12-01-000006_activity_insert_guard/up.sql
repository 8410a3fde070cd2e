-- The audit trail's insert side, for a runtime role that may only INSERT (see
-- DATABASE_OWNER_URL in docs/activity.md).
--
-- `tx_id` and `occurred_at` are the database's to say: an entry claiming an old
-- transaction would land inside the sealed part of the chain (and break verification
-- for good), one claiming a future transaction would never be sealed, and a backdated
-- `occurred_at` would rewrite the trail's order. Whatever an INSERT supplies, they are
-- set here.
CREATE FUNCTION keel_activity_stamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
