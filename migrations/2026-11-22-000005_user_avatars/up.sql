-- The object-storage key of each user's avatar (keel-user). The bytes live in object
-- storage; a replaced or removed avatar's object is deleted after the change commits.
ALTER TABLE users ADD COLUMN avatar_key text CHECK (length(avatar_key) <= 512);
