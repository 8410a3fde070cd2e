ALTER TABLE users DROP COLUMN welcome_sent_at;
