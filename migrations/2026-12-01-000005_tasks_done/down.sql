DROP TABLE tasks_done;
