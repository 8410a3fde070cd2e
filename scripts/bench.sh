#!/usr/bin/env bash
# Load benchmark for keel-api: release builds against a fresh database, driven by wrk on
# the same machine. Every figure is printed, and kept with its references so that
# `--check` can hold each one to its budget in scripts/bench/budgets.txt: a ratio against
# something measured in the same run (one password hash's time, PostgreSQL's own write
# ceiling from pgbench, /health/live), so a slower or busier machine moves both sides.
#
#   scripts/bench.sh                   # every figure: 10 s a run, a 1,000,000-entry audit trail
#   scripts/bench.sh --check           # the same, then the budgets; exit 1 naming what fell short
#   scripts/bench.sh --check --short   # what CI runs: 3 s a run, 100,000 entries, no Redis runs
#   BENCH_DURATION=30s scripts/bench.sh
#
# The references:
#   hash           `keel-admin password-cost`: one argon2id verification on an idle machine;
#                  hash_ceiling is cores ÷ that time, the budgets' reference for sign-in.
#                  It also times one verification while every core verifies at once
#                  (hash_side_by_side, printed, not budgeted): argon2 is memory-hard, so
#                  hashes side by side share caches and memory bandwidth.
#   pg_ceiling     pgbench at the same 16 connections, one transaction that inserts a row and
#                  updates another (scripts/bench/ceiling.sql), the server's synchronous_commit.
#   health_live_*  /health/live, and its p99 beside one lowest-priority (SCHED_IDLE) busy loop
#                  per core: the machine's floor under any background work.
# The figures: /me, a users page and the release notes at 64 connections; sign-in at 16
# connections over 64 accounts, and /health/live while it runs; register, refresh (each
# connection rotating its own session), logout and password change at 16 connections;
# audit-trail pages with each filter at random depths (16 connections); sign-in one
# client at a time for a right password, a wrong one and an unknown email; time from exec
# to ready, configured and with no configuration at all; binary sizes and peak RSS; then,
# without --short, the cache on a private Redis and /me while that Redis is shut down.
#
# Needs: wrk, pgbench, psql, curl, python3; PostgreSQL on BENCH_PG (default
# postgres://postgres@127.0.0.1:5432); redis-server for the Redis runs (port
# BENCH_REDIS_PORT, default 16390).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/bench/common.sh
source scripts/bench/common.sh
bench_args "scripts/bench.sh [--check] [--short]" "$@"

DB_NAME="keel_bench"
PORT="${BENCH_PORT:-18080}"
if ((SHORT)); then
  DURATION="${BENCH_DURATION:-3s}" AUDIT_ROWS="${BENCH_AUDIT_ROWS:-100000}"
else
  DURATION="${BENCH_DURATION:-10s}" AUDIT_ROWS="${BENCH_AUDIT_ROWS:-1000000}"
fi
BASE="http://127.0.0.1:${PORT}"
WORK="$(mktemp -d)"
RESULTS="$WORK/figures.jsonl"
EMAIL="bench-admin@example.com"
PASSWORD="bench password 0123"
# Write paths run one connection a thread, each with its own account or session chain.
WRITERS=16
export BENCH_LUA="$PWD/scripts/bench"

me=bench
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
require wrk pgbench psql curl python3
require_postgres "$PG" BENCH_PG

figures() { python3 scripts/bench/figures.py "$RESULTS" "$@"; }

echo "bench: building release binaries" >&2
cargo build --release --quiet --bin keel-api --bin keel-admin --bin keel-worker
for bin in keel-api keel-worker keel-admin; do
  figures put "size_${bin//-/_}" mb "$(stat -c %s "target/release/$bin" | awk '{print $1 / 1048576}')"
done

psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
psql "$PG/postgres" -qc "CREATE DATABASE $DB_NAME" >/dev/null
export DATABASE_URL="$PG/$DB_NAME"
export APP_PORT="$PORT" LOG_LEVEL=warn DATABASE_POOL_SIZE=20 \
  LOGIN_MAX_FAILURES_PER_IP=1000000 LOGIN_MAX_FAILURES_PER_ACCOUNT=1000000 REGISTER_MAX_PER_IP=1000000

API_PID="" REDIS_API_PID=""
REDIS_PID_FILE="$WORK/redis.pid"
cleanup() {
  kill $API_PID $REDIS_API_PID 2>/dev/null || true
  wait $API_PID $REDIS_API_PID 2>/dev/null || true
  [[ -f $REDIS_PID_FILE ]] && kill "$(cat "$REDIS_PID_FILE")" 2>/dev/null || true
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

./target/release/keel-admin migrate 2>/dev/null
echo "$PASSWORD" | ./target/release/keel-admin create-admin --email "$EMAIL" --password-stdin >/dev/null 2>&1

echo "bench: $(nproc) cores, $DURATION a run" >&2

# Time from exec to ready: configured (this database, migrated), and with nothing
# configured at all (from an empty directory, so no .env is read: the default local
# database, created and migrated if missing).
figures startup startup_configured "$BASE/health/ready" ./target/release/keel-api
(cd "$WORK" && env -i PATH="$PATH" HOME="$HOME" APP_PORT="$PORT" \
  python3 "$OLDPWD/scripts/bench/figures.py" "$RESULTS" startup startup_zero_config \
  "$BASE/health/ready" "$OLDPWD/target/release/keel-api")

# The audit trail at scale: AUDIT_ROWS entries from 1,000 actors over a year, sealed and
# verified by keel-admin before the API starts (so no sealing runs during the load).
echo "bench: loading $AUDIT_ROWS audit entries" >&2
psql "$PG/$DB_NAME" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
-- A year of history: its timestamps are given, so the trigger that stamps new entries
-- with now() is off while it loads.
ALTER TABLE activity_entries DISABLE TRIGGER activity_entries_stamp;
INSERT INTO activity_entries
    (occurred_at, actor_id, actor_email, action, entity_type, entity_id, summary, metadata, ip)
SELECT now() - interval '365 days' + g * (interval '365 days' / $AUDIT_ROWS),
       ('00000000-0000-4000-8000-' || lpad(to_hex(g % 1000), 12, '0'))::uuid,
       'user' || (g % 1000) || '@example.com',
       (ARRAY['auth.login_succeeded', 'auth.login_failed', 'auth.logout', 'user.profile_updated',
              'auth.password_changed', 'user.updated', 'role.updated', 'release_note.published'])[g % 8 + 1],
       'user', (g % 5000)::text,
       'user' || (g % 1000) || ' did thing ' || g,
       jsonb_build_object('n', g), '10.0.' || (g % 250) || '.' || (g % 200)
FROM generate_series(1, $AUDIT_ROWS) AS g;
ALTER TABLE activity_entries ENABLE TRIGGER activity_entries_stamp;
SQL
# Vacuum now, so autovacuum doesn't pick the big table up in the middle of the runs.
psql "$PG/$DB_NAME" -qc "VACUUM ANALYZE activity_entries, activity_words" >/dev/null
seal_started=$(date +%s.%N)
verify_line=$(./target/release/keel-admin activity verify 2>&1)
seal_seconds=$(python3 -c "import time; print(f'{time.time() - $seal_started:.1f}')")
echo "audit: $verify_line (seal + verify of $AUDIT_ROWS entries: $seal_seconds s)"

# Thirty published release notes; accounts for the sign-in and write runs, all with the
# bench password (the admin's hash, copied: hashing each would take a while); a seeded
# session chain per writer account, and sessions for the logouts to end.
LOGOUT_SESSIONS=$((WRITERS * ${DURATION%s} * 400))
psql "$PG/$DB_NAME" -qv ON_ERROR_STOP=1 >/dev/null <<SQL
INSERT INTO release_notes (id, version, title, body, category, is_published, published_at)
SELECT gen_random_uuid(), '1.' || g || '.0', 'Release 1.' || g, repeat('Some **Markdown**. ', 40),
       (ARRAY['feature', 'improvement', 'fix', 'breaking'])[g % 4 + 1], true,
       now() - (30 - g) * interval '1 day'
FROM generate_series(1, 30) AS g;
INSERT INTO users (id, email, password_hash)
SELECT gen_random_uuid(), kind || '-' || g || '@example.com',
       (SELECT password_hash FROM users WHERE email = '$EMAIL')
FROM generate_series(1, 64) AS g, unnest(ARRAY['login', 'user']) AS kind
UNION ALL
SELECT gen_random_uuid(), kind || '-' || g || '@example.com',
       (SELECT password_hash FROM users WHERE email = '$EMAIL')
FROM generate_series(1, $WRITERS) AS g, unnest(ARRAY['chain', 'password']) AS kind;
-- Writer n's chain starts at token bench-chain-n; logout token bench-logout-g is writer
-- (g mod WRITERS) + 1's.
INSERT INTO refresh_sessions (id, family_id, user_id, token_hash, started_at, expires_at)
SELECT s, s, u.id, sha256(convert_to(token, 'UTF8')), now(), now() + interval '1 day'
FROM (SELECT gen_random_uuid() AS s, 'bench-chain-' || g AS token, g AS writer
      FROM generate_series(1, $WRITERS) AS g
      UNION ALL
      SELECT gen_random_uuid(), 'bench-logout-' || g, g % $WRITERS + 1
      FROM generate_series(0, $LOGOUT_SESSIONS - 1) AS g) AS t
JOIN users AS u ON u.email = 'chain-' || t.writer || '@example.com';
SQL
psql "$PG/$DB_NAME" -qc "VACUUM ANALYZE activity_seals, release_notes, users, refresh_sessions" >/dev/null
# Write out what the loads dirtied now, not as a checkpoint in the middle of a run.
psql "$PG/$DB_NAME" -qc "CHECKPOINT" >/dev/null
psql "$PG/$DB_NAME" -qAtc "SELECT email FROM users WHERE email LIKE 'login-%'" >"$WORK/accounts.txt"

start_api() { # LOG [VAR=VALUE…]: keel-api in the background, once it answers
  local log=$1
  shift
  env "$@" ./target/release/keel-api >"$log" 2>&1 &
  API_PID=$!
  for _ in $(seq 100); do
    curl -fs "$BASE/health/live" >/dev/null 2>&1 && return
    sleep 0.05
  done
  fail "keel-api did not start: $(tail -5 "$log")"
}
start_api "$WORK/api.log"

token_of() { # EMAIL: a fresh access token
  curl -fs -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$PASSWORD\"}" "$BASE/api/v1/auth/login" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
TOKEN=$(token_of "$EMAIL")
for i in $(seq 1 "$WRITERS"); do token_of "password-$i@example.com"; done >"$WORK/password_tokens.txt"

# run NAME CONNECTIONS URL [wrk args...]: one wrk run, kept as figure NAME
run() {
  local name=$1 conns=$2 url=$3
  shift 3
  wrk -t2 -c"$conns" -d"$DURATION" --latency "$@" "$url" >"$WORK/$name.txt"
  figures wrk "$name" "$WORK/$name.txt"
}
# write NAME SCRIPT [script args...]: WRITERS connections, one a thread
write() {
  local name=$1 script=$2
  shift 2
  wrk -t"$WRITERS" -c"$WRITERS" -d"$DURATION" --latency -s "scripts/bench/$script" "$BASE" \
    -- "$@" >"$WORK/$name.txt"
  figures wrk "$name" "$WORK/$name.txt"
}
# beside_idle_loops NAME CONNECTIONS URL: a run beside one busy loop a core at the lowest
# CPU priority Linux has (SCHED_IDLE); no keel code involved.
beside_idle_loops() {
  local loops=() _
  for _ in $(seq "$(nproc)"); do
    chrt --idle 0 timeout 60 sh -c 'while :; do :; done' &
    loops+=($!)
  done
  sleep 0.5
  run "$@"
  kill "${loops[@]}" 2>/dev/null || true
  wait "${loops[@]}" 2>/dev/null || true
}

# The references, each measured just before the figures held to it (the machine's speed
# drifts over a run), with keel-api idle: one hash, and PostgreSQL's write ceiling
# (pg_ceiling, in scripts/bench/common.sh).
hash_reference() {
  local cost alone
  cost=$(./target/release/keel-admin password-cost)
  echo "bench: $cost" >&2
  alone=$(sed -n 's/.*takes \([0-9.]*\) ms alone.*/\1/p' <<<"$cost")
  SIDE_BY_SIDE_MS=$(sed -n 's/.* and \([0-9.]*\) ms with all.*/\1/p' <<<"$cost")
  figures put hash ms "$alone"
  figures put hash_ceiling rps "$(awk -v ms="$alone" -v cores="$(nproc)" 'BEGIN {print cores * 1000 / ms}')"
  figures put hash_side_by_side ms "$SIDE_BY_SIDE_MS"
}
run health_live_c64 64 "$BASE/health/live"
run me_c64 64 "$BASE/api/v1/auth/me" -H "Authorization: Bearer $TOKEN"
run users_list_c64 64 "$BASE/api/v1/users?page=1&size=20" -H "Authorization: Bearer $TOKEN"
run release_notes_c64 64 "$BASE/api/v1/release-notes?size=20" -H "Authorization: Bearer $TOKEN"
run health_live_c16 16 "$BASE/health/live"

# What bounds sign-in: the hashing threads' share of the machine during the run, and one
# hash's CPU time under that load against the idle reference. login_c16 ÷ hash_ceiling
# is about that share × reference ÷ CPU time under load; the rest of the CPU went to
# PostgreSQL, the HTTP and database work around each hash, and wrk. Against cores ÷
# hash_side_by_side (printed below) the hash times mostly cancel, leaving about that share.
hashing_ticks() {
  awk '$2 ~ /^\(keel-argon2/ {t += $14 + $15} END {print t + 0}' /proc/"$API_PID"/task/*/stat
}
hashing_account() { # TICKS_BEFORE
  local ticks hz requests
  ticks=$(($(hashing_ticks) - $1)) hz=$(getconf CLK_TCK)
  requests=$(awk '/requests in/ {print $1}' "$WORK/login_c16.txt")
  figures put login_hash_cpu ms "$(awk -v t="$ticks" -v hz="$hz" -v n="$requests" 'BEGIN {print t * 1000 / hz / n}')"
  echo "bench: sign-in: the hashing threads had $(awk -v t="$ticks" -v hz="$hz" -v c="$(nproc)" \
    -v s="${DURATION%s}" 'BEGIN {printf "%.0f", 100 * t / hz / c / s}')% of the CPU" >&2
  echo "bench: sign-in: $(awk -v n="$requests" -v s="${DURATION%s}" -v ms="$SIDE_BY_SIDE_MS" \
    -v c="$(nproc)" 'BEGIN {printf "%.2f", n / s * ms / 1000 / c}') of what the cores hash side by side" >&2
}

# Sign-in at the hashing limit, then /health/live while it runs, against its p99 idle
# and beside the lowest-priority busy loops.
hash_reference
ticks_before=$(hashing_ticks)
write login_c16 login.lua "$WORK/accounts.txt" "$PASSWORD"
hashing_account "$ticks_before"
run health_live_idle_c8 8 "$BASE/health/live"
if command -v chrt >/dev/null; then
  beside_idle_loops health_live_beside_idle_loops_c8 8 "$BASE/health/live"
fi
write login_under_probe_c16 login.lua "$WORK/accounts.txt" "$PASSWORD" >/dev/null &
LOGINS=$!
sleep 0.5
run health_live_under_login_c8 8 "$BASE/health/live"
wait $LOGINS

# The write paths.
pg_ceiling "$PG/$DB_NAME" "$WRITERS" "${DURATION%s}"
write register_c16 register.lua "$PASSWORD"
write refresh_c16 refresh.lua bench-chain-
write logout_c16 logout.lua bench-logout- "$WRITERS"
write password_change_c16 password.lua "$WORK/password_tokens.txt" "$PASSWORD" "another password 0123"

# The audit trail: 16 clients, each request at a random depth of the trail.
# audit_script NAME QUERY: a wrk script requesting /api/v1/activity?size=50&QUERY with a
# random cursor (and {actor}/{entity}/{since} filled in at random).
audit_script() {
  python3 - "$WORK/$1.lua" "$2" "$AUDIT_ROWS" "$TOKEN" <<'PY'
import datetime, random, sys
path, query, rows, token = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
random.seed(7)
now = datetime.datetime.now(datetime.timezone.utc)
paths = []
for _ in range(2000):
    q = query.format(
        actor=f"00000000-0000-4000-8000-{random.randrange(1000):012x}",
        entity=random.randrange(5000),
        since=(now - datetime.timedelta(days=random.uniform(1, 365))).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    # Rows were loaded evenly over the past year: a random row's (occurred_at, id).
    g = random.randrange(1, rows)
    at = now - datetime.timedelta(days=365) + g * datetime.timedelta(days=365) / rows
    # keel's cursor: the sort key (µs) and the id, big-endian, in hex.
    cursor = int(at.timestamp() * 1_000_000).to_bytes(8, "big", signed=True).hex() + g.to_bytes(8, "big").hex()
    paths.append(f"/api/v1/activity?size=50&{q}&cursor={cursor}")
with open(path, "w") as f:
    f.write("paths = {" + ",".join(f'"{p}"' for p in paths) + "}\n")
    f.write(f'wrk.headers["Authorization"] = "Bearer {token}"\n')
    f.write("request = function() return wrk.format(nil, paths[math.random(#paths)]) end\n")
PY
}
audit_script audit_any ""
audit_script audit_action "action=auth.login_failed"
audit_script audit_actor "actor_id={actor}"
audit_script audit_entity "entity_type=user&entity_id={entity}"
audit_script audit_window "since={since}"
audit_script audit_search_user "search=user42%20did"
audit_script audit_search_common "search=did%20thing%2042"
audit_script audit_search_actor "search=did&actor_id={actor}"
for q in any action actor entity window search_user search_common search_actor; do
  run "audit_${q}_c16" 16 "$BASE" -s "$WORK/audit_$q.lua"
done

# One client at a time, taking turns: an unknown email must cost what a wrong password
# costs, and both what a right one does.
figures alternate "$BASE/api/v1/auth/login" "$((${DURATION%s} * 10))" \
  "login_ok_c1={\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" \
  "login_wrong_password_c1={\"email\":\"$EMAIL\",\"password\":\"not the password 0123\"}" \
  "login_unknown_email_c1={\"email\":\"nobody@example.com\",\"password\":\"not the password 0123\"}"

figures put rss_api mb "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$API_PID/status")"

# The cache on Redis: a private redis-server, and keel-api (on the same database) using
# it; the runs above used the in-process cache. Then Redis is shut down three seconds
# into a run: no request may fail.
if ((SHORT)); then
  :
elif ! command -v redis-server >/dev/null; then
  say "redis-server not found (apt-get install redis-server): Redis runs skipped"
else
  kill $API_PID 2>/dev/null
  wait $API_PID 2>/dev/null || true
  REDIS_PORT="${BENCH_REDIS_PORT:-16390}"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --pidfile "$REDIS_PID_FILE" >/dev/null
  start_api "$WORK/api-redis.log" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
  REDIS_API_PID=$API_PID
  curl -fs "$BASE/health/ready" | python3 -c 'import json,sys; c=json.load(sys.stdin)["components"]["cache"]; print("bench: cache", c["status"])' >&2
  run redis_health_live_c64 64 "$BASE/health/live"
  run redis_me_c64 64 "$BASE/api/v1/auth/me" -H "Authorization: Bearer $TOKEN"
  run redis_release_notes_c64 64 "$BASE/api/v1/release-notes?size=20" -H "Authorization: Bearer $TOKEN"
  run redis_unread_count_c64 64 "$BASE/api/v1/release-notes/unread-count" -H "Authorization: Bearer $TOKEN"
  (sleep 3; kill "$(cat "$REDIS_PID_FILE")") &
  run redis_stopped_me_c64 64 "$BASE/api/v1/auth/me" -H "Authorization: Bearer $TOKEN"
  run redis_down_release_notes_c64 64 "$BASE/api/v1/release-notes?size=20" -H "Authorization: Bearer $TOKEN"
  curl -s "$BASE/health/ready" | python3 -c 'import json,sys; r=json.load(sys.stdin); print("bench: with Redis down, ready:", r["status"], "cache", r["components"]["cache"]["status"])' >&2
  figures put rss_api_redis mb "$(awk '/VmHWM/ {print $2 / 1024}' "/proc/$REDIS_API_PID/status")"
fi

bench_check
