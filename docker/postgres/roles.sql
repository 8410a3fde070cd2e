-- Run once by the postgres image when its data directory is new. `keel` (POSTGRES_USER)
-- owns the database and migrates it (DATABASE_OWNER_URL); keel_app is the role the API
-- and workers serve with (DATABASE_URL), granted by keel only what serving needs: on the
-- audit trail, SELECT and INSERT. Change both passwords outside development.
CREATE ROLE keel_app LOGIN PASSWORD 'keel_app';
