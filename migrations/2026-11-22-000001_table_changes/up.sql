-- Tell every keel replica, at commit, which tables changed, so the results they cache
-- (keel_core::db::cached) are dropped at once whoever wrote: an API replica, keel-admin
-- or psql. One notification per statement; PostgreSQL folds repeats within a
-- transaction.
CREATE FUNCTION keel_notify_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('keel_table_changes', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;

-- The tables the admin users list reads.
CREATE TRIGGER users_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION keel_notify_change();
CREATE TRIGGER roles_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION keel_notify_change();
CREATE TRIGGER user_roles_notify_change
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_roles
    FOR EACH STATEMENT EXECUTE FUNCTION keel_notify_change();
