-- PostgreSQL's own ceiling for a write path: one transaction a request that inserts a row
-- and updates another (each client its own, as each keel connection rotates its own
-- session), with the server's synchronous_commit, as keel runs it.
\set n random(1, 1000000000)
BEGIN;
INSERT INTO bench_ceiling_log (client, n) VALUES (:client_id, :n);
UPDATE bench_ceiling SET n = :n, at = now() WHERE client = :client_id;
COMMIT;
