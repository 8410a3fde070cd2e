DROP TABLE tasks_done;
DROP TABLE periodic_ticks;
DROP TABLE task_outbox;
