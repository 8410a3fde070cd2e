DROP TABLE task_outbox;
