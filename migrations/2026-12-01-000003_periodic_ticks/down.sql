DROP TABLE periodic_ticks;
