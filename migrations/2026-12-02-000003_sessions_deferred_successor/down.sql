ALTER TABLE refresh_sessions
    ALTER CONSTRAINT refresh_sessions_replaced_by_fkey NOT DEFERRABLE;
