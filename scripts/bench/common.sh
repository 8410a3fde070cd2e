# What scripts/bench.sh and scripts/bench-tasks.sh share; sourced by both, which define
# `figures` and `WORK` before calling pg_ceiling or bench_check.

# The PostgreSQL server both measure against.
PG="${BENCH_PG:-postgres://postgres@127.0.0.1:5432}"

# bench_args USAGE ARGS…: CHECK and SHORT from --check and --short; anything else prints
# USAGE and exits 2.
bench_args() {
  local usage=$1 arg
  shift
  CHECK=0 SHORT=0
  for arg; do
    case $arg in
      --check) CHECK=1 ;;
      --short) SHORT=1 ;;
      *) echo "usage: $usage" >&2; exit 2 ;;
    esac
  done
}

# bench_check [--tasks]: under --check, holds the figures to scripts/bench/budgets.txt
# (the short bounds under --short) and exits 1 naming what fell short.
bench_check() {
  ((CHECK)) || return 0
  local short=()
  ((SHORT)) && short=(--short)
  echo
  figures check scripts/bench/budgets.txt "${short[@]}" "$@"
}

# pg_ceiling DATABASE_URL CLIENTS SECONDS: PostgreSQL's own write ceiling, as figure
# `pg_ceiling` (tps): pgbench at CLIENTS connections for SECONDS running ceiling.sql (a
# row inserted and another updated, each client its own) with the server's
# synchronous_commit, on two scratch tables it drops afterwards.
pg_ceiling() {
  local url=$1 clients=$2 seconds=$3
  psql "$url" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE TABLE bench_ceiling (client int PRIMARY KEY, n bigint NOT NULL, at timestamptz NOT NULL);
INSERT INTO bench_ceiling SELECT g, 0, now() FROM generate_series(0, $clients - 1) AS g;
CREATE TABLE bench_ceiling_log (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), client int NOT NULL,
                                n bigint NOT NULL, at timestamptz NOT NULL DEFAULT now());
SQL
  pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f scripts/bench/ceiling.sql \
    "$url" >"$WORK/pgbench.txt" 2>&1 || { cat "$WORK/pgbench.txt" >&2; exit 1; }
  figures pgbench pg_ceiling "$WORK/pgbench.txt"
  psql "$url" -qc "DROP TABLE bench_ceiling, bench_ceiling_log" >/dev/null
}
