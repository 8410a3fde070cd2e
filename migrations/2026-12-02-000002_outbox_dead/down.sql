DROP TABLE task_outbox_dead;
ALTER TABLE task_outbox DROP COLUMN last_error, DROP COLUMN publish_failures;
