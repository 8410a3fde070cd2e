DROP TABLE task_effects;
