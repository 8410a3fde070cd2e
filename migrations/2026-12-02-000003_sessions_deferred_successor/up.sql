-- A rotation stores the successor and points the rotated row at it with two statements
-- sent together (pipelined, one round trip). Checked at commit, the reference holds
-- whichever the server runs first.
ALTER TABLE refresh_sessions
    ALTER CONSTRAINT refresh_sessions_replaced_by_fkey DEFERRABLE INITIALLY DEFERRED;
