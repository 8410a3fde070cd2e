#!/usr/bin/env bash
# Task pipeline benchmark on release builds, against the local PostgreSQL and RabbitMQ:
#   1. relay: BENCH_TASKS no-op tasks (system.ping) committed to the outbox in one
#      transaction; keel-api's relay publishes them (persistent, with publisher confirms)
#      and deletes them: rows/s from the commit until the outbox is empty;
#   2. consume: keel-worker runs the tasks that step left queued: tasks/s;
#   3. end to end: with the worker running, BENCH_TASKS more are committed: tasks/s from
#      the commit until the worker has acked them all (outbox → relay → broker → worker);
# then keel-worker's peak RSS. Before the steps, PostgreSQL's own write ceiling (pgbench
# at 16 connections, scripts/bench/common.sh) is the reference the rates are held to.
#
#   scripts/bench-tasks.sh                  # 30,000 tasks per step
#   scripts/bench-tasks.sh --check          # the same, then the `tasks_*` budgets in
#                                           # scripts/bench/budgets.txt; exit 1 naming a miss
#   scripts/bench-tasks.sh --check --short  # what CI runs: 5,000 tasks, a 3 s reference
#   BENCH_TASKS=100000 scripts/bench-tasks.sh
#
# Needs: pgbench, psql, curl, python3; PostgreSQL on BENCH_PG (default
# postgres://postgres@127.0.0.1:5432); RabbitMQ on BENCH_AMQP (default the local one,
# guest/guest). Queues are named keel-bench-<pid>.* and deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
bench_args "scripts/bench-tasks.sh [--check] [--short]" "$@"

AMQP="${BENCH_AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}"
if ((SHORT)); then
  TASKS="${BENCH_TASKS:-5000}" CEILING_SECONDS=3
else
  TASKS="${BENCH_TASKS:-30000}" CEILING_SECONDS=10
fi
DB_NAME="keel_bench_tasks"
API_PORT="${BENCH_PORT:-18090}"
WORKER_PORT="${BENCH_WORKER_PORT:-18091}"
PREFIX="keel-bench-$$"
WORK="$(mktemp -d)"
RESULTS="$WORK/figures.jsonl"

me=bench-tasks
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
require pgbench psql curl python3
figures() { python3 scripts/bench/figures.py "$RESULTS" "$@"; }
require_postgres "$PG" BENCH_PG
amqp_hostport=${AMQP#*@}; amqp_hostport=${amqp_hostport%%/*}
answers "${amqp_hostport%%:*}" "${amqp_hostport##*:}" \
  || fail "RabbitMQ is not reachable at $amqp_hostport (rabbitmq-server -detached, or set BENCH_AMQP)"

echo "bench-tasks: building release binaries" >&2
cargo build --release --quiet --bin keel-api --bin keel-admin --bin keel-worker

psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
psql "$PG/postgres" -qc "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="$PG/$DB_NAME" AMQP_URL="$AMQP" TASK_QUEUE_PREFIX="$PREFIX" \
  APP_PORT="$API_PORT" WORKER_PORT="$WORKER_PORT" LOG_LEVEL=warn
./target/release/keel-admin migrate 2>/dev/null

API_PID="" WORKER_PID=""
cleanup() {
  kill $API_PID $WORKER_PID 2>/dev/null || true
  wait $API_PID $WORKER_PID 2>/dev/null || true
  if command -v rabbitmqctl >/dev/null; then
    for q in default default.dead; do
      rabbitmqctl delete_queue "$PREFIX.$q" >/dev/null 2>&1 || true
    done
  fi
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 100); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench-tasks: $1 did not answer" >&2
  exit 1
}

now() { python3 -c 'import time; print(time.time())'; }
# step NAME WHAT STARTED ENDED: prints and keeps TASKS / (ENDED - STARTED) as NAME's rps
step() {
  local seconds
  seconds=$(python3 -c "print(f'{$4 - $3:.2f}')")
  echo "$2 in $seconds s: $(python3 -c "print(f'{$TASKS / $seconds:,.0f}')")/s"
  figures put "$1" rps "$(python3 -c "print($TASKS / $seconds)")" >/dev/null
}

commit_pings() {
  psql "$DATABASE_URL" -qc "INSERT INTO task_outbox (task_id, task, queue, payload)
    SELECT gen_random_uuid(), 'system.ping', 'default', '{}'::jsonb FROM generate_series(1, $1)" >/dev/null
}
outbox_rows() { psql "$DATABASE_URL" -qAtc "SELECT count(*) FROM task_outbox"; }
succeeded() {
  curl -fs "http://127.0.0.1:$WORKER_PORT/metrics" |
    awk '/^tasks_succeeded_total\{task="system.ping"\}/ {print $2}' | head -1
}
until_succeeded() {
  while [[ "$(succeeded)" != "$1" ]]; do sleep 0.02; done
}

pg_ceiling "$DATABASE_URL" 16 "$CEILING_SECONDS"

./target/release/keel-api >"$WORK/api.log" 2>&1 &
API_PID=$!
wait_http "http://127.0.0.1:$API_PORT/health/live"

# 1. The relay alone.
started=$(now)
commit_pings "$TASKS"
while [[ "$(outbox_rows)" != 0 ]]; do sleep 0.02; done
step tasks_relay "relay: $TASKS outbox rows published with confirms" "$started" "$(now)"

# 2. A worker drains what step 1 queued.
started=$(now)
./target/release/keel-worker >"$WORK/worker.log" 2>&1 &
WORKER_PID=$!
wait_http "http://127.0.0.1:$WORKER_PORT/health/live"
until_succeeded "$TASKS"
step tasks_consume "consume: $TASKS queued tasks run and acked (worker start included)" "$started" "$(now)"

# 3. End to end, the worker already running.
started=$(now)
commit_pings "$TASKS"
until_succeeded "$((TASKS * 2))"
step tasks_end_to_end "end to end: $TASKS tasks committed → relayed → run → acked" "$started" "$(now)"

figures put tasks_worker_rss mb "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$WORKER_PID/status")"
echo "keel-api peak RSS: $(awk '/VmHWM/ {printf "%.1f MB", $2/1024}' /proc/$API_PID/status)"

# A stopped worker exits 0.
kill -TERM $WORKER_PID
wait $WORKER_PID && echo "keel-worker: SIGTERM → exit 0"
WORKER_PID=""

bench_check --tasks
