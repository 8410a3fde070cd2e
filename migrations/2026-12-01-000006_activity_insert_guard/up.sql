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
